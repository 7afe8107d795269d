"""Training the phase-one CNN of CNN-supervised classification on a Fjord tile dataset.

:func:`train_phase_one` is the worker job of ``fjord:trainphaseone``. It reads a tile dataset
made by ``maketiles`` through :class:`~fjord.core.learn.sequence.TileDataset` (batches from the
memory-mapped shards, bounded memory), builds or fine-tunes a network of
:mod:`fjord.models.phase_one`, and trains it with Keras: Adam with AMSGrad, categorical
cross-entropy, optional balanced class weights, optional on-the-fly rotations and flips.

Stopping: when the validation's balanced accuracy (the mean recall over the classes, so that a
rare class counts as much as a common one) reaches ``target_accuracy`` — or its plain accuracy,
the published rule, with ``target_metric='accuracy'`` —, when
the validation loss has not improved for ``patience`` epochs (the best weights are then kept),
or after ``epochs``. A checkpoint (model, optimiser state, history) is written after every
epoch into a hidden folder beside the output; running again with the same output and settings
resumes from it after a cancel or a crash. The finished model is written as a Fjord model file
(:mod:`fjord.models.modelfile`), always in float32 whatever precision training used, with a
report folder: ``history.csv``, ``curves.png``, ``confusion_matrix.csv``/``.png`` and
``validation_scores.csv`` for the validation tiles.
"""

import csv
import json
import os
import shutil
import time

import numpy as np

from ...models import ARCHITECTURES, MIN_TILE
from ..errors import Cancelled, FjordError, never_stop, no_progress, send_record
from ..outputs import AtomicOutputs, check_writable
from ..prepare.tiles import AUGMENTS, read_dataset

CLASS_WEIGHTS = ("none", "balanced")
PRECISIONS = ("auto", "on", "off")
#: What TARGET_ACCURACY is compared with (the Toolbox enum's order).
TARGET_METRICS = ("balanced_accuracy", "accuracy")


def checkpoint_dir(output):
    """The hidden folder beside ``output`` that holds the per-epoch checkpoint."""
    folder, base = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{os.path.splitext(base)[0]}.checkpoint")


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def _check_dataset(meta, architecture, folder):
    if meta["mode"] != "tiles":
        raise FjordError(f"{folder!r} is a segmentation dataset (image/mask windows); the phase-one "
                         "CNN learns from a tile classification dataset. Make one with maketiles "
                         "in tile classification mode, or train a U-Net on this one.")
    present = [int(v) for v, n in meta["counts"]["train"].items() if n > 0]
    if len(present) < 2:
        raise FjordError(f"The dataset's training split holds tiles of {len(present)} class(es) "
                         f"({present}); a classifier needs at least two. Label more classes or "
                         "relax the tile rules (PURITY, MAX_UNLABELLED) in maketiles.")
    if not meta["windows"]["validation"]:
        raise FjordError("The dataset has no validation tiles, so training cannot be judged or "
                         "stopped; rebuild it with a VALIDATION_FRACTION above 0.")
    if meta["tile_size"] < MIN_TILE[architecture]:
        raise FjordError(f"The {architecture} network needs tiles of at least "
                         f"{MIN_TILE[architecture]} px (it halves them five times); this dataset's "
                         f"tiles are {meta['tile_size']} px. Rebuild it with a larger TILE_SIZE"
                         + (" or use the compact architecture." if architecture == "vgg16" else "."))


def check_initial(initial, meta, outputs, task="tiles"):
    """The metadata of INITIAL_MODEL, checked to be a ``task`` model with the dataset's bands
    and classes (and, for tiles, its tile size); FjordError otherwise."""
    from ...models.modelfile import read_metadata

    init = read_metadata(initial)
    if init["task"] != task:
        wanted = "a phase-one tile classifier" if task == "tiles" else "a U-Net"
        raise FjordError(f"INITIAL_MODEL {os.path.basename(initial)} is a {init['task']} model, "
                         f"not {wanted}.")
    problems = []
    if init["bands"] != meta["bands"]:
        problems.append(f"it takes {init['bands']} bands, the dataset has {meta['bands']}")
    if list(init["outputs"]) != outputs:
        problems.append(f"its classes are {init['outputs']}, the dataset's are {outputs}")
    if task == "tiles" and init["tile_size"] != meta["tile_size"]:
        problems.append(f"its tiles are {init['tile_size']} px, the dataset's {meta['tile_size']} px")
    if problems:
        same = "bands, classes and tile size" if task == "tiles" else "bands and classes"
        raise FjordError(f"INITIAL_MODEL {os.path.basename(initial)} does not fit this dataset: "
                         + "; ".join(problems) + f". Fine-tune only on a dataset with the same {same}.")
    return init


