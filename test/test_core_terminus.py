"""Terminus change through time in the core: dates, the three methods on fronts whose answer is
known, CRSs, the files and bad input."""

import csv
import datetime
import math
import os

import numpy as np
import pytest
from osgeo import ogr, osr

from fjord.core.errors import FjordError
from fjord.core.glaciers.terminus import Shape, parse_date, terminus_change, terminus_change_files

# A transverse Mercator with scale 1 on its meridian, through the test glacier: map metres are
# true metres there (to a millimetre over these few kilometres).
LOCAL = "+proj=tmerc +lat_0=70 +lon_0=-50 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"


def _srs(crs):
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _to(wkt, crs):
    g = ogr.CreateGeometryFromWkt(wkt)
    g.Transform(osr.CoordinateTransformation(_srs(LOCAL), _srs(crs)))
    return g.ExportToWkt()


def _write(path, geoms, crs, fields=None, geom_type=ogr.wkbLineString):
    """A GeoPackage of ``geoms`` (WKT in LOCAL metres, transformed to ``crs``) with ``fields``:
    {name: (ogr type, [values])}."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("layer", srs=_srs(crs), geom_type=geom_type)
    fields = fields or {}
    for name, (kind, _) in fields.items():
        layer.CreateField(ogr.FieldDefn(name, kind))
    for i, wkt in enumerate(geoms):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(_to(wkt, crs)))
        for name, (kind, values) in fields.items():
            value = values[i]
            if kind == ogr.OFTDate:
                feature.SetField(name, value.year, value.month, value.day, 0, 0, 0, 0)
            else:
                feature.SetField(name, value)
        layer.CreateFeature(feature)
    ds = None
    return str(path)


def _front(x, y0=-3000, y1=3000):
    return f"LINESTRING({x} {y0}, {x} {y1})"


CENTRELINE = "LINESTRING(-10000 0, 10000 0)"          # upstream end first
BOX = "POLYGON((-6000 -1000, 6000 -1000, 6000 1000, -6000 1000, -6000 -1000))"
DATES = [datetime.date(2015, 1, 1), datetime.date(2016, 1, 1), datetime.date(2017, 1, 1),
         datetime.date(2018, 1, 1)]
XS = [-2000, -500, 1000, 400]  # advance, advance, advance, retreat


def test_dates_are_read_from_text_and_product_names():
    assert parse_date("2019-02-17") == datetime.date(2019, 2, 17)
    assert parse_date("2019/02/17") == datetime.date(2019, 2, 17)
    assert parse_date("20190217") == datetime.date(2019, 2, 17)
    assert parse_date("2019-02-17T10:11:12Z") == datetime.date(2019, 2, 17)
    assert parse_date("S2A_MSIL1C_20190217T153611_N0207_R068_T18XVM_20190218T183014") == \
        datetime.date(2019, 2, 17)
    assert parse_date("LC08_L1TP_034033_20190217_20190222_01_T1_front.gpkg") == \
        datetime.date(2019, 2, 17)
    assert parse_date(datetime.datetime(2019, 2, 17, 5)) == datetime.date(2019, 2, 17)
    for bad in ("", None, "front", "20191317", "034033", "2019-13-45"):
        assert parse_date(bad) is None, bad


def test_straight_fronts_through_a_straight_box_are_exact():
    fronts = [(d, Shape(_front(x), LOCAL)) for d, x in zip(DATES, XS)]
    result = terminus_change(fronts, centreline=Shape(CENTRELINE, LOCAL), box=Shape(BOX, LOCAL),
                             box_width=2000, direction=1)
    rows = result["rows"]
    assert [r["date"] for r in rows] == DATES
    for row, x in zip(rows, XS):
        assert row["centreline_m"] == pytest.approx(x + 10000, abs=0.01)   # from the upstream end
        assert row["rectilinear_box_m"] == pytest.approx(x + 6000, abs=0.01)  # from the box's
        assert row["curvilinear_box_m"] == pytest.approx(x + 10000, abs=0.01)
        assert row["front_width_m"] == pytest.approx(2000, abs=0.01)
        assert row["note"] == ""
    assert result["method"] == "curvilinear_box_m"
    changes = [r["change_m"] for r in rows]
    assert changes == pytest.approx([0, 1500, 3000, 2400], abs=0.01)
    assert rows[0]["rate_m_per_year"] is None
    assert rows[1]["rate_m_per_year"] == pytest.approx(1500 / (365 / 365.25), abs=0.01)
    assert rows[3]["rate_m_per_year"] == pytest.approx(-600 / (365 / 365.25), abs=0.01)  # retreat


def test_direction_flips_the_upstream_end():
    fronts = [(d, Shape(_front(x), LOCAL)) for d, x in zip(DATES, XS)]
    reverse = "LINESTRING(10000 0, -10000 0)"
    a = terminus_change(fronts, centreline=Shape(CENTRELINE, LOCAL), direction=1)["rows"]
    b = terminus_change(fronts, centreline=Shape(reverse, LOCAL), direction=0)["rows"]
    assert [r["centreline_m"] for r in a] == pytest.approx([r["centreline_m"] for r in b], abs=1e-6)
    # The box alone, read as drawn: its first vertex (-6000, -1000) upstream (1) or downstream (0).
    up = terminus_change(fronts, box=Shape(BOX, LOCAL), direction=1)["rows"]
    down = terminus_change(fronts, box=Shape(BOX, LOCAL), direction=0)["rows"]
    assert [r["rectilinear_box_m"] for r in up] == pytest.approx([x + 6000 for x in XS], abs=0.01)
    assert [r["rectilinear_box_m"] for r in down] == pytest.approx([6000 - x for x in XS], abs=0.01)


def test_curvilinear_box_along_an_arc_gives_the_arc_length():
    # A centreline along a quarter circle of radius R; a radial front at angle t leaves upstream
    # of it an annular sector of area R * t * w: the position is the arc length R * t.
    radius, width = 8000.0, 1000.0
    angles = np.linspace(0, math.pi / 2, 400)
    arc = ", ".join(f"{radius * math.cos(a):.4f} {radius * math.sin(a):.4f}" for a in angles)
    centreline = Shape(f"LINESTRING({arc})", LOCAL)
    fronts = []
    for i, t in enumerate((0.3, 0.6, 0.9, 1.2)):
        c, s = math.cos(t), math.sin(t)
        fronts.append((datetime.date(2010 + i, 6, 1), Shape(
            f"LINESTRING({(radius - 1500) * c} {(radius - 1500) * s}, "
            f"{(radius + 1500) * c} {(radius + 1500) * s})", LOCAL)))
    rows = terminus_change(fronts, centreline=centreline, box_width=width, direction=1)["rows"]
    for row, t in zip(rows, (0.3, 0.6, 0.9, 1.2)):
        assert row["curvilinear_box_m"] == pytest.approx(radius * t, rel=2e-4)
        assert row["centreline_m"] == pytest.approx(radius * t, rel=2e-4)
        assert row["front_width_m"] == pytest.approx(width, rel=1e-3)


def test_fronts_that_miss_the_box_get_a_note_and_no_number_and_one_crossing_twice_a_value():
    fronts = [(DATES[0], Shape(_front(0), LOCAL)),
              (DATES[1], Shape("LINESTRING(1000 -3000, 1000 500)", LOCAL)),  # stops inside
              (DATES[2], Shape("LINESTRING(2000 -3000, 2000 3000, 2500 3000, 2500 -3000)", LOCAL)),
              (DATES[3], Shape("LINESTRING(20000 -3000, 20000 3000)", LOCAL))]
    rows = terminus_change(fronts, centreline=Shape(CENTRELINE, LOCAL), box=Shape(BOX, LOCAL),
                           direction=1)["rows"]
    assert rows[0]["rectilinear_box_m"] == pytest.approx(6000, abs=0.01)
    assert rows[1]["rectilinear_box_m"] is None and "side to side" in rows[1]["note"]
    assert rows[1]["centreline_m"] == pytest.approx(11000, abs=0.01)
    # across at x = 2000, back at 2500: the piece at the upstream end reaches x = 2000
    assert rows[2]["rectilinear_box_m"] == pytest.approx(8000, abs=0.01)
    assert "more than once (3 pieces)" in rows[2]["note"]
    assert rows[2]["centreline_m"] == pytest.approx(12500, abs=0.01)  # the most downstream
    assert "2 times" in rows[2]["note"]
    assert rows[3]["rectilinear_box_m"] is None and rows[3]["centreline_m"] is None
    assert rows[3]["change_m"] is None and "does not" in rows[3]["note"]


def test_a_zig_zag_front_crossing_the_box_four_times_is_measured():
    """Across the 2 km box at x = 1000, back at 1500, across again at 2000, back at 2500: five
    pieces; the one at the upstream end (x = -6000 to 1000) is the area upstream."""
    zig = ("LINESTRING(1000 -3000, 1000 3000, 1500 3000, 1500 -3000, 2000 -3000, 2000 3000, "
           "2500 3000, 2500 -3000)")
    rows = terminus_change([(DATES[0], Shape(zig, LOCAL))], centreline=Shape(CENTRELINE, LOCAL),
                           box=Shape(BOX, LOCAL), direction=1)["rows"]
    assert rows[0]["rectilinear_box_m"] == pytest.approx(7000, abs=0.01)
    assert "more than once (5 pieces); measured from the 1 at the upstream end" in rows[0]["note"]


def test_a_front_that_leaves_and_re_enters_a_curvilinear_box_is_measured():
    """The front leaves the 2 km curvilinear box (y from -1000 to 1000, upstream end at
    x = -10000) through its side at x = 1200 and comes back in at 1500; the piece it cuts off
    the side (x 500-1200, y below -500) is not at the upstream end."""
    front = ("LINESTRING(500 -3000, 500 -500, 1200 -500, 1200 -1500, 1500 -1500, 1500 -200, "
             "800 -200, 800 3000)")
    rows = terminus_change([(DATES[0], Shape(front, LOCAL))], centreline=Shape(CENTRELINE, LOCAL),
                           box_width=2000, direction=1)["rows"]
    # bands of y: -1000..-500 to x = 500 (and the pocket 1200-1500), -500..-200 to x = 1500,
    # -200..1000 to x = 800
    expected = (10500 * 500 + 300 * 500 + 11500 * 300 + 10800 * 1200) / 2000
    assert rows[0]["curvilinear_box_m"] == pytest.approx(expected, rel=1e-6)
    assert "curvilinear box: the front crosses the box more than once" in rows[0]["note"]


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3413", "EPSG:32622"])
def test_metres_are_true_metres_in_any_crs(tmp_path, crs):
    """The same fronts in a geographic CRS, in polar stereographic (1.7 % off at 76 N; 70 N
    here) and in UTM give the positions measured in the true-scale projection."""
    lines = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], crs,
                   {"date": (ogr.OFTDate, DATES)})
    centreline = _write(tmp_path / "centreline.gpkg", [CENTRELINE], "EPSG:3413")
    box = _write(tmp_path / "box.gpkg", [BOX], "EPSG:4326", geom_type=ogr.wkbPolygon)
    out = tmp_path / "change.csv"
    terminus_change_files(lines, str(out), centreline=centreline, box=box, box_width=2000,
                          direction=1)
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert [r["date"] for r in rows] == [d.isoformat() for d in DATES]
    for row, x in zip(rows, XS):
        assert float(row["centreline_m"]) == pytest.approx(x + 10000, abs=0.05)
        assert float(row["rectilinear_box_m"]) == pytest.approx(x + 6000, abs=0.05)
        assert float(row["curvilinear_box_m"]) == pytest.approx(x + 10000, abs=0.05)


def test_the_files_table_points_and_figure(tmp_path):
    names = [f"S2A_MSIL1C_{d:%Y%m%d}T153611_N0207_R068_T22WEV_{d:%Y%m%d}T183014" for d in DATES]
    lines = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], LOCAL,
                   {"id": (ogr.OFTInteger, [1, 2, 3, 4]), "scene": (ogr.OFTString, names)})
    centreline = _write(tmp_path / "centreline.gpkg", [CENTRELINE], LOCAL)
    out, points, fig = tmp_path / "change.gpkg", tmp_path / "points.gpkg", tmp_path / "change.png"
    result = terminus_change_files(lines, str(out), centreline=centreline, direction=1,
                                   output_points=str(points), figure_path=str(fig))
    assert result["date_field"] == "scene" and result["method"] == "centreline_m"
    ds = ogr.Open(str(out))
    layer = ds.GetLayer(0)
    assert [layer.GetLayerDefn().GetFieldDefn(i).GetName()
            for i in range(layer.GetLayerDefn().GetFieldCount())] == [
        "date", "centreline_m", "rectilinear_box_m", "curvilinear_box_m", "change_m",
        "rate_m_per_year", "front_width_m", "note"]
    feats = list(layer)
    assert [f.GetFieldAsString("date") for f in feats] == [d.strftime("%Y/%m/%d") for d in DATES]
    assert [f.GetField("change_m") for f in feats] == pytest.approx([0, 1500, 3000, 2400], abs=0.01)
    assert not feats[0].IsFieldSetAndNotNull("rectilinear_box_m")
    ds = ogr.Open(str(points))
    feats = list(ds.GetLayer(0))
    assert [f.GetField("position_m") for f in feats] == pytest.approx([x + 10000 for x in XS], abs=0.01)
    assert os.path.isfile(tmp_path / "points.qml") and os.path.getsize(fig) > 20000
    for wrong in ("change.csv", "change.gpkg", "change"):
        with pytest.raises(FjordError, match="figure .* must be an image: end its name in .png"):
            terminus_change_files(lines, str(tmp_path / "c2.gpkg"), centreline=centreline,
                                  figure_path=str(tmp_path / wrong))
        assert not os.path.exists(tmp_path / "c2.gpkg")


def test_bad_input_says_what_is_wrong_and_leaves_nothing(tmp_path):
    lines = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], LOCAL,
                   {"label": (ogr.OFTString, ["a", "b", "c", "d"])})
    centreline = _write(tmp_path / "centreline.gpkg", [CENTRELINE], LOCAL)
    out = tmp_path / "out.csv"
    with pytest.raises(FjordError, match="No field of the fronts holds a date"):
        terminus_change_files(lines, str(out), centreline=centreline)
    with pytest.raises(FjordError, match="The field 'label' holds no date \\('a', 'b', 'c'"):
        terminus_change_files(lines, str(out), centreline=centreline, date_field="label")
    with pytest.raises(FjordError, match="no field 'when'"):
        terminus_change_files(lines, str(out), centreline=centreline, date_field="when")
    dated = _write(tmp_path / "dated.gpkg", [_front(x) for x in XS], LOCAL,
                   {"date": (ogr.OFTDate, DATES)})
    with pytest.raises(FjordError, match="Give a CENTRELINE, a BOX, or both"):
        terminus_change_files(dated, str(out))
    far = _write(tmp_path / "far.gpkg", ["POLYGON((50000 0, 60000 0, 60000 1000, 50000 1000, 50000 0))"],
                 LOCAL, geom_type=ogr.wkbPolygon)
    with pytest.raises(FjordError, match="No front gives a position"):
        terminus_change_files(dated, str(out), box=far)
    polygons = _write(tmp_path / "polygons.gpkg", [BOX], LOCAL, {"date": (ogr.OFTDate, DATES[:1])},
                      geom_type=ogr.wkbPolygon)
    with pytest.raises(FjordError, match="give a line layer"):
        terminus_change_files(polygons, str(out), centreline=centreline)
    assert sorted(os.listdir(tmp_path)) == ["centreline.gpkg", "dated.gpkg", "far.gpkg",
                                            "fronts.gpkg", "polygons.gpkg"]


def test_the_log_counts_the_fronts_without_a_readable_date(tmp_path):
    days = ["2019-07-01", "2020-07-01", "sometime", "2022-07-01"]
    lines = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], LOCAL,
                   {"acquired": (ogr.OFTString, days)})
    centreline = _write(tmp_path / "centreline.gpkg", [CENTRELINE], LOCAL)
    messages = []
    terminus_change_files(lines, str(tmp_path / "t.csv"), centreline=centreline, direction=1,
                          date_field="acquired",
                          progress=lambda f, m=None: m and messages.append(m))
    assert any(m.startswith("3 of 4 fronts dated by the field 'acquired' (1 without a readable "
                            "date") for m in messages)


def test_a_self_intersecting_box_is_refused_in_words():
    bowtie = "POLYGON((-6000 -1000, 6000 1000, 6000 -1000, -6000 1000, -6000 -1000))"
    with pytest.raises(FjordError, match="box is not a valid polygon: its outline crosses itself"):
        terminus_change([(DATES[0], Shape(_front(0), LOCAL))], box=Shape(bowtie, LOCAL))


def test_a_centreline_that_ends_among_the_fronts_gets_a_note_on_the_cut_fronts():
    """The centreline (and so the curvilinear box) ends at x = 1500, among the fronts: a front
    at x = 2500 with a bay back to x = 1000 between y = -500 and 500 runs through the box's
    downstream end and is measured from its part inside, with a note; a front wholly upstream
    of the end has none. The rectilinear box, which the centreline enters and ends in, holds
    the whole front: no note."""
    short = "LINESTRING(-10000 0, 1500 0)"
    bay = "LINESTRING(2500 -3000, 2500 -500, 1000 -500, 1000 500, 2500 500, 2500 3000)"
    fronts = [(DATES[0], Shape(_front(0), LOCAL)), (DATES[1], Shape(bay, LOCAL))]
    rows = terminus_change(fronts, centreline=Shape(short, LOCAL), box_width=2000,
                           box=Shape(BOX, LOCAL), direction=1)["rows"]
    assert rows[0]["curvilinear_box_m"] == pytest.approx(10000, abs=0.01)
    assert rows[0]["note"] == ""
    # inside the box: to x = 1000 over 1000 m of the width, to the end (1500) over the rest
    assert rows[1]["curvilinear_box_m"] == pytest.approx((11000 + 11500) / 2, abs=0.01)
    assert ("curvilinear box: the front runs through the box's downstream end, so only its part "
            "inside the box is measured") in rows[1]["note"]
    assert rows[1]["rectilinear_box_m"] == pytest.approx((7000 * 1000 + 8500 * 1000) / 2000,
                                                         abs=0.01)
    assert "rectilinear box: the front runs through" not in rows[1]["note"]
