"""Hostile input, round two (issue 18): each bad or unusual input ends in a clear message or
a correct result, inputs untouched, nothing left behind."""

import glob
import os
import shutil

import numpy as np
import pytest
from helpers import box, make_layer, make_raster, read, write_raster
from osgeo import gdal, ogr

from fjord.core.errors import FjordError

X0, Y0 = 500000.0, 5800000.0


def _digest(path):
    with open(path, "rb") as f:
        return hash(f.read())


def test_signed_bytes_keep_their_sign(tmp_path):
    from fjord.core.prepare.stack import stack_bands

    path = str(tmp_path / "int8.tif")
    values = np.linspace(-100, 127, 200).astype(np.int8).reshape(10, 20)
    write_raster(path, values.view(np.uint8), origin=(X0, Y0), dtype=gdal.GDT_Byte,
                 options=["PIXELTYPE=SIGNEDBYTE"])
    stack_bands([path], str(tmp_path / "out.tif"))
    out = gdal.Open(str(tmp_path / "out.tif"))
    assert gdal.GetDataTypeName(out.GetRasterBand(1).DataType) == "Int16"
    assert (out.GetRasterBand(1).ReadAsArray() == values).all()
    out = None
    # on another grid it would be resampled as 0..255: refused
    other = make_raster(tmp_path / "other.tif", width=30, height=20, pixel=7.0, epsg=32633)
    with pytest.raises(FjordError, match="signed 8-bit values.*Int16"):
        stack_bands([other, path], str(tmp_path / "out2.tif"))
    assert not os.path.exists(tmp_path / "out2.tif")


def test_training_never_overwrites_its_initial_model(glacier_tiles, glacier_model, tmp_path):
    from fjord.core.learn.phase_one import train_phase_one

    model = str(tmp_path / "model.keras")
    shutil.copy(glacier_model, model)
    before = _digest(model)
    with pytest.raises(FjordError, match="also the INITIAL_MODEL"):
        train_phase_one(glacier_tiles, model, initial_model=model, epochs=1)
    assert _digest(model) == before
    assert not glob.glob(str(tmp_path / ".*"))


def test_unet_training_never_overwrites_its_initial_model(glacier_segmentation, glacier_unet,
                                                          tmp_path):
    from fjord.core.learn.unet import train_unet

    model = str(tmp_path / "unet.keras")
    shutil.copy(glacier_unet["path"], model)
    before = _digest(model)
    with pytest.raises(FjordError, match="also the INITIAL_MODEL"):
        train_unet(glacier_segmentation, os.path.join(str(tmp_path), ".", "unet.keras"),
                   initial_model=model, epochs=1)
    assert _digest(model) == before


def _reflectance_copy(image, path):
    gdal.Translate(path, image, outputType=gdal.GDT_Float32, scaleParams=[[0, 10000, 0, 1]])
    return path


def test_a_model_refuses_an_image_on_another_scale(glacier, glacier_model, tmp_path):
    from fjord.core.learn.csc import classify_csc

    refl = _reflectance_copy(glacier["image"], str(tmp_path / "reflectance.tif"))
    with pytest.raises(FjordError) as err:
        classify_csc(refl, glacier_model, str(tmp_path / "csc.tif"))
    text = str(err.value)
    assert "not on the scale the model was trained on" in text
    assert "looks like reflectance" in text and "IGNORE_SCALE_MISMATCH" in text
    assert "in training" in text and "here" in text
    assert os.listdir(tmp_path) == ["reflectance.tif"]  # no output, no partial, no work folder


def test_the_sentinel2_baseline_04_offset_is_recognised(glacier, glacier_model, tmp_path):
    from fjord.core.learn.csc import classify_csc

    ds = gdal.Open(glacier["image"])
    values = ds.ReadAsArray().astype(np.uint16)
    shifted = write_raster(tmp_path / "shifted.tif", np.where(values > 0, values + 1000, 0),
                           geotransform=ds.GetGeoTransform(), projection=ds.GetProjection(),
                           dtype=gdal.GDT_UInt16)
    ds = None
    with pytest.raises(FjordError, match="Sentinel-2 digital numbers with the \\+1000 offset of "
                                         "processing baseline 04.00.*PRODUCT"):
        classify_csc(shifted, glacier_model, str(tmp_path / "csc.tif"))
    assert sorted(os.listdir(tmp_path)) == ["shifted.tif"]


@pytest.mark.slow
def test_a_unet_refuses_an_image_on_another_scale_unless_told(glacier, glacier_unet, tmp_path):
    from fjord.core.learn.unet import classify_unet

    refl = _reflectance_copy(glacier["image"], str(tmp_path / "reflectance.tif"))
    with pytest.raises(FjordError, match="looks like reflectance"):
        classify_unet(refl, glacier_unet["path"], str(tmp_path / "unet.tif"))
    assert not os.path.exists(tmp_path / "unet.tif")
    lines = []
    classify_unet(refl, glacier_unet["path"], str(tmp_path / "unet.tif"),
                  ignore_scale_mismatch=True, probabilities="none",
                  progress=lambda f, m=None: m and lines.append(m))
    assert any(line.startswith("Warning (IGNORE_SCALE_MISMATCH)") for line in lines)
    # the image it was trained on passes
    classify_unet(glacier["image"], glacier_unet["path"], str(tmp_path / "same.tif"),
                  probabilities="none")


@pytest.mark.parametrize("labels, values", [(("2", "4", "12"), (2, 4, 12)),
                                            (("4.0", "1"), (4, 1))])