def balanced_weights(meta, values):
    """Balanced class weights (total / (classes x count)) from the training split's counts, in
    the order of ``values``; 0 for a class absent from it."""
    counts = np.array([meta["counts"]["train"].get(str(v), 0) for v in values], float)
    present = counts > 0
    weights = np.zeros(len(values))
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return [float(w) for w in weights]


def run_signature(dataset, meta, architecture, batch_size, learning_rate, class_weights, augment,
               initial_model, seed, policy):
    return {"dataset": os.path.abspath(dataset), "windows": meta["windows"],
            "counts": meta["counts"], "architecture": architecture, "batch_size": batch_size,
            "learning_rate": learning_rate, "class_weights": class_weights, "augment": augment,
            "initial_model": os.path.abspath(initial_model) if initial_model else None,
            "seed": seed, "precision": policy}


def train_phase_one(dataset, output, *, architecture="vgg16", epochs=120, batch_size=50,
                    learning_rate=1e-4, target_accuracy=0.985, target_metric="balanced_accuracy",
                    patience=20, initial_model=None,
                    class_weights="none", augment="none", mixed_precision="auto", device="auto",
                    seed=0, report=None, progress=None, should_stop=None):
    """Train a phase-one tile classifier on a Fjord tile dataset and write a Fjord model file.

    Parameters
    ----------
    dataset : str
        Tile classification dataset folder (``maketiles``).
    output : str
        Model file to write (``.keras``).
    architecture : {'vgg16', 'compact'}
        Ignored when ``initial_model`` is given (its architecture is kept).
    epochs, batch_size, learning_rate : int, int, float
    target_accuracy : float
        Stop when the validation score ``target_metric`` reaches it (0 or above 1: never).
    target_metric : {'balanced_accuracy', 'accuracy'}
        Balanced accuracy: the mean of the per-class recalls, so training goes on while a rare
        class is still missed; accuracy: the share of all tiles (the published rule), which easy
        tiles of the common classes can fill on their own.
    patience : int
        Stop when the validation loss has not improved for this many epochs and keep the best
        weights (0: never).
    initial_model : str, optional
        A Fjord phase-one model file to fine-tune (same bands, classes and tile size).
    class_weights : {'none', 'balanced'}
    augment : {'none', 'rotations', 'rotations+flips'}
        A random transform of every training tile, drawn anew every epoch.
    mixed_precision : {'auto', 'on', 'off'}
    device : str
        'auto', 'cpu' or a GPU index.
    seed : int
    report : str, optional
        Folder for the training report (history, curves, validation confusion matrix).

    Returns
    -------
    dict : the model path, epochs run, why training stopped, last and best validation scores,
    per-class validation scores and the report files.
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    for name, value, allowed in (("architecture", architecture, ARCHITECTURES),
                                 ("class_weights", class_weights, CLASS_WEIGHTS),
                                 ("target_metric", target_metric, TARGET_METRICS),
                                 ("mixed_precision", mixed_precision, PRECISIONS),
                                 ("augment", augment, AUGMENTS)):
        if value not in allowed:
            raise FjordError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")
    if int(epochs) < 1 or int(batch_size) < 1 or not float(learning_rate) > 0:
        raise FjordError("EPOCHS and BATCH_SIZE must be at least 1 and LEARNING_RATE above 0.")
    meta = read_dataset(dataset)
    values = [int(c["value"]) for c in meta["schema"]["classes"]]
    init_meta = check_initial(initial_model, meta, values) if initial_model else None
    if init_meta:
        architecture = init_meta["architecture"]
    _check_dataset(meta, architecture, dataset)
    check_writable(output, "model file", inputs=[(initial_model, "INITIAL_MODEL"),
                                                 (dataset, "dataset")])
    if report:
        try:
            os.makedirs(report, exist_ok=True)
        except OSError as exc:
            raise FjordError(f"Cannot create the report folder {report!r}: {exc.strerror}.") from None

    session = Session(output, device, mixed_precision, seed, progress, should_stop)
    keras = session.keras

    from ...models.modelfile import library_versions, save_model
    from ...models.phase_one import build_phase_one, multiply_adds
    from .sequence import TileDataset

    policy = session.policy
    signature = run_signature(dataset, meta, architecture, int(batch_size), float(learning_rate),
                           class_weights, augment, initial_model, int(seed), policy)
    shard, local_batch = session.shard, session.local_batch(batch_size)
    train = TileDataset(dataset, "train", batch_size=local_batch, shuffle=True, augment=augment,
                        seed=int(seed), shard=shard)
    val = TileDataset(dataset, "validation", batch_size=local_batch, shuffle=False, shard=shard)
    # The shards are opened (and checked) before the checkpoint folder is made: a damaged
    # dataset leaves nothing behind.
    resume = session.open_checkpoint(signature)
    n_classes = len(values)
    tile, bands = meta["tile_size"], meta["bands"]
    if resume:
        model = session.checkpoint_model()
    else:
        model = build_phase_one(architecture, bands, tile, n_classes)
        if initial_model:
            from ...models.modelfile import load_model

            source, _ = load_model(initial_model, task="tiles")
            model.set_weights(source.get_weights())
            progress(None, f"Fine-tuning {os.path.basename(initial_model)} at learning rate "
                           f"{learning_rate:g}.")
        from ...models.losses import BalancedAccuracy

        model.compile(optimizer=keras.optimizers.Adam(float(learning_rate), amsgrad=True),
                      loss="categorical_crossentropy",
                      metrics=["accuracy", BalancedAccuracy(n_classes)])
    progress(None, f"{architecture}: {model.count_params():,} parameters, "
                   f"{multiply_adds(model) / 1e6:,.0f} M multiply-adds per tile; "
                   f"{meta['windows']['train']:,} "
                   f"training and {meta['windows']['validation']:,} validation tiles of {tile} px, "
                   f"{bands} bands, {n_classes} classes.")

    weights = (dict(enumerate(balanced_weights(meta, values))) if class_weights == "balanced"
               else None)
    stopped = session.fit(model, train, val, int(epochs), meta["windows"]["train"],
                          float(target_accuracy), int(patience), class_weight=weights,
                          target_metric=target_metric)
    state, chief, ckpt = session.state, session.chief, session.ckpt

    progress(0.97, "Scoring the validation tiles")
    weights_now = model.get_weights()
    session.end()
    final = build_phase_one(architecture, bands, tile, n_classes)
    final.set_weights(weights_now)
    if shard is not None:  # score every validation tile, not this process's share
        val = TileDataset(dataset, "validation", batch_size=local_batch, shuffle=False)
    truth, predicted = _predict(final, val, should_stop)
    scores = _scores(truth, predicted, n_classes)
    model_meta = {
        "task": "tiles", "architecture": architecture, "bands": bands,
        "band_names": meta["band_names"], "tile_size": tile, "scaling": meta["scaling"],
        "statistics": meta["statistics"], "schema": meta["schema"], "outputs": values,
        "training": {
            "dataset": os.path.abspath(dataset), "counts": meta["counts"],
            "epochs": int(epochs), "epochs_run": state["epoch"], "stopped": stopped,
            "batch_size": int(batch_size), "learning_rate": float(learning_rate),
            "target_accuracy": float(target_accuracy), "target_metric": target_metric,
            "patience": int(patience),
            "class_weights": class_weights, "augment": augment, "precision": policy,
            "initial_model": os.path.abspath(initial_model) if initial_model else None,
            "seed": int(seed), "history": state["history"]},
        "validation": {"accuracy": scores["accuracy"], "classes": [
            dict(value=v, **s) for v, s in zip(values, scores["classes"])]},
        "versions": library_versions(),
    }
    files = {}
    if chief:
        with AtomicOutputs() as out:
            if report:
                files = write_report(out, report, state["history"], scores, meta["schema"], values)
        save_model(final, output, model_meta)
    shutil.rmtree(ckpt, ignore_errors=True)
    progress(1.0, f"Validation accuracy {scores['accuracy']:.4f} after {state['epoch']} epochs "
                  f"(stopped: {stopped}).")
    return {"model": os.path.abspath(output), "epochs_run": state["epoch"], "stopped": stopped,
            "architecture": architecture, "parameters": int(final.count_params()),
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "weighted_f1": scores["weighted_f1"], "classes": model_meta["validation"]["classes"],
            "history": state["history"], "report": files, "precision": policy}


class Session:
    """What every training job shares: the device and precision set-up (logged), the per-epoch
    checkpoint beside the output and resuming from it, and the fit with its stopping rules."""

    def __init__(self, output, device, mixed_precision, seed, progress, should_stop):
        from ...models import distribute

        self.distribute = distribute
        self.output, self.progress, self.should_stop = output, progress, should_stop
        self.keras = keras = distribute.start(device, progress, log=False)
        try:
            self.spread = distribute.plan()
        except distribute.DistributionUnsupported as exc:
            raise FjordError(str(exc)) from None
        gpu_list = distribute.gpus()
        self.policy, why = distribute.precision_policy(mixed_precision, gpu_list)
        names = ", ".join(g["name"] for g in gpu_list) or "CPU"
        progress(None, f"Device: {names} ({keras.backend.backend()} backend, "
                       f"{self.spread.description}); {why}.")
        keras.utils.set_random_seed(int(seed))
        self.chief = distribute.is_chief()
        # Every process of a multi-process run keeps its own checkpoint (all must resume
        # together); only process 0 writes the model and the report.
        self.ckpt = checkpoint_dir(output) + ("" if self.chief else
                                              f"-process{distribute.process_index()}")
        self.state = {"epoch": 0, "history": [], "best_loss": None, "best_epoch": None, "wait": 0,
                      "stopped": None, "model": None, "best_weights": None}
        self.signature = None

    @property
    def shard(self):
        """``(index, count)`` of this process in a multi-process run, else None."""
        return (self.spread.index, self.spread.processes) if self.spread.processes > 1 else None

    def local_batch(self, batch_size):
        """The batch this process reads: the batch size is per device."""
        return int(batch_size) * self.spread.local

    def open_checkpoint(self, signature):
        """Take up the checkpoint of a run with the same ``signature`` (True), else start afresh;
        then set the precision policy for building the network."""
        self.signature = signature
        ckpt, state = self.ckpt, self.state
        state_path = os.path.join(ckpt, "state.json")
        resume = False
        saved = None
        if os.path.isfile(state_path):
            with open(state_path, encoding="utf-8") as f:
                saved = json.load(f)
        if saved and os.path.isfile(os.path.join(ckpt, saved["state"].get("model") or "-")):
            if saved.get("signature") == json.loads(json.dumps(signature)):
                state.update(saved["state"])
                resume = True
                self.progress(None, f"Resuming from the checkpoint after epoch {state['epoch']}.")
            else:
                self.progress(None, "A checkpoint of a run with other settings was found; "
                                    "starting afresh.")
        if not resume:
            shutil.rmtree(ckpt, ignore_errors=True)
        os.makedirs(ckpt, exist_ok=True)
        self.keras.mixed_precision.set_dtype_policy(self.policy)
        return resume

    def checkpoint_model(self):
        """The compiled model (optimiser state included) of the checkpoint."""
        from ...models.losses import BalancedAccuracy, LabelledAccuracy, SegmentationLoss

        fjords = {c.__name__: c for c in (BalancedAccuracy, LabelledAccuracy, SegmentationLoss)}
        return self.keras.saving.load_model(os.path.join(self.ckpt, self.state["model"]),
                                            custom_objects=fjords, safe_mode=True)

    def fit(self, model, train, val, epochs, n_items, target, patience, class_weight=None,
            target_metric="accuracy"):
        """Train until a stopping rule or ``epochs``; returns why it stopped ('target': the
        validation ``target_metric`` reached ``target``; 'patience' — the best weights are then
        restored — or 'epochs')."""
        state = self.state
        monitor = _monitor_class(self.keras)(epochs, len(train), n_items, target, patience, state,
                                             self.ckpt, self.signature, self.chief, self.progress,
                                             self.should_stop, target_metric)
        for row in state["history"]:  # a resumed run's watcher gets the epochs done before
            send_record(self.progress, "epoch", dict(row, epochs=epochs))
        if state["stopped"] is None and state["epoch"] < epochs:
            model.fit(train, validation_data=val, epochs=epochs, initial_epoch=state["epoch"],
                      class_weight=class_weight, callbacks=[monitor], verbose=0)
        stopped = state["stopped"] or "epochs"
        if stopped == "patience" and state.get("best_weights"):
            model.load_weights(os.path.join(self.ckpt, state["best_weights"]))
            self.progress(None, f"Keeping the weights of epoch {state['best_epoch']} "
                                "(lowest validation loss).")
        return stopped

    def end(self):
        """Leave the distribution strategy and go back to float32 (to build the final model)."""
        self.distribute.end_plan()
        self.keras.mixed_precision.set_dtype_policy("float32")


def _predict(model, val, should_stop):
    truth, predicted = [], []
    for i in range(len(val)):
        if should_stop():
            raise Cancelled("Training was cancelled.")
        x, y = val[i]
        truth.append(np.argmax(y, axis=1))
        predicted.append(np.argmax(np.asarray(model(x, training=False)), axis=1))
    return np.concatenate(truth), np.concatenate(predicted)


def _scores(truth, predicted, n_classes):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(n_classes))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    _, _, macro, _ = precision_recall_fscore_support(truth, predicted, labels=sorted(set(truth)),
                                                     average="macro", zero_division=0)
    _, _, weighted, _ = precision_recall_fscore_support(truth, predicted, average="weighted",
                                                        zero_division=0)
    return {"accuracy": float(accuracy_score(truth, predicted)), "macro_f1": float(macro),
            "weighted_f1": float(weighted),
            "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
            "classes": [{"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                        for a, b, c, d in zip(p, r, f, s)]}


def write_report(out, folder, history, scores, schema, values, *, what="tiles",
                  loss_name="categorical cross-entropy"):
    """history.csv, curves.png, confusion_matrix.csv/.png and validation_scores.csv (with an
    IoU column when the scores have one) in ``folder``; ``what`` names the validation units."""
    from ..evaluate.figures import confusion_figure, training_curves

    names = {int(c["value"]): c["name"] for c in schema["classes"]}
    files = {}
    path = out.add(os.path.join(folder, "history.csv"))
    keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
            "seconds", "tiles_per_second"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
    files["history"] = os.path.join(folder, "history.csv")
    if history:
        training_curves(history, out.add(os.path.join(folder, "curves.png")), loss_name)
        files["curves"] = os.path.join(folder, "curves.png")
    path = out.add(os.path.join(folder, "confusion_matrix.csv"))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["truth \\ predicted"] + [names[v] for v in values])
        for v, row in zip(values, scores["confusion"]):
            w.writerow([names[v]] + list(row))
    files["confusion_csv"] = os.path.join(folder, "confusion_matrix.csv")
    confusion_figure(np.array(scores["confusion"]), [names[v] for v in values],
                     out.add(os.path.join(folder, "confusion_matrix.png")),
                     title=f"Validation {what}: accuracy {scores['accuracy']:.3f}")
    files["confusion_png"] = os.path.join(folder, "confusion_matrix.png")
    iou = all("iou" in s for s in scores["classes"])
    path = out.add(os.path.join(folder, "validation_scores.csv"))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Class", "Precision", "Recall", "F1_score"] + (["IoU"] if iou else []) + ["Support"])
        for v, s in zip(values, scores["classes"]):
            w.writerow([names[v], f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}"]
                       + ([f"{s['iou']:.4f}"] if iou else []) + [s["support"]])
        pad = [""] if iou else []
        w.writerow(["accuracy", "", "", f"{scores['accuracy']:.4f}"] + pad
                   + [sum(c["support"] for c in scores["classes"])])
        w.writerow(["macro avg", "", "", f"{scores['macro_f1']:.4f}"]
                   + ([f"{scores['mean_iou']:.4f}"] if iou else []) + [""])
        w.writerow(["weighted avg", "", "", f"{scores['weighted_f1']:.4f}"] + pad + [""])
    files["scores"] = os.path.join(folder, "validation_scores.csv")
    return files


def _monitor_class(keras):
    """The training callback class (made once Keras is imported: importing this module must not
    import Keras, so that the device can still be chosen)."""

    class Monitor(_MonitorMixin, keras.callbacks.Callback):
        pass

    return Monitor


class _MonitorMixin:
    """Progress per batch, a log line and a checkpoint per epoch, the stopping rules, cancel."""

    def __init__(self, epochs, steps, n_tiles, target, patience, state, ckpt, signature, chief,
                 progress, should_stop, target_metric="accuracy"):
        super().__init__()  # keras.callbacks.Callback
        self.epochs, self.steps, self.n_tiles = epochs, max(steps, 1), n_tiles
        self.target, self.patience, self.target_metric = target, patience, target_metric
        self.state, self.ckpt, self.signature, self.chief = state, ckpt, signature, chief
        self.progress, self.should_stop = progress, should_stop

    def _check_cancel(self):
        if self.should_stop():
            raise Cancelled(f"Training was cancelled; the checkpoint after epoch "
                            f"{self.state['epoch']} is kept: run again with the same output to resume.")

    def on_epoch_begin(self, epoch, logs=None):
        self._check_cancel()
        self.t0 = time.perf_counter()
        self.t_train = None

    def on_train_batch_end(self, batch, logs=None):
        self.progress(0.96 * (self.epoch_now + (batch + 1) / self.steps) / self.epochs)
        self._check_cancel()

    def on_test_begin(self, logs=None):
        self.t_train = time.perf_counter() - self.t0

    def on_test_batch_end(self, batch, logs=None):
        self._check_cancel()

    @property
    def epoch_now(self):
        return self.state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self.t0
        rate = self.n_tiles / (self.t_train or seconds)
        row = {"epoch": epoch + 1, "seconds": round(seconds, 2), "tiles_per_second": round(rate, 1)}
        for key in ("loss", "accuracy", "balanced_accuracy", "val_loss", "val_accuracy",
                    "val_balanced_accuracy"):
            if key in logs:
                row[key] = float(logs[key])
        st = self.state
        st["history"].append(row)
        st["epoch"] = epoch + 1
        send_record(self.progress, "epoch", dict(row, epochs=self.epochs))
        self.progress(None, f"Epoch {epoch + 1}/{self.epochs}: loss {row.get('loss', float('nan')):.4f}, "
                            f"accuracy {row.get('accuracy', float('nan')):.4f}, validation loss "
                            f"{row.get('val_loss', float('nan')):.4f}, validation accuracy "
                            f"{row.get('val_accuracy', float('nan')):.4f}"
                            + (f", validation balanced accuracy {row['val_balanced_accuracy']:.4f}"
                               if "val_balanced_accuracy" in row else "")
                            + f", {seconds:.1f} s, {rate:,.0f} tiles/s")
        val_loss = row.get("val_loss")
        improved = val_loss is not None and (st["best_loss"] is None or val_loss < st["best_loss"])
        if improved:
            st["best_loss"], st["best_epoch"], st["wait"] = val_loss, epoch + 1, 0
        else:
            st["wait"] += 1
        score = row.get("val_" + self.target_metric, 0)
        if self.target and 0 < self.target <= 1 and score >= self.target:
            st["stopped"] = "target"
            self.progress(None, f"Validation {self.target_metric.replace('_', ' ')} "
                                f"{score:.4f} reached the target {self.target:g}.")
        elif self.patience and st["wait"] >= self.patience:
            st["stopped"] = "patience"
            self.progress(None, f"No better validation loss for {self.patience} epochs.")
        if st["stopped"]:
            self.model.stop_training = True
        self._save(improved)

    def _save(self, improved):
        # Each epoch's files get their own names and state.json names them last, so a process
        # killed at any moment leaves a consistent checkpoint. Every worker of a multi-host run
        # takes part in saving; only the chief's folder is kept.
        st, n = self.state, self.state["epoch"]
        name = f"epoch-{n}.keras"
        self.model.save(os.path.join(self.ckpt, "partial-" + name))
        os.replace(os.path.join(self.ckpt, "partial-" + name), os.path.join(self.ckpt, name))
        st["model"] = name
        if improved and self.patience:
            best = f"best-{n}.weights.h5"
            self.model.save_weights(os.path.join(self.ckpt, "partial-" + best))
            os.replace(os.path.join(self.ckpt, "partial-" + best), os.path.join(self.ckpt, best))
            st["best_weights"] = best
        _write_json(os.path.join(self.ckpt, "state.json"), {"signature": self.signature, "state": st})
        for old in os.listdir(self.ckpt):
            if old not in (st.get("model"), st.get("best_weights"), "state.json"):
                os.remove(os.path.join(self.ckpt, old))
