"""NORMALISATION: every image standardised by its own robust statistics, in training and in
classification, so that a scene with another gain and offset gives the same map."""

import json
import os

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

from fjord.core.errors import FjordError

GAIN, OFFSET = 0.62, 900.0  # another date or sensor: darker, with an offset


def _brightened(src, path, gain=GAIN, offset=OFFSET, dtype=None):
    """A copy of ``src`` with every band at ``gain * value + offset`` (the same grid)."""
    ds = gdal.Open(src)
    bands = ds.ReadAsArray().astype(np.float64) * gain + offset
    if dtype is None:
        bands = np.clip(np.rint(bands), 0, 65535).astype(np.uint16)
    else:
        bands = bands.astype(dtype)
    return write_raster(path, bands, geotransform=ds.GetGeoTransform(),
                        projection=ds.GetProjection())


@pytest.fixture(scope="module")
def darker(glacier, tmp_path_factory):
    return _brightened(glacier["image"], tmp_path_factory.mktemp("darker") / "darker.tif")


@pytest.mark.parametrize("rule", ["image", "range"])
def test_image_statistics_cancel_a_gain_and_an_offset(glacier, darker, rule):
    from fjord.core.data.rasters import ImageStrips
    from fjord.core.prepare.normalise import image_statistics, normaliser

    meta = {"normalisation": rule}
    out = []
    for path in (glacier["image"], darker):
        img = ImageStrips(path)
        stats = image_statistics(img)
        assert len(stats["median"]) == img.bands and all(s > 0 for s in stats["spread"])
        out.append(normaliser(meta, stats)(img.read(100, 50)[0].astype(np.float32)))
        img.close()
    assert abs(float(np.median(out[0]))) < (1.0 if rule == "image" else 2.0)  # within the range
    # The same pixels, up to the rounding of the darker copy to whole DN.
    assert np.abs(out[0] - out[1]).max() < 0.05


def test_range_rule_does_not_follow_the_class_mix():
    """Two images of the same materials in other proportions (mostly dark, mostly bright): the
    median rule reads the same material differently in each, the range rule alike."""
    from fjord.core.prepare.normalise import normalise_image

    rng = np.random.default_rng(0)
    dark, bright = rng.normal(100, 10, 10_000), rng.normal(200, 10, 10_000)
    rocky = np.concatenate([dark[:8000], bright[:2000]])[:, None]
    icy = np.concatenate([dark[:2000], bright[:8000]])[:, None]
    ice = np.float32([[200.0]])
    read = {}
    for rule in ("image", "range"):
        for name, x in (("rocky", rocky), ("icy", icy)):
            p2, p50, p98 = np.percentile(x, [2, 50, 98], axis=0)
            stats = {"median": p50, "midrange": (p2 + p98) / 2, "spread": p98 - p2}
            read[rule, name] = float(normalise_image(ice.copy(), stats, rule)[0, 0])
    assert abs(read["range", "rocky"] - read["range", "icy"]) < 0.3
    assert abs(read["image", "rocky"] - read["image", "icy"]) > 2.0


@pytest.mark.parametrize("rule", ["image", "range"])
def test_dataset_records_the_rule_and_every_image_statistics(glacier, darker, tmp_path, rule):
    from fjord.core.learn.sequence import TileDataset
    from fjord.core.prepare.tiles import build_dataset

    folder = str(tmp_path / "ds")
    options = dict(mode="segmentation", tile_size=64, stride=64, min_labelled=0.05, seed=0,
                   normalisation=rule)
    build_dataset(glacier["image"], glacier["classes"], folder, **options)
    meta = build_dataset(darker, glacier["classes"], folder, append=True, **options)
    assert meta["normalisation"] == rule
    medians = [s["image_statistics"]["median"] for s in meta["sources"]]
    assert len(medians) == 2 and medians[0] != medians[1]
    with open(os.path.join(folder, "dataset.json")) as f:
        assert json.load(f)["sources"][1]["image_statistics"]["spread"]
    n = meta["sources"][0]["windows"]["train"]
    assert n == meta["sources"][1]["windows"]["train"]  # the same labels, the same windows
    data = TileDataset(folder, batch_size=n, shuffle=False, standardise=True)
    (x0, y0), (x1, y1) = data[0], data[1]
    assert np.array_equal(y0, y1)
    assert np.abs(x0 - x1).max() < 0.05  # the darker image's windows read as the original's
    with pytest.raises(FjordError, match="NORMALISATION"):
        build_dataset(darker, glacier["classes"], folder, append=True,
                      **dict(options, normalisation="dataset"))


