"""fjord:terminuschange inside QGIS: the interface, a record from layers in different CRSs, the
styled crossings, and bad input."""

import csv
import os

import pytest
from osgeo import ogr
from test_core_terminus import BOX, CENTRELINE, DATES, XS, _front, _write


def test_terminuschange_interface_and_record(run_alg, tmp_path):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("fjord:terminuschange")
    assert alg.group() == "Glaciers"
    assert [p.name() for p in alg.parameterDefinitions()] == [
        "INPUT", "DATE_FIELD", "CENTRELINE", "DIRECTION", "BOX", "BOX_WIDTH", "OUTPUT", "FIGURE",
        "OUTPUT_POINTS"]
    names = [f"LC08_L1TP_034033_{d:%Y%m%d}_20190222_01_T1" for d in DATES]
    fronts = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], "EPSG:4326",
                    {"product": (ogr.OFTString, names)})
    reverse = "LINESTRING(10000 0, -10000 0)"  # drawn from the fjord up the glacier
    centreline = _write(tmp_path / "centreline.gpkg", [reverse], "EPSG:3413")
    box = _write(tmp_path / "box.gpkg", [BOX], "EPSG:32622", geom_type=ogr.wkbPolygon)
    out = tmp_path / "change.csv"
    result = run_alg("terminuschange", {
        "INPUT": fronts, "CENTRELINE": centreline, "DIRECTION": 0, "BOX": box, "BOX_WIDTH": 2000,
        "OUTPUT": str(out), "FIGURE": str(tmp_path / "change.png"),
        "OUTPUT_POINTS": str(tmp_path / "points.gpkg")})
    assert result["FRONTS"] == 4 and result["METHOD"] == "curvilinear_box_m"
    assert result["DATE_FIELD_USED"] == "product"
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert list(rows[0]) == ["date", "centreline_m", "rectilinear_box_m", "curvilinear_box_m",
                             "change_m", "rate_m_per_year", "front_width_m", "note"]
    assert [r["date"] for r in rows] == [d.isoformat() for d in DATES]
    assert [float(r["centreline_m"]) for r in rows] == pytest.approx([x + 10000 for x in XS], abs=0.05)
    assert [float(r["rectilinear_box_m"]) for r in rows] == pytest.approx([x + 6000 for x in XS], abs=0.05)
    assert [float(r["change_m"]) for r in rows] == pytest.approx([0, 1500, 3000, 2400], abs=0.05)
    assert rows[0]["rate_m_per_year"] == ""
    assert os.path.isfile(tmp_path / "points.qml") and os.path.getsize(tmp_path / "change.png") > 20000


def test_terminuschange_bad_input_stops_with_a_message(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    fronts = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], "EPSG:4326",
                    {"label": (ogr.OFTString, ["a", "b", "c", "d"])})
    centreline = _write(tmp_path / "centreline.gpkg", [CENTRELINE], "EPSG:3413")
    out = tmp_path / "change.csv"
    with pytest.raises(QgsProcessingException, match="No field of the fronts holds a date"):
        run_alg("terminuschange", {"INPUT": fronts, "CENTRELINE": centreline, "OUTPUT": str(out)})
    dated = _write(tmp_path / "dated.gpkg", [_front(x) for x in XS], "EPSG:4326",
                   {"date": (ogr.OFTDate, DATES)})
    with pytest.raises(QgsProcessingException, match="Give a CENTRELINE, a BOX, or both"):
        run_alg("terminuschange", {"INPUT": dated, "OUTPUT": str(out)})
    assert not out.exists() and not any(n.startswith(".change") for n in os.listdir(tmp_path))


