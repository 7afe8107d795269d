"""fjord:trainunet and fjord:classifyunet inside QGIS and through qgis_process."""

import json
import os

import pytest
from test_alg_train import _feedback

QUICK = {"PRESET": 0, "DEPTH": 3, "FILTERS": 8, "EPOCHS": 3, "BATCH_SIZE": 8, "LEARNING_RATE": 3e-3,
         "PATIENCE": 0}


@pytest.mark.slow
def test_trainunet_and_classifyunet_through_qgis_process(qgis_process, glacier, glacier_segmentation,
                                                         tmp_path):
    model = tmp_path / "unet.keras"
    args = [f"{k}={v}" for k, v in dict(QUICK, EPOCHS=2, LOSS=3, CLASS_WEIGHTS=1,
                                         ENSEMBLE=2).items()]
    proc = qgis_process("--json", "run", "fjord:trainunet", "--", f"DATASET={glacier_segmentation}",
                        *args, f"OUTPUT={model}", f"REPORT={tmp_path / 'report'}")
    results = json.loads(proc.stdout)["results"]
    assert results["EPOCHS_RUN"] == 2 and os.path.isfile(model)
    assert os.path.isfile(tmp_path / "unet_member2.keras")  # the ensemble's second member
    assert 0 <= results["VALIDATION_MEAN_IOU"] <= 1
    assert os.path.isfile(tmp_path / "report" / "validation_scores.csv")
    proc = qgis_process("--json", "run", "fjord:classifyunet", "--", f"INPUT={glacier['image']}",
                        f"MODEL={model}", "BLEND=1", "PROBABILITIES=1", f"OUTPUT={tmp_path / 'u.tif'}")
    results = json.loads(proc.stdout)["results"]
    assert results["OUTPUT"] == str(tmp_path / "u.tif") and results["PIXELS_PER_SECOND"] > 0
    assert os.path.isfile(tmp_path / "u.qml")
    assert "averaged over 2 models" in proc.stderr + proc.stdout
    for alg, names in (("trainunet", ("DATASET", "PRESET", "DEPTH", "FILTERS", "DROPOUT", "LOSS",
                                      "CLASS_WEIGHTS", "AUGMENT", "EPOCHS", "BATCH_SIZE",
                                      "LEARNING_RATE", "PATIENCE", "MIXED_PRECISION", "SEED",
                                      "INITIAL_MODEL", "ENSEMBLE", "OUTPUT", "REPORT")),
                       ("classifyunet", ("INPUT", "MODEL", "ENSEMBLE_MODELS", "WINDOW", "OVERLAP",
                                         "BLEND", "TTA", "PROBABILITIES", "OUTPUT"))):
        help_text = qgis_process("help", f"fjord:{alg}").stdout
        for name in names:
            assert name in help_text


@pytest.mark.slow
def test_trainunet_cancels_and_resumes(run_alg, glacier_segmentation, tmp_path):
    from qgis.core import QgsProcessingException

    model = str(tmp_path / "unet.keras")
    params = dict(QUICK, DATASET=glacier_segmentation, OUTPUT=model, REPORT=str(tmp_path / "r"))
    fb = _feedback(cancel_after="Epoch 1/3")
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_alg("trainunet", params, feedback=fb)
    assert not os.path.exists(model)
    assert any("U-Net (none: depth 3, 8 base filters" in line for line in fb.lines)
    from fjord.algorithms import training_events

    events = []
    training_events.subscribe(events.append)
    fb = _feedback()
    try:
        res = run_alg("trainunet", params, feedback=fb)
    finally:
        training_events.unsubscribe(events.append)
    assert "Resuming from the checkpoint after epoch 1." in fb.lines
    assert [line[:9] for line in fb.lines if line.startswith("Epoch ")] == ["Epoch 2/3", "Epoch 3/3"]
    assert res["EPOCHS_RUN"] == 3 and os.path.isfile(model) and os.path.isfile(res["CURVES"])
    # The training monitor gets every epoch's loss and (labelled-pixel) accuracy.
    rows = [e["row"] for e in events if e["event"] == "epoch"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all({"loss", "accuracy", "val_loss", "val_accuracy"} <= set(r) for r in rows)
    assert events[0]["title"].startswith("Train U-Net") and events[-1]["status"] == "finished"


def test_classifyunet_loads_styled_with_probability_bands(run_alg, glacier, glacier_unet, tmp_path):
    from qgis.core import QgsRasterLayer

    res = run_alg("classifyunet", {"INPUT": glacier["image"], "MODEL": glacier_unet["path"],
                                   "ENSEMBLE_MODELS": [glacier_unet["path"]],
                                   "OUTPUT": str(tmp_path / "u.tif")})
    layer = QgsRasterLayer(res["OUTPUT"], "u")
    assert layer.isValid() and layer.bandCount() == 8
    assert layer.renderer().type() == "paletted" and layer.renderer().band() == 1
    assert [c.label for c in layer.renderer().classes()][:2] == ["open water", "iceberg water"]
    assert layer.bandName(2).endswith("probability open water")


def test_classifyunet_refuses_a_phase_one_model(run_alg, glacier, glacier_model, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="needs a U-Net"):
        run_alg("classifyunet", {"INPUT": glacier["image"], "MODEL": glacier_model,
                                 "OUTPUT": str(tmp_path / "u.tif")})
    assert not os.path.exists(tmp_path / "u.tif")