def test_unknown_normalisation_is_refused(glacier, tmp_path):
    from fjord.core.prepare.tiles import build_dataset

    with pytest.raises(FjordError, match="normalisation"):
        build_dataset(glacier["image"], glacier["classes"], str(tmp_path / "ds"),
                      normalisation="scene")


@pytest.mark.slow
def test_unet_with_image_normalisation_maps_a_darker_scene_as_the_original(
        glacier, darker, glacier_unet, tmp_path):
    """A U-Net trained under 'image' classifies the training scene and its darker copy alike;
    the session's U-Net, trained on the same windows under 'dataset', does not."""
    from fjord.core.learn.unet import classify_unet, train_unet
    from fjord.core.prepare.tiles import build_dataset
    from fjord.models.modelfile import read_metadata

    folder = str(tmp_path / "ds-image")
    build_dataset(glacier["image"], glacier["classes"], folder, mode="segmentation",
                  tile_size=64, stride=32, min_labelled=0.05, seed=0, normalisation="image")
    models = {"image": str(tmp_path / "unet-image.keras"), "dataset": glacier_unet["path"]}
    train_unet(folder, models["image"], depth=3, filters=8, epochs=15, batch_size=8,
               learning_rate=3e-3, patience=5, seed=0)
    truth = gdal.Open(glacier["classes"]).ReadAsArray()
    agreement, accuracy = {}, {}
    for rule, model in models.items():
        assert read_metadata(model)["normalisation"] == rule
        maps = []
        for name, image in (("original", glacier["image"]), ("darker", darker)):
            out = str(tmp_path / f"{rule}-{name}.tif")
            classify_unet(image, model, out, probabilities="none")
            maps.append(gdal.Open(out).ReadAsArray())
        agreement[rule] = float((maps[0] == maps[1]).mean())
        accuracy[rule] = float((maps[1] == truth).mean())
    assert agreement["image"] > 0.98, agreement
    assert accuracy["image"] > 0.8, accuracy
    assert agreement["image"] > agreement["dataset"] + 0.05, agreement


@pytest.mark.slow
def test_csc_phase_one_with_image_normalisation_and_reflectance_input(glacier, tmp_path):
    """A phase-one model under 'image' takes the scene as reflectance (DN / 10000, float) without
    a scale error and finds the same phase-one map; the scale check still refuses reflectance
    for a model under 'dataset' (see test_core_csc)."""
    from fjord.core.learn.csc import classify_csc
    from fjord.core.learn.phase_one import train_phase_one
    from fjord.core.prepare.tiles import build_dataset

    folder = str(tmp_path / "tiles")
    build_dataset(glacier["image"], glacier["label_raster"], folder, mode="tiles", tile_size=32,
                  stride=16, max_per_class=150, seed=0, normalisation="image")
    model = str(tmp_path / "phase1.keras")
    train_phase_one(folder, model, architecture="compact", epochs=10, batch_size=32,
                    learning_rate=1e-3, patience=0, target_accuracy=0, seed=0)
    reflectance = _brightened(glacier["image"], tmp_path / "reflectance.tif", gain=1e-4,
                              offset=0.0, dtype=np.float32)
    maps = []
    for name, image in (("dn", glacier["image"]), ("reflectance", reflectance)):
        one = str(tmp_path / f"one-{name}.tif")
        classify_csc(image, model, str(tmp_path / f"csc-{name}.tif"), patch_size=1,
                     samples_per_class=2000, max_epochs=3, output_phase_one=one)
        maps.append(gdal.Open(one).ReadAsArray())
    assert (maps[0] == maps[1]).mean() > 0.99


