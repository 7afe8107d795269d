"""A U-Net as the phase one of CSC, the boundary margin of phase two's training pixels, and
U-Net ensembles."""

import os

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

from fjord.core.errors import FjordError


def _read(path, band=1):
    ds = gdal.Open(path)
    return ds.GetRasterBand(band).ReadAsArray()


def _copy_with_metadata(src, dst, **changes):
    """The network of the model file ``src`` written to ``dst`` with its metadata changed
    (keys set to None are dropped)."""
    from fjord.models.modelfile import load_model, save_model

    model, meta = load_model(src)
    meta = {k: v for k, v in dict(meta, **changes).items() if v is not None}
    save_model(model, dst, meta)
    return dst


def test_boundary_margin_keeps_pixels_a_disk_away_from_any_class_change(tmp_path):
    from fjord.core.data.schema import preset_schema
    from fjord.core.learn.csc import away_from_boundaries

    classes = np.ones((40, 30), np.uint8)
    classes[:, 15:] = 2
    classes[30:, :5] = 0      # unlabelled by the recognition threshold: a class of its own
    classes[0, 29] = 255      # nodata stays nodata
    src = gdal.Open(write_raster(tmp_path / "p1.tif", classes, nodata=255))
    dst = gdal.GetDriverByName("MEM").Create("", 30, 40, 1, gdal.GDT_Byte)
    counts, strips = away_from_boundaries(src, dst, 3, 7, lambda: False, rows=16)
    kept = dst.ReadAsArray()
    rows, cols = np.mgrid[:40, :30]
    expect = classes.copy()
    for r, c in zip(rows.ravel(), cols.ravel()):  # by brute force: any other value within 3 px
        near = (rows - r) ** 2 + (cols - c) ** 2 <= 9
        if classes[r, c] != 255 and (classes[near] != classes[r, c]).any():
            expect[r, c] = 0
    assert np.array_equal(kept, expect)
    assert (kept[:, 12:18] == 0).all() and kept[27, 5] == 1 and kept[0, 29] == 255
    assert sum(s[1] for s in strips) == 40 and [s[0] for s in strips] == [0, 16, 32]
    assert counts[1] == (kept == 1).sum() and counts[2] == (kept == 2).sum()
    assert counts[0] == (kept == 0).sum() and len(counts) == 8
    assert preset_schema("glacial")  # the schema of the 7 classes the counts span


def test_csc_with_a_unet_phase_one(glacier, glacier_unet, tmp_path):
    """classify_csc takes the U-Net: its phase-one map is the U-Net's own map, the margin thins
    phase two's training pixels, and the report names the U-Net."""
    from fjord.core.learn.csc import classify_csc
    from fjord.core.learn.unet import classify_unet

    unet_map = str(tmp_path / "unet.tif")
    classify_unet(glacier["image"], glacier_unet["path"], unet_map, probabilities="none")
    one = str(tmp_path / "one.tif")
    result = classify_csc(glacier["image"], glacier_unet["path"], str(tmp_path / "csc.tif"),
                          patch_size=1, samples_per_class=3000, max_epochs=5,
                          boundary_margin=3, output_phase_one=one,
                          validation=glacier["classes"], report=str(tmp_path / "report"))
    assert result["phase_one_model"] == "unet"
    assert np.array_equal(_read(one), _read(unet_map))
    assert result["phase_two"]["samples_per_class"] == 3000
    assert "boundary_margin" in result["timings"]
    truth = _read(glacier["classes"])
    # a tiny U-Net trained for seconds: well above chance (7 classes); quality is the bench's
    assert (_read(str(tmp_path / "csc.tif")) == truth).mean() > 0.6
    assert result["scores"]["csc"]["macro"]["f1"] > 0.5
    assert os.path.isfile(tmp_path / "report" / "CSC_image.png")


def test_csc_refuses_a_negative_margin(glacier, glacier_unet, tmp_path):
    from fjord.core.learn.csc import classify_csc

    with pytest.raises(FjordError, match="BOUNDARY_MARGIN"):
        classify_csc(glacier["image"], glacier_unet["path"], str(tmp_path / "c.tif"),
                     boundary_margin=-1)


def test_an_ensemble_averages_its_members(glacier, glacier_unet, tmp_path):
    """Two files given, or one file that lists the other, average the members' probabilities;
    members that read images differently are refused."""
    from fjord.core.learn.unet import classify_unet, ensemble_members

    one = glacier_unet["path"]
    other = _copy_with_metadata(one, str(tmp_path / "same.keras"))
    single, pair = str(tmp_path / "single.tif"), str(tmp_path / "pair.tif")
    classify_unet(glacier["image"], one, single)
    result = classify_unet(glacier["image"], [one, other], pair)
    assert len(result["models"]) == 2
    for band in range(2, 9):  # identical members: the mean is each one's
        assert np.allclose(_read(pair, band), _read(single, band), atol=1e-6, equal_nan=True)
    listed = _copy_with_metadata(one, str(tmp_path / "listed.keras"), ensemble=["same.keras"])
    assert ensemble_members(listed) == [listed, str(tmp_path / "same.keras")]
    image_rule = _copy_with_metadata(one, str(tmp_path / "image.keras"), normalisation="image")
    with pytest.raises(FjordError, match="read images the same way"):
        classify_unet(glacier["image"], [one, image_rule], str(tmp_path / "bad.tif"))
    assert not os.path.exists(tmp_path / "bad.tif")


@pytest.mark.slow
def test_trainunet_ensemble_writes_members_that_classification_averages(
        glacier_segmentation, glacier, tmp_path):
    from fjord.core.learn.unet import classify_unet, train_unet
    from fjord.models.modelfile import read_metadata

    output = str(tmp_path / "ens.keras")
    result = train_unet(glacier_segmentation, output, depth=3, filters=8, epochs=3, batch_size=8,
                        learning_rate=3e-3, seed=5, ensemble=2, report=str(tmp_path / "report"))
    member = str(tmp_path / "ens_member2.keras")
    assert read_metadata(output)["ensemble"] == ["ens_member2.keras"]
    assert read_metadata(member)["training"]["seed"] == 6
    assert [m["path"] for m in result["members"]] == [output, member]
    assert os.path.isfile(tmp_path / "report" / "member2" / "history.csv")
    first = _copy_with_metadata(output, str(tmp_path / "first.keras"), ensemble=None)
    maps = {}
    for name, model in (("ensemble", output), ("first", first), ("second", member)):
        maps[name] = str(tmp_path / f"{name}.tif")
        classify_unet(glacier["image"], model, maps[name])
    for band in range(2, 9):
        mean = (_read(maps["first"], band) + _read(maps["second"], band)) / 2
        assert np.allclose(_read(maps["ensemble"], band), mean, atol=1e-5, equal_nan=True)
