"""fjord:calvingfront, fjord:validateclassification and fjord:validatefront inside QGIS and
through qgis_process."""

import json
import os

import pytest


def test_front_and_validations_through_qgis_process(qgis_process, glacier, tmp_path):
    front, margins = tmp_path / "front.gpkg", tmp_path / "margins.gpkg"
    proc = qgis_process("--json", "run", "fjord:calvingfront", "--", f"INPUT={glacier['classes']}",
                        f"OUTPUT={front}", f"OUTPUT_MARGINS={margins}",
                        f"OUTPUT_RASTER={tmp_path / 'burned.tif'}")
    results = json.loads(proc.stdout)["results"]
    assert results["LENGTH_M"] > 1000 and results["MARGIN_COUNT"] >= 1
    assert os.path.isfile(tmp_path / "front.qml")

    proc = qgis_process("--json", "run", "fjord:validatefront", "--", f"INPUT={front}",
                        f"REFERENCE={glacier['front']}", f"OUTPUT={tmp_path / 'errors.gpkg'}",
                        f"REPORT={tmp_path / 'errors.csv'}", f"FIGURE={tmp_path / 'errors.png'}")
    results = json.loads(proc.stdout)["results"]
    assert results["MEDIAN_M"] <= 10 and results["CATASTROPHIC"] is False
    assert results["POINTS"] > 50 and 0.9 <= results["SHARE_UNDER_100M"] <= 1

    proc = qgis_process("--json", "run", "fjord:validateclassification", "--",
                        f"INPUT={tmp_path / 'burned.tif'}", f"REFERENCE_VECTOR={glacier['labels']}",
                        "FIELD=class", f"OUTPUT={tmp_path / 'scores.csv'}",
                        f"OUTPUT_CONFUSION={tmp_path / 'confusion.csv'}",
                        f"FIGURE={tmp_path / 'confusion.png'}")
    results = json.loads(proc.stdout)["results"]
    assert results["OVERALL_ACCURACY"] > 0.95 and -1 <= results["KAPPA"] <= 1
    assert os.path.isfile(tmp_path / "confusion.png")
    for alg, names in (("calvingfront", ("INPUT", "GLACIER_CLASSES", "OCEAN_CLASSES", "ROCK_CLASSES",
                                         "ITERATIONS", "BALLOON", "SMOOTHING", "THRESHOLD",
                                         "MIN_OCEAN_AREA", "OUTPUT", "OUTPUT_MARGINS", "OUTPUT_RASTER")),
                       ("validateclassification", ("INPUT", "REFERENCE", "REFERENCE_VECTOR", "FIELD",
                                                   "OUTPUT", "OUTPUT_CONFUSION", "FIGURE")),
                       ("validatefront", ("INPUT", "REFERENCE", "OUTPUT", "REPORT", "FIGURE"))):
        help_text = qgis_process("help", f"fjord:{alg}").stdout
        for name in names:
            assert name in help_text, (alg, name)


def test_front_layers_load_styled(run_alg, glacier, tmp_path):
    from qgis.core import QgsVectorLayer

    res = run_alg("calvingfront", {"INPUT": glacier["classes"], "OUTPUT": str(tmp_path / "front.gpkg")})
    layer = QgsVectorLayer(res["OUTPUT"], "front", "ogr")
    assert layer.isValid() and layer.featureCount() == 1
    symbol = layer.renderer().symbol()  # the sidecar QML: bold red
    assert symbol.color().name() == "#ff0000" and symbol.width() == pytest.approx(1.2)
    res = run_alg("validatefront", {"INPUT": res["OUTPUT"], "REFERENCE": glacier["front"],
                                    "OUTPUT": str(tmp_path / "err.gpkg")})
    points = QgsVectorLayer(res["OUTPUT"], "err", "ogr")
    assert points.renderer().type() == "graduatedSymbol" and points.featureCount() == res["POINTS"]


def test_calvingfront_refuses_unknown_classes(run_alg, glacier, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="GLACIER_CLASSES lists"):
        run_alg("calvingfront", {"INPUT": glacier["classes"], "GLACIER_CLASSES": "12",
                                 "OUTPUT": str(tmp_path / "f.gpkg")})