def test_a_float32_dataset_reads_under_either_rule(glacier, tmp_path):
    """Float32 images (stacks with indices) are stored as float32: the reader normalises a copy,
    never the read-only memory map."""
    from fjord.core.learn.sequence import TileDataset
    from fjord.core.prepare.tiles import build_dataset

    image = _brightened(glacier["image"], tmp_path / "float.tif", gain=1e-4, offset=0.0,
                        dtype=np.float32)
    for rule in ("dataset", "image"):
        folder = str(tmp_path / rule)
        build_dataset(image, glacier["label_raster"], folder, mode="tiles", tile_size=32,
                      stride=32, max_per_class=20, seed=0, normalisation=rule)
        for standardise in (False, True):
            x, _ = TileDataset(folder, batch_size=8, standardise=standardise)[0]
            assert x.dtype == np.float32 and np.isfinite(x).all()


def test_index_bands_keep_the_training_statistics_under_per_image_rules(glacier, tmp_path):
    """NDWI means the same in every image: a per-image rule standardises the other bands by each
    image's own statistics and the index by the training statistics (``fixed_bands``)."""
    from fjord.core.data.rasters import ImageStrips
    from fjord.core.prepare.normalise import fixed_bands, image_statistics, normaliser
    from fjord.core.prepare.tiles import build_dataset

    assert fixed_bands(["B3", "B8", "NDWI"], "range") == [2]
    assert fixed_bands(["B3", "B8", "NDWI"], "dataset") == []
    ds = gdal.Open(glacier["image"])
    green, nir = (ds.GetRasterBand(b).ReadAsArray().astype(np.float32) for b in (2, 4))
    ndwi = (green - nir) / np.maximum(green + nir, 1)
    stack = write_raster(tmp_path / "stack.tif", [green, nir, ndwi], dtype=gdal.GDT_Float32,
                         geotransform=ds.GetGeoTransform(), projection=ds.GetProjection(),
                         names=["B3", "B8", "NDWI"])
    meta = build_dataset(str(stack), glacier["classes"], str(tmp_path / "ds"),
                         mode="segmentation", tile_size=64, stride=64, min_labelled=0.05,
                         seed=0, normalisation="range")
    assert meta["fixed_bands"] == [2]
    img = ImageStrips(str(stack))
    x = img.read(0, 40)[0].astype(np.float32)
    out = normaliser(meta, image_statistics(img))(x.copy())
    img.close()
    mean, std = meta["statistics"]["mean"][2], meta["statistics"]["std"][2]
    assert np.allclose(out[..., 2], (x[..., 2] - mean) / std, atol=1e-4)
    own = normaliser(dict(meta, fixed_bands=[]), image_statistics(ImageStrips(str(stack))))
    assert np.allclose(out[..., :2], own(x.copy())[..., :2])  # the other bands: their own


def test_a_dataset_made_before_fixed_bands_keeps_its_reading_when_appended(glacier, tmp_path):
    """A dataset.json without ``fixed_bands`` (made before index bands kept the training
    statistics) still has none after an append, so its models read every band as before."""
    from fjord.core.prepare.normalise import with_training_statistics
    from fjord.core.prepare.tiles import build_dataset

    ds = gdal.Open(glacier["image"])
    green, nir = (ds.GetRasterBand(b).ReadAsArray().astype(np.float32) for b in (2, 4))
    stack = write_raster(tmp_path / "stack.tif", [green, nir, (green - nir) / (green + nir + 1)],
                         dtype=gdal.GDT_Float32, geotransform=ds.GetGeoTransform(),
                         projection=ds.GetProjection(), names=["B3", "B8", "NDWI"])
    folder, options = str(tmp_path / "ds"), dict(mode="segmentation", tile_size=64, stride=64,
                                                 min_labelled=0.05, normalisation="image")
    meta = build_dataset(str(stack), glacier["classes"], folder, **options)
    assert meta["fixed_bands"] == [2]
    path = os.path.join(folder, "dataset.json")
    with open(path) as f:
        old = json.load(f)
    del old["fixed_bands"]
    with open(path, "w") as f:
        json.dump(old, f)
    meta = build_dataset(str(stack), glacier["classes"], folder, append=True, **options)
    assert meta["fixed_bands"] == []
    # image statistics from before the range rule have no midrange; the index still gets the
    # training statistics
    stats = {"median": [1.0, 2.0, 3.0], "spread": [1.0, 1.0, 1.0]}
    fixed = with_training_statistics(stats, dict(meta, fixed_bands=[2]))
    assert "midrange" not in fixed and fixed["median"][:2] == [1.0, 2.0]
    assert fixed["median"][2] != 3.0


