"""fjord:terminuschange inside QGIS: the interface, a record from layers in different CRSs, the
styled crossings, and bad input."""

import csv
import datetime
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
