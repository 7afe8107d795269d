"""fjord:classifycsc and fjord:batchcsc inside QGIS and through qgis_process."""

import csv
import json
import os
import shutil

import pytest

from test_e2e_qgis_process import qgis_process  # noqa: F401 (fixture)

QUICK = {"SAMPLES_PER_CLASS": 2000, "MAX_EPOCHS": 20, "PATIENCE": 5}


def test_classifycsc_through_qgis_process_beats_phase_one(qgis_process, glacier, glacier_model,  # noqa: F811
                                                          tmp_path):
    args = [f"{k}={v}" for k, v in QUICK.items()]
    proc = qgis_process("--json", "run", "fjord:classifycsc", "--", f"INPUT={glacier['image']}",
                        f"MODEL={glacier_model}", "PATCH_SIZE=7", *args,
                        f"VALIDATION={glacier['classes']}", f"OUTPUT={tmp_path / 'csc.tif'}",
                        f"OUTPUT_PHASE_ONE={tmp_path / 'p1.tif'}", f"REPORT={tmp_path / 'report'}")
    results = json.loads(proc.stdout)["results"]
    assert results["CSC_WEIGHTED_F1"] > results["PHASE_ONE_WEIGHTED_F1"] + 0.03, results
    assert results["CSC_WEIGHTED_F1"] > 0.8
    assert os.path.isfile(tmp_path / "csc.tif") and os.path.isfile(tmp_path / "csc.qml")
    assert results["FIGURE"] == str(tmp_path / "report" / "CSC_image.png")
    assert os.path.isfile(tmp_path / "report" / "CNN_image.csv")
    help_text = qgis_process("help", "fjord:classifycsc").stdout
    for name in ("INPUT", "MODEL", "PATCH_SIZE", "SAMPLES_PER_CLASS", "PATIENCE", "MAX_EPOCHS",
                 "RECOGNITION_THRESHOLD", "TILE_STRIDE", "SMOOTHING", "VALIDATION", "OUTPUT",
                 "OUTPUT_PHASE_ONE", "OUTPUT_PROBABILITIES", "PHASE_TWO_MODEL", "REPORT"):
        assert name in help_text


def test_classifycsc_output_loads_paletted_with_the_schema(run_alg, glacier, glacier_model, tmp_path):
    from qgis.core import QgsRasterLayer

    res = run_alg("classifycsc", dict(QUICK, INPUT=glacier["image"], MODEL=glacier_model,
                                      PATCH_SIZE=1, MAX_EPOCHS=3, OUTPUT=str(tmp_path / "csc.tif"),
                                      OUTPUT_PROBABILITIES=str(tmp_path / "prob.tif")))
    layer = QgsRasterLayer(res["OUTPUT"], "csc")
    assert layer.isValid() and layer.renderer().type() == "paletted"  # from the sidecar QML
    names = [c.label for c in layer.renderer().classes()]
    assert names[:3] == ["open water", "iceberg water", "mélange"]
    prob = QgsRasterLayer(res["OUTPUT_PROBABILITIES"], "p")
    assert prob.bandCount() == 7 and prob.bandName(1).endswith("open water")
    assert res.get("CSC_WEIGHTED_F1") is None  # no validation raster given


def test_classifycsc_refuses_other_patch_sizes(run_alg, glacier, glacier_model, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="PATCH_SIZE must be 1"):
        run_alg("classifycsc", {"INPUT": glacier["image"], "MODEL": glacier_model, "PATCH_SIZE": 9,
                                "OUTPUT": str(tmp_path / "c.tif")})


def test_batchcsc_runs_the_table(run_alg, glacier, glacier_model, tmp_path):
    os.makedirs(tmp_path / "images")
    shutil.copy(glacier["image"], tmp_path / "images" / "fjord.tif")
    shutil.copy(glacier["classes"], tmp_path / "images" / "fjord_classes.tif")
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Model", "DataSource", "OutFolder", "ExpShortHand", "Dims", "PatchSize",
                    "TileSize", "Patience", "Done"])
        w.writerow([glacier_model, "images/*.tif", "out/run", "T", 4, 3, 32, 3, 0])
    res = run_alg("batchcsc", {"JOBS": str(tmp_path / "jobs.csv"), "SAMPLES_PER_CLASS": 1000,
                               "MAX_EPOCHS": 3, "OUTPUT": str(tmp_path / "summary.csv")})
    assert res["JOBS_RUN"] == 1 and res["JOBS_FAILED"] == 0
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["Status"] == "ok" and float(rows[0]["CSC_weighted_F1"]) > 0
    assert os.path.isfile(tmp_path / "out" / "run_patch3" / "T_fjord.tif")
    with open(tmp_path / "jobs.csv", newline="") as f:
        assert list(csv.DictReader(f))[0]["Done"] == "1"