def test_area_statistics_follow_the_class_mix_of_their_area(tmp_path):
    """A scene dark on the left and bright on the right: quarter-size areas see other mixes,
    so their statistics spread around the whole image's; areas as large as the image are it."""
    from fjord.core.data.rasters import ImageStrips
    from fjord.core.prepare.normalise import AREAS, area_statistics, image_statistics

    rng = np.random.default_rng(0)
    bands = rng.normal(100, 5, (2, 200, 300))
    bands[:, :, 150:] += 100
    img = ImageStrips(write_raster(str(tmp_path / "mix.tif"), bands.astype(np.float32)))
    whole = image_statistics(img)
    areas = area_statistics(img)
    assert len(areas) == AREAS
    medians = np.array([a["median"][0] for a in areas])
    assert medians.min() < whole["median"][0] - 20 and medians.max() > whole["median"][0] + 20
    for a in area_statistics(img, side=1.0):
        np.testing.assert_allclose(a["midrange"], whole["midrange"])
        np.testing.assert_allclose(a["spread"], whole["spread"])
    img.close()


@pytest.mark.parametrize("rule", ["image", "range"])
def test_training_under_area_statistics_reads_each_window_by_one_of_them(glacier, tmp_path, rule):
    from fjord.core.data.npyio import open_npy
    from fjord.core.learn.sequence import TileDataset
    from fjord.core.prepare.normalise import normaliser
    from fjord.core.prepare.tiles import build_dataset

    folder = str(tmp_path / "ds")
    meta = build_dataset(glacier["image"], glacier["classes"], folder, mode="segmentation",
                         tile_size=64, stride=64, min_labelled=0.05, seed=0, normalisation=rule)
    source = meta["sources"][0]
    candidates = [source["image_statistics"]] + source["area_statistics"]
    assert len(candidates) == 9
    n = source["windows"]["train"]
    plain = TileDataset(folder, batch_size=n, shuffle=False, standardise=True)[0][0]
    data = TileDataset(folder, batch_size=n, shuffle=False, standardise=True,
                       area_statistics=True)
    raw = open_npy(os.path.join(folder, meta["shards"]["train"][0]["images"]))  # image 0's
    chosen = []
    for _ in range(2):
        x = data[0][0]
        for i in range(n):
            reads = [normaliser(meta, s)(np.array(raw[i], np.float32)) for s in candidates]
            matches = [k for k, r in enumerate(reads) if np.allclose(x[i], r, atol=1e-5)]
            assert matches, "a window read by none of the image's or its areas' statistics"
            chosen.append(matches[0])
        data.on_epoch_end()
    assert len(set(chosen)) > 2 and not np.allclose(x, plain)
    # A dataset normalised by its training statistics records no areas: a clear error.
    other = str(tmp_path / "other")
    build_dataset(glacier["image"], glacier["classes"], other, mode="segmentation",
                  tile_size=64, stride=64, min_labelled=0.05, seed=0)
    with pytest.raises(FjordError, match="NORMALISATION image or range"):
        TileDataset(other, standardise=True, area_statistics=True)
    # trainunet's AUGMENT 'sub-area statistics': recorded, and refused without a trace.
    from fjord.core.learn.unet import train_unet
    from fjord.models.modelfile import read_metadata

    areas = "rotations+flips+crops+areas"
    path = str(tmp_path / "u.keras")
    train_unet(folder, path, depth=2, filters=4, epochs=1, augment=areas)
    assert read_metadata(path)["training"]["augment"] == areas
    refused = str(tmp_path / "refused.keras")
    with pytest.raises(FjordError, match="NORMALISATION image or range"):
        train_unet(other, refused, depth=2, filters=4, epochs=1, augment=areas)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("refused")]
