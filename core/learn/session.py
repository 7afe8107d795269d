"""The training skeleton that phase one and the U-Net share.

:class:`TrainingJob` is one training run, in named steps: the options and the dataset are
checked when it is made (no engine loaded yet); :meth:`TrainingJob.run` then opens a
:class:`Session` (device, precision, seed), reads the dataset's batches, resumes from the
checkpoint of an interrupted run with the same settings or builds (and, with an initial model,
fine-tunes) the network, fits it with the stopping rules, scores the validation split with the
final float32 network and writes the model file and the report. A subclass names the task and
gives the steps that differ: the dataset checks, the network, its compilation, the scores and
what the model file records (:class:`~fjord.core.learn.phase_one.PhaseOneTraining`,
:class:`~fjord.core.learn.unet.UnetTraining`).

Stopping: the validation ``target_metric`` reaching ``target``, the validation loss not
improving for ``patience`` epochs (the best weights are then kept), or ``epochs``. The
checkpoint (model, optimiser state, history) is written after every epoch into a hidden folder
beside the output (:func:`checkpoint_dir`); running again with the same output and settings
resumes from it after a cancel or a crash.
"""

import csv
import json
import os
import shutil
import time

import numpy as np

from ..errors import Cancelled, FjordError, never_stop, no_progress, send_record
from ..outputs import AtomicOutputs, check_writable
from ..prepare.normalise import normalisation_of
from ..prepare.tiles import read_dataset

CLASS_WEIGHTS = ("none", "balanced")
PRECISIONS = ("auto", "on", "off")


def checkpoint_dir(output):
    """The hidden folder beside ``output`` that holds the per-epoch checkpoint."""
    folder, base = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{os.path.splitext(base)[0]}.checkpoint")


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def check_initial(initial, meta, outputs, task="tiles"):
    """The metadata of INITIAL_MODEL, checked to be a ``task`` model with the dataset's bands
    and classes (and, for tiles, its tile size); FjordError otherwise."""
    from ...models.modelfile import read_metadata

    init = read_metadata(initial)
    if init["task"] != task:
        wanted = "a phase-one tile classifier" if task == "tiles" else "a U-Net"
        raise FjordError(f"INITIAL_MODEL {os.path.basename(initial)} is a {init['task']} model, "
                         f"not {wanted}.")
    if init.get("imported"):
        raise FjordError(f"INITIAL_MODEL {os.path.basename(initial)} is an imported network "
                         f"({init['imported']['source']}); Fjord fine-tunes the networks it "
                         "trained itself. Classify with it, or train a Fjord model.")
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


def check_choices(choices):
    """FjordError unless every ``(name, value, allowed)`` has its value among the allowed."""
    for name, value, allowed in choices:
        if value not in allowed:
            raise FjordError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")


