"""Phase-one training: the networks, learning, resume, the model file, bad input."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fjord.core.errors import Cancelled, FjordError
from fjord.core.learn.phase_one import train_phase_one
from fjord.core.learn.session import checkpoint_dir
from fjord.core.prepare.tiles import build_dataset
from fjord.models.modelfile import load_model, read_metadata, save_model
from fjord.models.phase_one import build_phase_one, multiply_adds

QUICK = dict(architecture="compact", epochs=6, batch_size=32, learning_rate=1e-3, patience=0,
             target_accuracy=0)


def log():
    lines = []

    def progress(fraction, message=None):
        if message:
            lines.append(message)
    return lines, progress


def test_input_checks_load_no_engine(glacier_tiles):
    """The device is chosen before Keras loads its engine: importing the training module and
    checking a dataset must not load one (else DEVICE would silently not apply)."""
    code = ("import sys; from fjord.core.learn.phase_one import PhaseOneTraining; "
            "PhaseOneTraining(sys.argv[1], sys.argv[1] + '.keras', architecture='vgg16', "
            "target_accuracy=0.9, target_metric='accuracy', class_weights='none', augment='none', "
            "epochs=1, batch_size=8, learning_rate=1e-3, patience=0, mixed_precision='auto', "
            "device='cpu', seed=0, initial_model=None, report=None, progress=None, should_stop=None); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code, glacier_tiles], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_vgg16_parameter_count_oracle():
    assert build_phase_one("vgg16", 4, 50, 8).count_params() == 15_111_304


@pytest.mark.parametrize("tile", [50, 100])
def test_compact_needs_ten_times_fewer_multiply_adds(tile):
    vgg = multiply_adds(build_phase_one("vgg16", 4, tile, 8))
    compact = multiply_adds(build_phase_one("compact", 4, tile, 8))
    assert vgg / compact >= 10


def test_vgg16_refuses_tiles_below_32_px():
    with pytest.raises(ValueError, match="at least 32 px"):
        build_phase_one("vgg16", 4, 31, 8)
    assert build_phase_one("vgg16", 3, 32, 2).output_shape == (None, 2)


def test_training_learns_and_writes_model_and_report(glacier_tiles, tmp_path):
    model_path, report = str(tmp_path / "phase1.keras"), str(tmp_path / "report")
    lines, progress = log()
    result = train_phase_one(glacier_tiles, model_path, report=report, progress=progress, seed=1,
                             **dict(QUICK, epochs=8))
    assert lines[0].startswith("Device: CPU") and "mixed precision off" in lines[0]
    assert sum(line.startswith("Epoch ") for line in lines) == 8
    assert "tiles/s" in next(line for line in lines if line.startswith("Epoch 8/8"))
    meta = json.load(open(os.path.join(glacier_tiles, "dataset.json")))
    counts = meta["counts"]["validation"]
    chance = max(counts.values()) / sum(counts.values())
    assert result["accuracy"] >= max(0.8, chance + 0.2), result["history"]
    assert result["epochs_run"] == 8 and result["stopped"] == "epochs"
    for name in ("history.csv", "curves.png", "confusion_matrix.csv", "confusion_matrix.png",
                 "validation_scores.csv"):
        assert os.path.getsize(os.path.join(report, name)) > 0
    with open(os.path.join(report, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 9
    assert not os.path.exists(checkpoint_dir(model_path))
    assert not [n for n in os.listdir(tmp_path) if "partial" in n]


def test_model_file_round_trips_its_metadata(glacier_tiles, tmp_path):
    path = str(tmp_path / "m.keras")
    train_phase_one(glacier_tiles, path, **dict(QUICK, epochs=1))
    meta = read_metadata(path)
    data = json.load(open(os.path.join(glacier_tiles, "dataset.json")))
    assert meta["task"] == "tiles" and meta["architecture"] == "compact"
    assert meta["bands"] == 4 and meta["band_names"] == data["band_names"]
    assert meta["tile_size"] == 32 and meta["scaling"] == data["scaling"]
    assert meta["statistics"]["mean"] == data["statistics"]["mean"]
    assert meta["schema"] == data["schema"]
    assert meta["outputs"] == [c["value"] for c in data["schema"]["classes"]]
    assert meta["training"]["epochs_run"] == 1 and meta["training"]["learning_rate"] == 1e-3
    assert meta["versions"]["keras"] == keras.__version__ and meta["versions"]["backend"]
    model, meta2 = load_model(path, task="tiles")
    assert meta2 == meta and model.input_shape == (None, 32, 32, 4)
    x = np.random.default_rng(0).random((3, 32, 32, 4), np.float32)
    assert np.allclose(np.asarray(model(x)).sum(axis=1), 1, atol=1e-5)
    with pytest.raises(FjordError, match="U-Net"):
        load_model(path, task="segmentation")


def test_mixed_precision_trains_and_saves_float32(glacier_tiles, tmp_path):
    path = str(tmp_path / "m.keras")
    lines, progress = log()
    result = train_phase_one(glacier_tiles, path, mixed_precision="on", progress=progress,
                             **dict(QUICK, epochs=1))
    assert result["precision"] == "mixed_bfloat16" and "bfloat16" in lines[0]
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    dtypes = {json.dumps(layer["config"].get("dtype")) for layer in config["config"]["layers"]}
    assert all("mixed" not in d for d in dtypes)


def test_resume_after_cancel_continues_from_the_saved_epoch(glacier_tiles, tmp_path):
    path = str(tmp_path / "m.keras")
    lines, progress = log()
    with pytest.raises(Cancelled, match="resume"):
        train_phase_one(glacier_tiles, path, progress=progress,
                        should_stop=lambda: any(line.startswith("Epoch 2/") for line in lines),
                        **dict(QUICK, epochs=4))
    assert not os.path.exists(path)
    state = json.load(open(os.path.join(checkpoint_dir(path), "state.json")))["state"]
    assert state["epoch"] == 2
    first = state["history"]
    lines2, progress2 = log()
    result = train_phase_one(glacier_tiles, path, progress=progress2, **dict(QUICK, epochs=4))
    assert "Resuming from the checkpoint after epoch 2." in lines2
    assert [line.split(":")[0] for line in lines2 if line.startswith("Epoch")] == ["Epoch 3/4", "Epoch 4/4"]
    assert [row["epoch"] for row in result["history"]] == [1, 2, 3, 4]
    assert result["history"][:2] == first
    assert read_metadata(path)["training"]["epochs_run"] == 4
    assert not os.path.exists(checkpoint_dir(path))


def test_other_settings_do_not_resume(glacier_tiles, tmp_path):
    path = str(tmp_path / "m.keras")
    lines, progress = log()
    with pytest.raises(Cancelled):
        train_phase_one(glacier_tiles, path, progress=progress, should_stop=lambda: bool(
            [line for line in lines if line.startswith("Epoch 1/")]), **dict(QUICK, epochs=2))
    assert os.path.isfile(os.path.join(checkpoint_dir(path), "state.json"))
    lines, progress = log()
    train_phase_one(glacier_tiles, path, progress=progress, **dict(QUICK, epochs=1, learning_rate=5e-4))
    assert any("other settings" in line for line in lines)


@pytest.mark.slow
def test_fine_tuning_starts_from_the_initial_model(glacier_tiles, tmp_path):
    first = str(tmp_path / "first.keras")
    r1 = train_phase_one(glacier_tiles, first, **dict(QUICK, epochs=6))
    lines, progress = log()
    r2 = train_phase_one(glacier_tiles, str(tmp_path / "tuned.keras"), initial_model=first,
                         progress=progress, **dict(QUICK, epochs=1, learning_rate=1e-5, architecture="vgg16"))
    assert r2["architecture"] == "compact"
    assert any(line.startswith("Fine-tuning first.keras") for line in lines)
    # One epoch at 1e-5 from a trained model stays near it; from scratch it would be near chance.
    assert r2["history"][0]["val_accuracy"] >= r1["accuracy"] - 0.1


def test_lambda_layer_file_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inputs)))
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "lambda.keras")
    save_model(model, path, {"task": "tiles", "architecture": "custom", "bands": 3,
                             "band_names": ["r", "g", "b"], "tile_size": 8,
                             "scaling": {"rule": "none", "divisor": 1.0}, "schema": {"classes": []},
                             "outputs": [1, 2]})
    with pytest.raises(FjordError, match="Lambda layer"):
        load_model(path)


def _tiny_model_file(path, bands=3, network_bands=3):
    inputs = keras.Input((8, 8, network_bands))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    save_model(keras.Model(inputs, outputs), path, {
        "task": "tiles", "architecture": "custom", "bands": bands,
        "band_names": ["b"] * bands, "tile_size": 8, "scaling": {"rule": "none", "divisor": 1.0},
        "schema": {"classes": []}, "outputs": [1, 2]})
    return path


def _rewrite_config(path, change):
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["config.json"] = json.dumps(change(json.loads(entries["config.json"]))).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_a_config_that_names_python_code_is_refused_in_one_sentence(tmp_path):
    path = _tiny_model_file(str(tmp_path / "exec.keras"))

    def to_exec(config):
        layer = config["config"]["layers"][-1]
        layer.update(module="builtins", class_name="exec", registered_name="exec")
        return config

    _rewrite_config(path, to_exec)
    with pytest.raises(FjordError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "custom Python code" in message and "\n" not in message and len(message) < 400


def test_metadata_that_disagrees_with_the_network_names_the_model_file(tmp_path):
    path = _tiny_model_file(str(tmp_path / "m.keras"), bands=3, network_bands=4)
    with pytest.raises(FjordError, match=r"m\.keras.* is inconsistent: its network takes 4 bands.*says 3"):
        read_metadata(path)


def test_plain_keras_file_is_refused(tmp_path):
    model = build_phase_one("compact", 3, 16, 2)
    path = str(tmp_path / "plain.keras")
    model.save(path)
    with pytest.raises(FjordError, match="without Fjord's description"):
        read_metadata(path)
    with pytest.raises(FjordError, match="not a Fjord model"):
        read_metadata(__file__)


def _segmentation_dataset(glacier, folder):
    build_dataset(glacier["image"], glacier["label_raster"], folder, mode="segmentation",
                  tile_size=64, stride=64, min_labelled=0.05)
    return folder


def _one_class_dataset(source, tmp_path):
    """maketiles refuses to write a one-class dataset; a dataset folder edited by hand (or
    written by another tool) can still claim one."""
    import shutil

    folder = str(tmp_path / "one")
    shutil.copytree(source, folder)
    meta = json.load(open(os.path.join(folder, "dataset.json")))
    first = next(iter(meta["counts"]["train"]))
    meta["counts"]["train"] = {k: (v if k == first else 0) for k, v in meta["counts"]["train"].items()}
    json.dump(meta, open(os.path.join(folder, "dataset.json"), "w"))
    return folder


@pytest.mark.parametrize("case, words", [
    ("segmentation", "segmentation dataset"),
    ("one class", "at least two"),
    ("tile too small", "at least 32 px"),
    ("initial other bands", "does not fit this dataset"),
    ("unwritable", "not writable"),
    ("not a dataset", "no Fjord dataset"),
])
def test_bad_input(glacier, glacier_tiles, tmp_path, case, words, request):
    dataset, output, extra = glacier_tiles, str(tmp_path / "m.keras"), {}
    if case == "segmentation":
        dataset = _segmentation_dataset(glacier, str(tmp_path / "seg"))
    elif case == "one class":
        dataset = _one_class_dataset(glacier_tiles, tmp_path)
    elif case == "tile too small":
        dataset = str(tmp_path / "small")
        build_dataset(glacier["image"], glacier["label_raster"], dataset, tile_size=16, stride=16,
                      max_per_class=50)
        extra = {"architecture": "vgg16"}
    elif case == "initial other bands":
        initial = str(tmp_path / "rgb.keras")
        save_model(build_phase_one("compact", 3, 32, 7), initial, {
            "task": "tiles", "architecture": "compact", "bands": 3, "band_names": ["a", "b", "c"],
            "tile_size": 32, "scaling": {"rule": "none", "divisor": 1.0}, "schema": {"classes": []},
            "outputs": [1, 2, 3, 4, 5, 6, 7]})
        extra = {"initial_model": initial}
    elif case == "unwritable":
        output = str(request.getfixturevalue("read_only_folder") / "m.keras")
    elif case == "not a dataset":
        dataset = str(tmp_path)
    with pytest.raises(FjordError, match=words):
        train_phase_one(dataset, output, **dict(QUICK, epochs=1, **extra))
    assert not os.path.exists(output)


@pytest.mark.slow
def test_trains_under_the_jax_backend(glacier_tiles, tmp_path):
    pytest.importorskip("jax")
    code = ("import sys; from fjord.core.learn.phase_one import train_phase_one; import keras; "
            "r = train_phase_one(sys.argv[1], sys.argv[2], architecture='compact', epochs=6, "
            "batch_size=32, learning_rate=1e-3, patience=0, target_accuracy=0, seed=1); "
            "print(keras.backend.backend(), r['accuracy'])")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code, glacier_tiles, str(tmp_path / "jax.keras")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    backend, accuracy = out.stdout.split()[-2:]
    assert backend == "jax" and float(accuracy) >= 0.7
    # The model file written under JAX loads under the default backend.
    model, meta = load_model(str(tmp_path / "jax.keras"))
    assert meta["versions"]["backend"] == "jax" and model.output_shape == (None, 7)


def test_multi_process_run_needs_the_jax_backend(glacier_tiles, tmp_path, monkeypatch):
    if keras.backend.backend() == "jax":
        pytest.skip("this is the refusal on the other backends")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "localhost:1")
    with pytest.raises(FjordError, match="KERAS_BACKEND=jax"):
        train_phase_one(glacier_tiles, str(tmp_path / "m.keras"), **dict(QUICK, epochs=1))
    assert not os.path.exists(tmp_path / "m.keras")


@pytest.mark.slow
def test_two_processes_train_one_model_on_localhost(glacier_tiles, tmp_path):
    """Data-parallel training over two worker processes on this machine's CPU, joined through
    Keras's distribution environment variables, as two hosts would be."""
    pytest.importorskip("jax")
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    model = tmp_path / "model.keras"
    env = dict(os.environ, KERAS_BACKEND="jax", KERAS_DISTRIBUTION_NUM_PROCESSES="2",
               KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port}",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, "-m", "fjord.core", "train", glacier_tiles, str(model),
           "--architecture", "compact", "--epochs", "6", "--batch-size", "16",
           "--learning-rate", "1e-3", "--target-accuracy", "0", "--patience", "0"]
    procs = [subprocess.Popen(cmd, env=dict(env, KERAS_DISTRIBUTION_PROCESS_ID=str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    logs = [[line for line in out.splitlines() if line.startswith(("Device", "Epoch"))]
            for out, _ in outs]
    assert "DataParallel over 2 devices in 2 process(es)" in logs[0][0]
    # One model: both processes see the same global losses every epoch.
    strip = [[line.rsplit(",", 2)[0] for line in log[1:]] for log in logs]
    assert len(strip[0]) == 6 and strip[0] == strip[1]
    history = read_metadata(str(model))["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["accuracy"] >= 0.9
    # Only process 0 writes; no checkpoint is left behind.
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_balanced_accuracy_metric_equals_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score

    from fjord.models.losses import BalancedAccuracy

    rng = np.random.default_rng(0)
    truth = rng.choice(4, 500, p=[0.7, 0.2, 0.1, 0.0])  # class 3 absent: left out of the mean
    predicted = np.where(rng.random(500) < 0.7, truth, rng.integers(0, 4, 500))
    metric = BalancedAccuracy(4)
    for part in np.array_split(np.arange(500), 3):  # accumulates over batches
        metric.update_state(np.eye(4)[truth[part]], np.eye(4)[predicted[part]] * 0.7 + 0.1)
    assert float(metric.result()) == pytest.approx(balanced_accuracy_score(truth, predicted), abs=1e-6)
    # Masks with unlabelled (all-zero) pixels: those count nowhere.
    mask = np.eye(2)[[[0, 1], [1, 1]]]
    mask[0, 0] = 0
    metric = BalancedAccuracy(2)
    metric.update_state(mask[None], np.eye(2)[[[1, 1], [0, 1]]][None])
    assert float(metric.result()) == pytest.approx(2 / 3)  # class 0 only at the unlabelled pixel


def test_the_target_applies_to_the_balanced_accuracy_by_default(glacier_tiles, tmp_path):
    """The epoch log and history carry the validation balanced accuracy, and the target is
    compared with it (the published rule: plain accuracy, on request)."""
    lines, progress = log()
    result = train_phase_one(glacier_tiles, str(tmp_path / "a.keras"), progress=progress,
                             report=str(tmp_path / "report"),
                             **dict(QUICK, epochs=3, target_accuracy=0.01))
    assert result["stopped"] == "target" and result["epochs_run"] == 1
    assert any(line.startswith("Validation balanced accuracy") for line in lines)
    row = result["history"][0]
    assert 0 <= row["val_balanced_accuracy"] <= 1
    with open(tmp_path / "report" / "history.csv") as f:
        assert "val_balanced_accuracy" in f.readline()
    lines, progress = log()
    result = train_phase_one(glacier_tiles, str(tmp_path / "b.keras"), progress=progress,
                             target_metric="accuracy", **dict(QUICK, epochs=3, target_accuracy=0.01))
    assert result["stopped"] == "target"
    assert any(line.startswith("Validation accuracy") and "reached the target" in line
               for line in lines)
    with pytest.raises(FjordError, match="target_metric must be one of"):
        train_phase_one(glacier_tiles, str(tmp_path / "c.keras"), target_metric="f1", **QUICK)


def test_a_span_of_progress_keeps_the_training_records():
    """A job in steps (an ensemble's members) still gives the monitor every epoch record."""
    from fjord.core.errors import send_record, span_progress

    seen, records = [], []

    def progress(fraction, message=None):
        seen.append(fraction)

    progress.record = lambda kind, record: records.append((kind, record))
    step = span_progress(progress, 0.5, 1.0)
    step(0.5, "half of the second member")
    send_record(step, "epoch", {"epoch": 1})
    assert seen == [0.75] and records == [("epoch", {"epoch": 1})]
    send_record(span_progress(lambda f, m=None: None, 0, 1), "epoch", {})  # no sink: ignored