def test_numeric_text_labels_are_the_numbers_they_spell(tmp_path, labels, values):
    from fjord.core.prepare.rasterize import rasterize_labels

    ref = make_raster(tmp_path / "ref.tif", width=60, height=10)
    feats = [(box(X0 + 100 * i, Y0 - 100, X0 + 100 * i + 100, Y0), lab)
             for i, lab in enumerate(labels)]
    vec = make_layer(tmp_path / "labels.gpkg", feats, field="cls", field_type=ogr.OFTString)
    rasterize_labels(vec, "cls", ref, str(tmp_path / "out.tif"))
    got = read(tmp_path / "out.tif")
    for i, v in enumerate(values):
        assert (got[:, 10 * i:10 * i + 10] == v).all()


def test_a_truncated_shard_is_named_and_nothing_is_left(glacier_tiles, tmp_path):
    from fjord.core.learn.phase_one import train_phase_one

    dataset = str(tmp_path / "dataset")
    shutil.copytree(glacier_tiles, dataset)
    shard = sorted(glob.glob(os.path.join(dataset, "train", "*images*.npy")))[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    with pytest.raises(FjordError) as err:
        train_phase_one(dataset, str(tmp_path / "model.keras"), epochs=1)
    assert os.path.basename(shard) in str(err.value) and "truncated" in str(err.value)
    assert "maketiles" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["dataset"]


def test_a_float_raster_is_not_a_class_raster(tmp_path):
    from fjord.core.evaluate.validate import validate_classification

    ref = make_raster(tmp_path / "ref.tif")
    ndvi = str(tmp_path / "ndvi.tif")
    gdal.Translate(ndvi, ref, outputType=gdal.GDT_Float32, scaleParams=[[0, 200, -0.5, 0.9]])
    with pytest.raises(FjordError, match="not whole numbers.*not a class raster"):
        validate_classification(ndvi, str(tmp_path / "scores.csv"), reference=ref)
    assert not os.path.exists(tmp_path / "scores.csv")


def test_an_image_with_no_valid_pixel_says_so(glacier, glacier_model, tmp_path):
    from fjord.core.learn.csc import classify_csc
    from fjord.core.prepare.tiles import build_dataset

    empty = str(tmp_path / "empty.tif")
    gdal.Translate(empty, glacier["image"], noData=0, scaleParams=[[0, 65535, 0, 0]])
    for run in (lambda: build_dataset(empty, glacier["label_raster"], str(tmp_path / "ds"),
                                      tile_size=32),
                lambda: classify_csc(empty, glacier_model, str(tmp_path / "csc.tif"))):
        with pytest.raises(FjordError, match="empty.tif has no valid pixel.*declares 0 as the "
                                             "nodata value"):
            run()
    assert sorted(os.listdir(tmp_path)) == ["empty.tif"]


def test_noise_beyond_the_data_range_is_reported(tmp_path):
    from fjord.core.prepare.tiles import build_dataset

    img = make_raster(tmp_path / "img.tif", width=64, height=64, bands=2)  # values 100, 200
    lab = make_raster(tmp_path / "lab.tif", width=64, height=64)
    ds = gdal.Open(lab, gdal.GA_Update)
    ds.GetRasterBand(1).WriteArray(np.tile(np.repeat([1, 2], 32), (64, 1)).astype(np.uint16))
    ds = None
    lines = []
    build_dataset(img, lab, str(tmp_path / "ds"), tile_size=16, augment="rotations", noise=1000,
                  progress=lambda f, m=None: m and lines.append(m))
    warning = [m for m in lines if m.startswith("Warning: NOISE 1000")]
    assert warning and "clipped" in warning[0]
    lines.clear()
    build_dataset(img, lab, str(tmp_path / "ds2"), tile_size=16, augment="rotations", noise=5,
                  progress=lambda f, m=None: m and lines.append(m))
    assert not [m for m in lines if m.startswith("Warning: NOISE")]


def test_a_raster_in_degrees_is_measured_in_metres(glacier, tmp_path):
    from fjord.core.evaluate.fronterror import validate_front
    from fjord.core.glaciers.front import calving_front, calving_fronts

    geo = str(tmp_path / "classes_4326.tif")
    gdal.Warp(geo, glacier["classes"], dstSRS="EPSG:4326", resampleAlg="near")
    shutil.copy(glacier["classes"].replace(".tif", ".schema.json"),
                geo.replace(".tif", ".schema.json"))
    utm = calving_front(glacier["classes"], str(tmp_path / "utm.gpkg"),
                        output_raster=str(tmp_path / "utm_front.tif"))
    deg = calving_front(geo, str(tmp_path / "deg.gpkg"), output_raster=str(tmp_path / "deg_front.tif"))
    assert utm["found"] and deg["found"]
    assert deg["length_m"] == pytest.approx(utm["length_m"], rel=0.1)  # metres, not degrees
    series = calving_fronts([geo], str(tmp_path / "series.gpkg"))
    assert series["scenes"][0]["length_m"] == pytest.approx(deg["length_m"])
    # the default spacing is the raster's pixel size in metres: about one point per pixel
    stats = validate_front(str(tmp_path / "deg_front.tif"), glacier["front"],
                           str(tmp_path / "err.gpkg"))
    assert 0.3 * utm["front_pixels"] < stats["points"] < 3 * utm["front_pixels"]
    assert stats["median_m"] < 100