def test_class_rasters_of_several_dates_to_one_record(run_alg, glacier, tmp_path):
    """calvingfronts merges the dated fronts of several scenes; the shipped workflow runs it and
    terminuschange in one go."""
    from osgeo import gdal

    rasters = []
    for day in ("20180817", "20190817", "20200817"):
        path = tmp_path / f"S2A_MSIL1C_{day}T151809_N0209_R068_T22WEV_classes.tif"
        gdal.Translate(str(path), glacier["classes"])
        rasters.append(str(path))
    fronts = tmp_path / "fronts.gpkg"
    result = run_alg("calvingfronts", {"INPUT": rasters, "OUTPUT": str(fronts)})
    assert result["FRONT_COUNT"] == 3
    ds = ogr.Open(str(fronts))
    layer = ds.GetLayer(0)
    assert [f.GetFieldAsString("date") for f in layer] == ["2018/08/17", "2019/08/17", "2020/08/17"]
    extent = layer.GetExtent()  # xmin, xmax, ymin, ymax
    srs = layer.GetSpatialRef().Clone()
    ds = None
    # A box across the middle of the front, long across it: the same front every year, no change.
    x0, x1, y0, y1 = extent
    w, h = x1 - x0, y1 - y0
    if w >= h:
        bx0, bx1, by0, by1 = x0 + 0.35 * w, x1 - 0.35 * w, y0 - 2000, y1 + 2000
    else:
        bx0, bx1, by0, by1 = x0 - 2000, x1 + 2000, y0 + 0.35 * h, y1 - 0.35 * h
    box = tmp_path / "box.gpkg"
    driver = ogr.GetDriverByName("GPKG").CreateDataSource(str(box))
    lyr = driver.CreateLayer("box", srs=srs, geom_type=ogr.wkbPolygon)
    feature = ogr.Feature(lyr.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(
        f"POLYGON(({bx0} {by0}, {bx1} {by0}, {bx1} {by1}, {bx0} {by1}, {bx0} {by0}))"))
    lyr.CreateFeature(feature)
    driver = None
    result = run_alg("terminuschangefromclassrasters", {
        "CLASS_RASTERS": rasters, "BOX": str(box), "DIRECTION": 1,
        "fronts:FRONTS": str(tmp_path / "merged.gpkg"), "change:TABLE": str(tmp_path / "change.csv"),
        "change:FIGURE": str(tmp_path / "change.png")})
    assert result["change:TABLE"] == str(tmp_path / "change.csv")
    rows = list(csv.DictReader((tmp_path / "change.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["date"] for r in rows] == ["2018-08-17", "2019-08-17", "2020-08-17"]
    assert [float(r["change_m"]) for r in rows] == pytest.approx([0, 0, 0], abs=1e-6)
    assert float(rows[0]["front_width_m"]) > 0.25 * max(w, h)
    assert os.path.isfile(tmp_path / "merged.gpkg") and os.path.isfile(tmp_path / "change.png")


def test_terminuschange_through_qgis_process(qgis_process, tmp_path):
    import json

    fronts = _write(tmp_path / "fronts.gpkg", [_front(x) for x in XS], "EPSG:3413",
                    {"date": (ogr.OFTDate, DATES)})
    centreline = _write(tmp_path / "centreline.gpkg", [CENTRELINE], "EPSG:4326")
    out = tmp_path / "change.gpkg"
    proc = qgis_process("--json", "run", "fjord:terminuschange", "--", f"INPUT={fronts}",
                        f"CENTRELINE={centreline}", "DIRECTION=1", "BOX_WIDTH=2000", f"OUTPUT={out}")
    results = json.loads(proc.stdout)["results"]
    assert results["FRONTS"] == 4 and results["METHOD"] == "curvilinear_box_m"
    ds = ogr.Open(str(out))
    values = [(f.GetField("centreline_m"), f.GetField("curvilinear_box_m")) for f in ds.GetLayer(0)]
    ds = None
    assert [v[0] for v in values] == pytest.approx([x + 10000 for x in XS], abs=0.05)
    assert [v[1] for v in values] == pytest.approx([x + 10000 for x in XS], abs=0.05)