class TrainingJob:
    """One training run of a ``task`` model; see the module's docstring for the steps.

    Subclasses set :attr:`task` and :attr:`units`, check their dataset and options in their
    own ``__init__`` (then call :meth:`check_outputs`), and give :meth:`build`, :meth:`compile`,
    :meth:`describe`, :meth:`reader` and :meth:`score`; the other hooks
    (settings, model file entries, report options, summary, result) have defaults.
    """

    task = None  # "tiles" or "segmentation": the model file's task
    units = None  # what the validation split holds: "tiles" or "windows"

    def __init__(self, dataset, output, *, epochs, batch_size, learning_rate, patience,
                 mixed_precision, device, seed, initial_model, report, progress, should_stop,
                 choices=()):
        self.progress = progress or no_progress
        self.should_stop = should_stop or never_stop
        check_choices(tuple(choices) + (("mixed_precision", mixed_precision, PRECISIONS),))
        if int(epochs) < 1 or int(batch_size) < 1 or not float(learning_rate) > 0:
            raise FjordError("EPOCHS and BATCH_SIZE must be at least 1 and LEARNING_RATE above 0.")
        self.dataset, self.output, self.report = dataset, output, report
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.learning_rate, self.patience = float(learning_rate), int(patience)
        self.mixed_precision, self.device, self.seed = mixed_precision, device, int(seed)
        self.initial_model = initial_model
        self.meta = read_dataset(dataset)
        self.values = [int(c["value"]) for c in self.meta["schema"]["classes"]]
        self.initial = (check_initial(initial_model, self.meta, self.values, task=self.task)
                        if initial_model else None)

    def check_outputs(self):
        """The model file is writable and not an input; the report folder exists."""
        check_writable(self.output, "model file", inputs=[(self.initial_model, "INITIAL_MODEL"),
                                                          (self.dataset, "dataset")])
        if self.report:
            try:
                os.makedirs(self.report, exist_ok=True)
            except OSError as exc:
                raise FjordError(f"Cannot create the report folder {self.report!r}: "
                                 f"{exc.strerror}.") from None

    # --- the steps a task gives ----------------------------------------------------------------
    def build(self):
        """A new network of the task (float32 or the session's precision policy)."""
        raise NotImplementedError

    def compile(self, model, keras, steps):
        """Compile a new network; ``steps``: training batches per epoch."""
        raise NotImplementedError

    def describe(self, model):
        """The log line that says what is trained on what."""
        raise NotImplementedError

    def reader(self, split, batch, shard):
        """The batch reader of ``split`` ('train': shuffled and augmented) for this process's
        ``shard`` of the dataset (None: all of it)."""
        raise NotImplementedError

    def score(self, model, val):
        """The validation scores of the final network."""
        raise NotImplementedError

    def signature_settings(self):
        """The task's own settings that a resumed run must share."""
        return {}

    def training_settings(self):
        """The task's own settings that the model file records."""
        return {}

    def fit_rules(self):
        """Keyword arguments of :meth:`Session.fit` beyond the patience."""
        return {"target": 0.0}

    def model_metadata(self, scores):
        """The task's own entries of the model file (beside the common ones)."""
        return {}

    def validation_record(self, scores):
        return {"accuracy": scores["accuracy"]}

    def report_options(self):
        return {}

    def summary(self, scores, stopped, epochs_run):
        return (f"Validation accuracy {scores['accuracy']:.4f} after {epochs_run} epochs "
                f"(stopped: {stopped}).")

    def result(self, scores):
        """The task's own entries of the result."""
        return {}

    # --- the skeleton --------------------------------------------------------------------------
    def run(self):
        """Train, score, write the model file (and the report); returns the result."""
        session = Session(self.output, self.device, self.mixed_precision, self.seed,
                          self.progress, self.should_stop)
        local_batch = session.local_batch(self.batch_size)
        train = self.reader("train", local_batch, session.shard)
        val = self.reader("validation", local_batch, session.shard)
        # The shards are opened (and checked) before the checkpoint folder is made: a damaged
        # dataset leaves nothing behind.
        if session.open_checkpoint(self.signature(session.policy)):
            model = session.checkpoint_model()
        else:
            model = self.new_model(session.keras, len(train))
        self.progress(None, self.describe(model))
        stopped = session.fit(model, train, val, self.epochs, self.meta["windows"]["train"],
                              patience=self.patience, **self.fit_rules())
        final = self.final_model(model, session)
        if session.shard is not None:  # score every validation item, not this process's share
            val = self.reader("validation", local_batch, None)
        scores = self.score(final, val)
        files = self.write(final, session, stopped, scores)
        epochs_run = session.state["epoch"]
        self.progress(1.0, self.summary(scores, stopped, epochs_run))
        return dict({"model": os.path.abspath(self.output), "epochs_run": epochs_run,
                     "stopped": stopped, "parameters": int(final.count_params()),
                     "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
                     "weighted_f1": scores["weighted_f1"], "classes": self.classes(scores),
                     "history": session.state["history"], "report": files,
                     "precision": session.policy}, **self.result(scores))

    def signature(self, policy):
        """What must match for a checkpoint to be resumed."""
        meta = self.meta
        return dict({"dataset": os.path.abspath(self.dataset), "windows": meta["windows"],
                     "counts": meta["counts"], "batch_size": self.batch_size,
                     "learning_rate": self.learning_rate,
                     "initial_model": _abspath(self.initial_model), "seed": self.seed,
                     "precision": policy}, **self.signature_settings())

    def new_model(self, keras, steps):
        """A new network, with the initial model's weights when fine-tuning, compiled."""
        model = self.build()
        if self.initial_model:
            from ...models.modelfile import load_model

            source, _ = load_model(self.initial_model, task=self.task)
            model.set_weights(source.get_weights())
            self.progress(None, f"Fine-tuning {os.path.basename(self.initial_model)} at learning "
                                f"rate {self.learning_rate:g}.")
        self.compile(model, keras, steps)
        return model

    def final_model(self, model, session):
        """The trained weights in a float32 network, outside any distribution strategy."""
        self.progress(0.97, f"Scoring the validation {self.units}")
        weights = model.get_weights()
        session.end()
        final = self.build()
        final.set_weights(weights)
        return final

    def classes(self, scores):
        return [dict(value=v, **s) for v, s in zip(self.values, scores["classes"])]

    def write(self, final, session, stopped, scores):
        """The model file and the report (by process 0 only); the checkpoint removed."""
        from ...models.modelfile import library_versions, save_model

        state, meta = session.state, self.meta
        training = dict({"dataset": os.path.abspath(self.dataset), "counts": meta["counts"],
                         "epochs": self.epochs, "epochs_run": state["epoch"], "stopped": stopped,
                         "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                         "patience": self.patience, "precision": session.policy,
                         "initial_model": _abspath(self.initial_model), "seed": self.seed,
                         "history": state["history"]}, **self.training_settings())
        model_meta = dict({"task": self.task, "bands": meta["bands"],
                           "band_names": meta["band_names"], "tile_size": meta["tile_size"],
                           "scaling": meta["scaling"], "statistics": meta["statistics"],
                           "normalisation": normalisation_of(meta),
                           "fixed_bands": meta.get("fixed_bands") or [],
                           "schema": meta["schema"], "outputs": self.values},
                          **self.model_metadata(scores))
        model_meta.update(training=training,
                          validation=dict(self.validation_record(scores), classes=self.classes(scores)),
                          versions=library_versions())
        files = {}
        if session.chief:
            with AtomicOutputs() as out:
                if self.report:
                    files = write_report(out, self.report, state["history"], scores, meta["schema"],
                                         self.values, **self.report_options())
            save_model(final, self.output, model_meta)
        shutil.rmtree(session.ckpt, ignore_errors=True)
        return files


def _abspath(path):
    return os.path.abspath(path) if path else None


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

    def fit(self, model, train, val, epochs, n_items, *, target, patience, class_weight=None,
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
