"""fjord:trainphaseone inside QGIS (worker, cancel and resume) and through qgis_process."""

import json
import os

import pytest

QUICK = {"ARCHITECTURE": 1, "EPOCHS": 3, "BATCH_SIZE": 32, "LEARNING_RATE": 1e-3,
         "TARGET_ACCURACY": 0, "PATIENCE": 0}


def _feedback(cancel_after=None):
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines, self.progress = [], []
            self.progressChanged.connect(self.progress.append)

        def pushInfo(self, info):
            self.lines.append(info)
            if cancel_after and info.startswith(cancel_after):
                self.cancel()
            super().pushInfo(info)

    return Recorder()


@pytest.mark.slow
def test_trainphaseone_logs_epochs_cancels_and_resumes(run_alg, glacier_tiles, tmp_path):
    from qgis.core import QgsProcessingException

    from fjord.algorithms import training_events

    events = []
    training_events.subscribe(events.append)
    model, report = str(tmp_path / "phase1.keras"), str(tmp_path / "report")
    params = dict(QUICK, DATASET=glacier_tiles, OUTPUT=model, REPORT=report)
    fb = _feedback(cancel_after="Epoch 1/3")
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_alg("trainphaseone", params, feedback=fb)
    # The training monitor's events: start, the finished epoch, end (cancelled).
    assert [e["event"] for e in events] == ["start", "epoch", "end"]
    assert events[0]["model"] == model and events[0]["title"].startswith("Train phase-one CNN")
    assert events[1]["row"]["epoch"] == 1 and events[1]["row"]["epochs"] == 3
    assert set(events[1]["row"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert events[2]["status"] == "cancelled" and len({e["run"] for e in events}) == 1
    del events[:]
    assert fb.lines[0].startswith("Device: ") and "mixed precision" in fb.lines[0]
    assert not os.path.exists(model)
    assert any("run again with the same model file" in line for line in fb.lines)

    fb = _feedback()
    res = run_alg("trainphaseone", params, feedback=fb)
    training_events.unsubscribe(events.append)
    assert "Resuming from the checkpoint after epoch 1." in fb.lines
    # The resumed run sends the epoch done before too, so its curves start at epoch 1.
    assert [e["row"]["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
    assert events[-1]["status"] == "finished" and events[-1]["curves"] == res["CURVES"]
    assert [line[:9] for line in fb.lines if line.startswith("Epoch ")] == ["Epoch 2/3", "Epoch 3/3"]
    assert res["EPOCHS_RUN"] == 3 and res["STOPPED"] == "epochs"
    assert res["OUTPUT"] == model and os.path.isfile(model)
    assert os.path.isfile(res["CURVES"]) and os.path.isfile(res["CONFUSION_MATRIX"])
    assert 0 <= res["VALIDATION_ACCURACY"] <= 1
    assert max(fb.progress) == pytest.approx(100.0)
    assert len(fb.progress) > 10  # per batch


def test_trainphaseone_refuses_a_segmentation_dataset(run_alg, glacier, tmp_path):
    from qgis.core import QgsProcessingException

    seg = str(tmp_path / "seg")
    run_alg("maketiles", {"INPUT": glacier["image"], "LABELS": glacier["label_raster"], "MODE": 1,
                          "TILE_SIZE": 64, "OUTPUT": seg})
    with pytest.raises(QgsProcessingException, match="segmentation dataset"):
        run_alg("trainphaseone", dict(QUICK, DATASET=seg, OUTPUT=str(tmp_path / "m.keras")))
    assert not os.path.exists(tmp_path / "m.keras")


@pytest.mark.slow
def test_trainphaseone_through_qgis_process(qgis_process, glacier_tiles, tmp_path):
    model = tmp_path / "m.keras"
    args = [f"{k}={v}" for k, v in dict(QUICK, EPOCHS=2).items()]
    proc = qgis_process("--json", "run", "fjord:trainphaseone", "--", f"DATASET={glacier_tiles}",
                        *args, f"OUTPUT={model}", f"REPORT={tmp_path / 'report'}")
    results = json.loads(proc.stdout)["results"]
    assert results["EPOCHS_RUN"] == 2 and os.path.isfile(model)
    assert os.path.isfile(tmp_path / "report" / "history.csv")
    help_text = qgis_process("help", "fjord:trainphaseone").stdout
    for name in ("DATASET", "ARCHITECTURE", "EPOCHS", "BATCH_SIZE", "LEARNING_RATE", "TARGET_ACCURACY",
                 "PATIENCE", "INITIAL_MODEL", "CLASS_WEIGHTS", "MIXED_PRECISION", "DEVICE", "SEED",
                 "OUTPUT", "REPORT"):
        assert name in help_text
