"""fjord:classifycsc and fjord:batchcsc inside QGIS and through qgis_process."""

import csv
import json
import os

import pytest

QUICK = {"SAMPLES_PER_CLASS": 2000, "MAX_EPOCHS": 20, "PATIENCE": 5}


@pytest.mark.slow
def test_classifycsc_through_qgis_process_beats_phase_one(qgis_process, glacier, glacier_model,
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


@pytest.mark.slow
def test_classifycsc_takes_a_unet_as_phase_one_in_the_toolbox_and_qgis_process(
        run_alg, qgis_process, glacier, glacier_unet, tmp_path):
    res = run_alg("classifycsc", dict(QUICK, INPUT=glacier["image"], MODEL=glacier_unet["path"],
                                      PATCH_SIZE=1, MAX_EPOCHS=5, BOUNDARY_MARGIN=2,
                                      VALIDATION=glacier["classes"],
                                      OUTPUT=str(tmp_path / "toolbox.tif"),
                                      REPORT=str(tmp_path / "report")))
    # A tiny U-Net trained for seconds: well above chance (7 classes) is all that is asked here;
    # the quality of the method is bench/transfer.py's.
    assert res["CSC_WEIGHTED_F1"] > 0.5 and os.path.isfile(res["FIGURE"])
    args = [f"{k}={v}" for k, v in dict(QUICK, PATCH_SIZE=7, MAX_EPOCHS=5,
                                         BOUNDARY_MARGIN=2).items()]
    proc = qgis_process("--json", "run", "fjord:classifycsc", "--", f"INPUT={glacier['image']}",
                        f"MODEL={glacier_unet['path']}", *args, f"OUTPUT={tmp_path / 'cli.tif'}")
    assert json.loads(proc.stdout)["results"]["OUTPUT"] == str(tmp_path / "cli.tif")
    assert "Phase one: the U-Net unet.keras" in proc.stdout + proc.stderr
    assert "BOUNDARY_MARGIN" in qgis_process("help", "fjord:classifycsc").stdout


def test_classifycsc_refuses_other_patch_sizes(run_alg, glacier, glacier_model, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="PATCH_SIZE must be 1"):
        run_alg("classifycsc", {"INPUT": glacier["image"], "MODEL": glacier_model, "PATCH_SIZE": 9,
                                "OUTPUT": str(tmp_path / "c.tif")})


@pytest.mark.slow
def test_batchcsc_on_two_local_workers_from_the_toolbox_and_qgis_process(
        run_alg, qgis_process, glacier, glacier_model, tmp_path):
    from qgis.core import QgsVectorLayer
    from test_core_batch import OPTIONS, class_rasters, make_table

    from fjord.core.run.batch import batch_csc

    folders = {k: tmp_path / k for k in ("here", "toolbox", "cli")}
    tables = {k: make_table(f, glacier, glacier_model, bad=False) for k, f in folders.items()}
    batch_csc(str(tables["here"]), str(folders["here"] / "summary.csv"), **OPTIONS)
    params = {"SAMPLES_PER_CLASS": 500, "MAX_EPOCHS": 2, "SMOOTHING": 2, "SCHEDULER": "local:2"}
    res = run_alg("batchcsc", dict(params, JOBS=str(tables["toolbox"]),
                                   OUTPUT=str(folders["toolbox"] / "summary.csv"),
                                   FRONTS=str(folders["toolbox"] / "fronts.gpkg")))
    assert res["JOBS_RUN"] == 2 and res["JOBS_FAILED"] == 0
    layer = QgsVectorLayer(res["FRONTS"], "fronts", "ogr")
    assert layer.isValid() and layer.featureCount() == 2
    assert [f["date"].toString("yyyy-MM-dd") for f in layer.getFeatures()] == ["2019-02-17",
                                                                                "2019-03-05"]
    proc = qgis_process("--json", "run", "fjord:batchcsc", "--", f"JOBS={tables['cli']}",
                        *[f"{k}={v}" for k, v in params.items()],
                        f"OUTPUT={folders['cli'] / 'summary.csv'}",
                        f"FRONTS={folders['cli'] / 'fronts.gpkg'}")
    results = json.loads(proc.stdout)["results"]
    assert results["JOBS_RUN"] == 2 and results["JOBS_FAILED"] == 0
    here = class_rasters(folders["here"])
    assert len(here) == 4
    for name, path in here.items():
        for other in ("toolbox", "cli"):
            with open(path, "rb") as a, open(folders[other] / name, "rb") as b:
                assert a.read() == b.read(), (other, name)
    for folder in folders.values():
        with open(folder / "jobs.csv", newline="") as f:
            assert [r["Done"] for r in csv.DictReader(f)] == ["1", "1"]


def test_cancelled_batch_leaves_no_worker_process(run_alg, glacier, glacier_model, tmp_path):
    import threading
    import time

    import psutil
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    from test_core_batch import make_table

    jobs = make_table(tmp_path, glacier, glacier_model, bad=False)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    feedback = QgsProcessingFeedback()
    started = threading.Event()
    feedback.pushInfo = lambda text: "Dask cluster" in text and started.set()

    def cancel_when_the_jobs_run():
        started.wait(120)
        time.sleep(3.0)
        feedback.cancel()

    threading.Thread(target=cancel_when_the_jobs_run, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_alg("batchcsc", {"JOBS": str(jobs), "SCHEDULER": "local:2", "SAMPLES_PER_CLASS": 500,
                             "MAX_EPOCHS": 50, "OUTPUT": str(tmp_path / "summary.csv")},
                feedback=feedback)
    assert started.is_set() and time.monotonic() - t0 < 60
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            break
        time.sleep(0.5)
    assert not left, [p.cmdline() for p in left]
    assert not os.path.exists(tmp_path / "summary.csv")
    with open(jobs, newline="") as f:
        assert [r["Done"] for r in csv.DictReader(f)] == ["0", "0"]


