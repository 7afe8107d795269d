"""Training the phase-one CNN of CNN-supervised classification on a Fjord tile dataset.

:func:`train_phase_one` is the worker job of ``fjord:trainphaseone``. It reads a tile dataset
made by ``maketiles`` through :class:`~fjord.core.learn.sequence.TileDataset` (batches from the
memory-mapped shards, bounded memory), builds or fine-tunes a network of
:mod:`fjord.models.phase_one`, and trains it with Keras: Adam with AMSGrad, categorical
cross-entropy, optional balanced class weights, optional on-the-fly rotations and flips.

The steps every training run shares (device, checkpoint and resume, the fit and its stopping
rules, the model file and the report) are :class:`~fjord.core.learn.session.TrainingJob`'s.

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


import numpy as np

from ...models import ARCHITECTURES, MIN_TILE
from ..errors import Cancelled, FjordError
from ..prepare.tiles import AUGMENTS
from .session import CLASS_WEIGHTS, TrainingJob, balanced_weights

#: What TARGET_ACCURACY is compared with (the Toolbox enum's order).
TARGET_METRICS = ("balanced_accuracy", "accuracy")


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
    return PhaseOneTraining(
        dataset, output, architecture=architecture, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, target_accuracy=target_accuracy, target_metric=target_metric,
        patience=patience, initial_model=initial_model, class_weights=class_weights,
        augment=augment, mixed_precision=mixed_precision, device=device, seed=seed, report=report,
        progress=progress, should_stop=should_stop).run()


class PhaseOneTraining(TrainingJob):
    """Training of a phase-one tile classifier (see :func:`train_phase_one`)."""

    task, units = "tiles", "tiles"

    def __init__(self, dataset, output, *, architecture, target_accuracy, target_metric,
                 class_weights, augment, **common):
        super().__init__(dataset, output, choices=(
            ("architecture", architecture, ARCHITECTURES),
            ("class_weights", class_weights, CLASS_WEIGHTS),
            ("target_metric", target_metric, TARGET_METRICS),
            ("augment", augment, AUGMENTS)), **common)
        self.architecture = self.initial["architecture"] if self.initial else architecture
        self.target_accuracy, self.target_metric = float(target_accuracy), target_metric
        self.class_weights, self.augment = class_weights, augment
        _check_dataset(self.meta, self.architecture, dataset)
        self.check_outputs()

    def signature_settings(self):
        return {"architecture": self.architecture, "class_weights": self.class_weights,
                "augment": self.augment}

    def training_settings(self):
        return {"target_accuracy": self.target_accuracy, "target_metric": self.target_metric,
                "class_weights": self.class_weights, "augment": self.augment}

    def reader(self, split, batch, shard):
        from .sequence import TileDataset

        training = split == "train"
        return TileDataset(self.dataset, split, batch_size=batch, shuffle=training,
                           augment=self.augment if training else "none", seed=self.seed,
                           shard=shard)

    def build(self):
        from ...models.phase_one import build_phase_one

        return build_phase_one(self.architecture, self.meta["bands"], self.meta["tile_size"],
                               len(self.values))

    def compile(self, model, keras, steps):
        from ...models.losses import BalancedAccuracy

        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate, amsgrad=True),
                      loss="categorical_crossentropy",
                      metrics=["accuracy", BalancedAccuracy(len(self.values))])

    def describe(self, model):
        from ...models.phase_one import multiply_adds

        meta = self.meta
        return (f"{self.architecture}: {model.count_params():,} parameters, "
                f"{multiply_adds(model) / 1e6:,.0f} M multiply-adds per tile; "
                f"{meta['windows']['train']:,} training and {meta['windows']['validation']:,} "
                f"validation tiles of {meta['tile_size']} px, {meta['bands']} bands, "
                f"{len(self.values)} classes.")

    def fit_rules(self):
        weights = (dict(enumerate(balanced_weights(self.meta, self.values)))
                   if self.class_weights == "balanced" else None)
        return {"target": self.target_accuracy, "target_metric": self.target_metric,
                "class_weight": weights}

    def score(self, model, val):
        truth, predicted = _predict(model, val, self.should_stop)
        return _scores(truth, predicted, len(self.values))

    def model_metadata(self, scores):
        return {"architecture": self.architecture}

    def result(self, scores):
        return {"architecture": self.architecture}


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
