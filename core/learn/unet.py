"""U-Net segmentation: training on a segmentation dataset, classification with blended windows.

:func:`train_unet` is the worker job of ``fjord:trainunet``. It reads the image/mask windows of
a ``maketiles`` segmentation dataset (:class:`~fjord.core.learn.sequence.TileDataset`: batches from
the memory-mapped shards, per-band z-scores with the training statistics, rotations, flips and
random crops drawn anew every epoch), builds a network of :mod:`fjord.models.unet` (a preset or
a layout of its own) and trains it with the losses of :mod:`fjord.models.losses`, which leave
unlabelled pixels out. Device, precision, checkpoint/resume and the stopping rule (patience on
the validation loss, best weights kept) are those of phase-one training
(:class:`fjord.core.learn.session.TrainingJob`). The model file describes itself: bands, classes, window,
down-sampling, the statistics of the z-scores.

:func:`classify_unet` is the worker job of ``fjord:classifyunet``: the image is read in strips,
standardised, cut into overlapping windows that are blended with weights falling to the window
edges (:mod:`fjord.core.learn.windows`), optionally averaged over flips (test-time augmentation), and
written as one GeoTIFF: band 1 the class, bands 2..N+1 the probability of each class in schema
order (float32, or bytes 0-254 with 255 as nodata, or none).
"""

import json
import math
import os
import time

import numpy as np
from osgeo import gdal

from ..data.rasters import (
    GTIFF_OPTIONS,
    ImageStrips,
    class_raster_type,
    create_class_raster,
    create_gtiff,
    write_class_sidecars,
)
from ..data.schema import METADATA_KEY
from ..errors import Cancelled, FjordError, never_stop, no_progress, span_progress
from ..outputs import AtomicOutputs, check_writable
from ..prepare.normalise import normalisation_of, normaliser_for, per_image
from .predict import predict_batch
from .session import CLASS_WEIGHTS, TrainingJob, balanced_weights, check_choices
from .windows import BLENDS, predict_windows, windows_per_row

gdal.UseExceptions()

# LOSS parameter (order = the Toolbox enum): name -> (loss kind, class weights forced on)
LOSSES = {"crossentropy": ("crossentropy", False),
          "weighted_crossentropy": ("crossentropy", True),
          "dice": ("dice", False),
          "crossentropy_dice": ("crossentropy+dice", False)}
LOSS_NAMES = {"crossentropy": "categorical cross-entropy",
              "weighted_crossentropy": "weighted categorical cross-entropy",
              "dice": "soft Dice", "crossentropy_dice": "cross-entropy + soft Dice"}
AUGMENTS = ("none", "rotations+flips", "rotations+flips+crops", "rotations+flips+crops+radiometric",
            "rotations+flips+crops+areas")
#: LR_SCHEDULE (the Toolbox enum's order): the learning rate held, or decayed along a half
#: cosine from LEARNING_RATE to 0 over the EPOCHS (Loshchilov & Hutter 2017, without restarts).
SCHEDULES = ("cosine", "constant")
PROBABILITIES = ("float32", "byte", "none")
BYTE_SCALE = 254  # byte probabilities: round(p * 254); 255 is nodata


# ------------------------------------------------------------------------------------ training

def crop_sizes(window, down):
    """Random-crop sizes for windows of ``window`` px: half, three quarters and the whole
    window, each a multiple of the network's down-sampling ``down``."""
    sizes = {max(down, int(window * f) // down * down) for f in (0.5, 0.75, 1.0)}
    return sorted(sizes)


def _check_dataset(meta, folder, down):
    if meta["mode"] != "segmentation":
        raise FjordError(f"{folder!r} is a tile classification dataset (one label per tile); a "
                         "U-Net learns from image/mask windows. Make one with maketiles in "
                         "segmentation mode.")
    present = [int(v) for v, n in meta["counts"]["train"].items() if n > 0]
    if len(present) < 2:
        raise FjordError(f"The dataset's training windows label {len(present)} class(es) "
                         f"({present}); a classifier needs at least two.")
    if not meta["windows"]["validation"]:
        raise FjordError("The dataset has no validation windows, so training cannot be judged or "
                         "stopped; rebuild it with a VALIDATION_FRACTION above 0.")
    if meta["tile_size"] % down:
        raise FjordError(f"The dataset's windows are {meta['tile_size']} px, not a multiple of "
                         f"{down} (the U-Net halves them {int(math.log2(down))} times). Rebuild "
                         f"it with a TILE_SIZE that is a multiple of {down}, or lower DEPTH.")


def train_unet(dataset, output, *, preset="none", depth=5, filters=16, dropout=0.0,
               loss="crossentropy_dice", class_weights="none", augment="rotations+flips+crops",
               epochs=30, batch_size=8, learning_rate=2e-3, schedule="cosine", patience=0,
               mixed_precision="auto", ensemble=1,
               device="auto", seed=0, initial_model=None, report=None, progress=None,
               should_stop=None):
    """Train a U-Net (or an ensemble of them) on a Fjord segmentation dataset and write a Fjord
    model file.

    Parameters
    ----------
    dataset : str
        Segmentation dataset folder (``maketiles`` in segmentation mode).
    output : str
        Model file to write (``.keras``).
    preset : {'none', 'lulc', 'glacier'}
        The published networks (:data:`fjord.models.UNET_PRESETS`); 'none': ``depth``,
        ``filters`` and ``dropout`` as given. Ignored with ``initial_model`` (its layout is kept).
    loss : one of :data:`LOSSES`
    class_weights : {'none', 'balanced'}
        Balanced weights from the dataset's labelled-pixel counts, for every loss
        ('weighted_crossentropy' always uses them).
    augment : one of :data:`AUGMENTS`
    epochs, batch_size, learning_rate, patience : int, int, float, int
        Patience: stop when the validation loss has not improved for this many epochs, keep the
        best weights (0: never).
    schedule : {'cosine', 'constant'}
        The learning rate decays along a half cosine to 0 over ``epochs``, or stays.
    mixed_precision : {'auto', 'on', 'off'}
    device : str
    seed : int
    initial_model : str, optional
        A Fjord U-Net model file to fine-tune (same bands and classes).
    report : str, optional
        Folder for history, curves, the validation confusion matrix and per-class IoU/F1.
    ensemble : int
        Members to train, each with its own seed (``seed``, ``seed + 1``, ...). Members 2..N go
        to ``<output stem>_member<k>.keras`` (and their reports to ``report/member<k>``), then
        member 1 to ``output``, which lists the others: classifying with ``output`` averages
        all N. Returns member 1's result with ``members`` (each member's path and scores).
    """
    ensemble = int(ensemble)
    if ensemble < 1:
        raise FjordError("ENSEMBLE must be at least 1.")
    progress = progress or no_progress
    settings = dict(preset=preset, depth=depth, filters=filters, dropout=dropout, loss=loss,
                    class_weights=class_weights, augment=augment, epochs=epochs,
                    batch_size=batch_size, learning_rate=learning_rate, schedule=schedule,
                    patience=patience, mixed_precision=mixed_precision, device=device,
                    initial_model=initial_model, should_stop=should_stop)
    members = []
    for k in range(2, ensemble + 1):
        path = member_path(output, k)
        span = span_progress(progress, (k - 2) / ensemble, (k - 1) / ensemble)
        span(0.0, f"Ensemble member {k} of {ensemble}: {os.path.basename(path)}, seed "
                  f"{int(seed) + k - 1}")
        result = UnetTraining(dataset, path, seed=int(seed) + k - 1, progress=span,
                              report=os.path.join(report, f"member{k}") if report else None,
                              **settings).run()
        members.append(dict(result, path=os.path.abspath(path)))
    span = span_progress(progress, (ensemble - 1) / ensemble, 1.0)
    result = UnetTraining(dataset, output, seed=seed, report=report, progress=span,
                          members=[os.path.basename(m["path"]) for m in members],
                          **settings).run()
    if members:
        result["members"] = [dict(result, path=os.path.abspath(output))] + members
    return result


def member_path(output, k):
    """The file of ensemble member ``k`` (2, 3, ...) of the model file ``output``."""
    stem, ext = os.path.splitext(output)
    return f"{stem}_member{k}{ext or '.keras'}"


class UnetTraining(TrainingJob):
    """Training of a U-Net on a segmentation dataset (see :func:`train_unet`)."""

    task, units = "segmentation", "windows"

    def __init__(self, dataset, output, *, preset, depth, filters, dropout, loss, class_weights,
                 augment, schedule, members=(), **common):
        from ...models import UNET_PRESETS, preset_layout

        check_choices((("preset", preset, tuple(UNET_PRESETS)), ("loss", loss, tuple(LOSSES))))
        if preset == "none" and (int(depth) < 1 or int(depth) > 7 or int(filters) < 1
                                 or not 0 <= float(dropout) < 1):
            raise FjordError("DEPTH must be 1 to 7, FILTERS at least 1 and DROPOUT in [0, 1).")
        super().__init__(dataset, output, choices=(
            ("class_weights", class_weights, CLASS_WEIGHTS), ("augment", augment, AUGMENTS),
            ("schedule", schedule, SCHEDULES)), **common)
        if self.initial:
            layout = self.initial["layout"]
            depth, filters, dropout, optimizer = (layout["depth"], layout["filters"],
                                                  layout["dropout"], layout["optimizer"])
            preset = self.initial.get("preset", "none")
        else:
            depth, filters, dropout, optimizer = preset_layout(preset, depth, filters, dropout)
        self.preset, self.loss, self.schedule = preset, loss, schedule
        self.class_weights, self.augment = class_weights, augment
        self.members = list(members)
        self.layout = {"depth": int(depth), "filters": int(filters), "dropout": float(dropout),
                       "optimizer": optimizer}
        self.down = 2 ** int(depth)
        _check_dataset(self.meta, dataset, self.down)
        self.check_outputs()
        kind, self.forced = LOSSES[loss]
        self.weights = (balanced_weights(self.meta, self.values)
                        if class_weights == "balanced" or self.forced else None)
        self.crops = (crop_sizes(self.meta["tile_size"], self.down) if "crops" in augment
                      else None)

    def signature_settings(self):
        return {"architecture": "unet", "class_weights": self.class_weights,
                "augment": self.augment, "layout": self.layout, "loss": self.loss,
                "schedule": self.schedule}

    def training_settings(self):
        return {"schedule": self.schedule, "loss": self.loss, "class_weights": self.weights,
                "augment": self.augment, "crops": self.crops}

    def reader(self, split, batch, shard):
        from .sequence import TileDataset

        training = split == "train"
        turns = "rotations+flips" if training and self.augment != "none" else "none"
        return TileDataset(self.dataset, split, batch_size=batch, shuffle=training, augment=turns,
                           seed=self.seed, shard=shard, standardise=True,
                           crops=self.crops if training else None,
                           radiometric=training and self.augment.endswith("radiometric"),
                           area_statistics=training and self.augment.endswith("areas"))

    def build(self):
        from ...models.unet import build_unet

        layout = self.layout
        return build_unet(self.meta["bands"], len(self.values), layout["depth"],
                          layout["filters"], layout["dropout"])

    def compile(self, model, keras, steps):
        from ...models.losses import LabelledAccuracy, SegmentationLoss

        rate = self.learning_rate
        if self.schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(rate, self.epochs * max(steps, 1))
        optimizer = (keras.optimizers.Nadam if self.layout["optimizer"] == "nadam"
                     else keras.optimizers.Adam)(rate)
        model.compile(optimizer=optimizer, loss=SegmentationLoss(LOSSES[self.loss][0], self.weights),
                      metrics=[LabelledAccuracy()])

    def describe(self, model):
        from ...models.unet import multiply_adds_per_pixel

        meta, layout, crops = self.meta, self.layout, self.crops
        return (f"U-Net ({self.preset}: depth {layout['depth']}, {layout['filters']} base filters, "
                f"dropout {layout['dropout']:g}, {layout['optimizer']}): "
                f"{model.count_params():,} parameters, "
                f"{multiply_adds_per_pixel(model) / 1e3:,.1f} k multiply-adds per pixel; "
                f"{meta['windows']['train']:,} training and {meta['windows']['validation']:,} "
                f"validation windows of {meta['tile_size']} px, {meta['bands']} bands, "
                f"{len(self.values)} classes; loss: {LOSS_NAMES[self.loss]}"
                + (" with balanced class weights" if self.weights else "")
                + (f"; random crops of {', '.join(map(str, crops))} px" if crops else "") + ".")

    def score(self, model, val):
        return segmentation_scores(_validation_confusion(model, val, len(self.values),
                                                         self.should_stop))

    def model_metadata(self, scores):
        meta = {"architecture": "unet", "preset": self.preset, "layout": self.layout,
                "downsampling": self.down}
        if self.members:
            meta["ensemble"] = self.members  # file names beside this one
        return meta

    def validation_record(self, scores):
        return {key: scores[key] for key in ("accuracy", "macro_f1", "mean_iou")}

    def report_options(self):
        weighted = ", balanced class weights" if self.weights and not self.forced else ""
        return {"what": "pixels", "loss_name": LOSS_NAMES[self.loss] + weighted}

    def summary(self, scores, stopped, epochs_run):
        return (f"Validation: pixel accuracy {scores['accuracy']:.4f}, macro F1 "
                f"{scores['macro_f1']:.4f}, mean IoU {scores['mean_iou']:.4f} after "
                f"{epochs_run} epochs (stopped: {stopped}).")

    def result(self, scores):
        return {"layout": self.layout, "preset": self.preset, "mean_iou": scores["mean_iou"]}


def _validation_confusion(model, val, n_classes, should_stop):
    """Confusion matrix (truth x predicted, class indices) over the labelled validation pixels."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    for i in range(len(val)):
        if should_stop():
            raise Cancelled("Training was cancelled.")
        x, y = val[i]
        labelled = y.sum(axis=-1) > 0
        truth = np.argmax(y, axis=-1)[labelled]
        predicted = np.argmax(np.asarray(model(x, training=False)), axis=-1)[labelled]
        matrix += np.bincount(truth * n_classes + predicted,
                              minlength=n_classes ** 2).reshape(n_classes, n_classes)
    return matrix


def segmentation_scores(matrix):
    """Per-class precision, recall, F1, IoU and support from a confusion matrix over class
    indices; pixel accuracy, macro F1 and mean IoU over the classes present in the truth,
    support-weighted F1."""
    m = np.asarray(matrix, np.float64)
    tp = np.diag(m)
    support, predicted = m.sum(axis=1), m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        union = support + predicted - tp
        iou = np.where(union > 0, tp / union, 0.0)
    present = support > 0
    total = support.sum()
    return {"accuracy": float(tp.sum() / total) if total else 0.0,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
            "mean_iou": float(iou[present].mean()) if present.any() else 0.0,
            "confusion": m.astype(np.int64).tolist(),
            "classes": [{"precision": float(a), "recall": float(b), "f1": float(c), "iou": float(d),
                         "support": int(s)}
                        for a, b, c, d, s in zip(precision, recall, f1, iou, support)]}


# ------------------------------------------------------------------------------ classification

class StandardisedStrips:
    """An :class:`~fjord.core.data.rasters.ImageStrips` read as the U-Net's input: float32 values
    normalised by the model's rule (:mod:`fjord.core.prepare.normalise`), invalid pixels 0 (the
    training mean, or the image's median)."""

    def __init__(self, img, meta):
        self.img = img
        self.width, self.height, self.bands = img.width, img.height, img.bands
        self.normalise = normaliser_for(img, meta, z_scores=True)

    def read(self, row, rows):
        data, valid = self.img.read(row, rows)
        x = self.normalise(data.astype(np.float32))
        x[~valid] = 0.0
        return x, valid


def flip_average(predict, x):
    """``predict`` averaged over the image and its three flips (test-time augmentation)."""
    stack = np.concatenate([x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]])
    out = predict(stack)
    n = len(x)
    return (out[:n] + out[n:2 * n, :, ::-1] + out[2 * n:3 * n, ::-1]
            + out[3 * n:, ::-1, ::-1]) / 4.0


def blend_margin(overlap, blend):
    """The dead border of a window (weight 0) under a ramp blend: a quarter of the overlap.
    Pixels at a window's very edge see the least context; with the margin they never count,
    which lowers both the mean and the largest difference to a whole-image prediction."""
    return overlap // 4 if blend != "none" else 0


def window_batch(window):
    """Windows predicted together: about a million pixels per batch."""
    return max(1, 2 ** 20 // (window * window))


def _create_output(path, img, schema, names, probabilities):
    """The output GeoTIFF: band 1 class, then one probability band per class (or none)."""
    if probabilities == "none":
        return create_class_raster(path, img.ds, schema)
    n = len(names)
    if probabilities == "float32":
        dtype, nodata = gdal.GDT_Float32, float("nan")
        options = GTIFF_OPTIONS + ["PREDICTOR=3"]
    else:
        dtype, nodata = class_raster_type(schema)
        options = list(GTIFF_OPTIONS)
    ds = create_gtiff(path, img.width, img.height, 1 + n, dtype, options + ["INTERLEAVE=BAND"])
    ds.SetGeoTransform(img.ds.GetGeoTransform())
    if img.ds.GetProjection():
        ds.SetProjection(img.ds.GetProjection())
    ds.SetMetadataItem(METADATA_KEY, json.dumps(schema, ensure_ascii=False))
    ds.GetRasterBand(1).SetDescription("class")
    for b, name in enumerate(names):
        ds.GetRasterBand(b + 2).SetDescription(f"probability {name}")
    for b in range(1 + n):
        ds.GetRasterBand(b + 1).SetNoDataValue(nodata)
    return ds


def check_window(meta, window, overlap, blend, img):
    down = int(meta.get("downsampling", 1))
    if meta.get("fixed_window") and window != int(meta["tile_size"]):
        raise FjordError(f"This network takes windows of {meta['tile_size']} px only (its input "
                         f"size is fixed); set WINDOW to {meta['tile_size']} or 0.")
    if window < down or window % down:
        raise FjordError(f"WINDOW {window} px is not a multiple of {down}, the network's "
                         f"down-sampling (it halves its input {int(math.log2(down))} times); use "
                         f"e.g. {max(down, window // down * down)} px.")
    if not 0 <= overlap < window:
        raise FjordError(f"OVERLAP must be at least 0 and smaller than the window ({window} px); "
                         f"it is {overlap} px.")
    if blend not in BLENDS:
        raise FjordError(f"BLEND must be one of {', '.join(BLENDS)}, not {blend!r}.")
    if img.bands != meta["bands"]:
        raise FjordError(f"The image has {img.bands} bands but the model was trained on "
                         f"{meta['bands']} ({', '.join(meta['band_names'])}); give an image with "
                         "the same bands in the same order.")


def classify_unet(image, model, output, *, window=0, overlap=-1, blend="cosine", tta=False,
                  probabilities="float32", device="auto", ignore_scale_mismatch=False,
                  progress=None, should_stop=None):
    """Classify ``image`` with a U-Net model file over overlapping, blended windows.

    Parameters
    ----------
    model : str or list of str
        U-Net model file(s). Several files, or a file that lists ensemble members (``trainunet``
        ENSEMBLE), are an ensemble: their probabilities are averaged. Members need the same
        bands, classes and normalisation.
    window : int
        Window size in px (0: the model's training window); a multiple of the network's
        down-sampling.
    overlap : int
        Overlap of neighbouring windows in px (-1: a quarter of the window).
    blend : {'cosine', 'linear', 'none'}
    tta : bool
        Average over the image and its flips (four times the work).
    probabilities : {'float32', 'byte', 'none'}
        Bands 2..N+1: the probability of each class in schema order, as float32 (nodata NaN)
        or as round(p x 254) in bytes (255 nodata); or the class band alone.
    ignore_scale_mismatch : bool
        Classify even when the image is not on the scale of the model's training statistics
        (a warning instead of an error).

    Returns a dict: output path, window, overlap, blend, pixels per second, class pixel counts.
    """
    from .scale import check_scale

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    t0 = time.perf_counter()
    models, meta = read_unet_metadata(model)
    if probabilities not in PROBABILITIES:
        raise FjordError(f"PROBABILITIES must be one of {', '.join(PROBABILITIES)}.")
    img = ImageStrips(image)
    img.check_valid()
    window = int(window) or int(meta["tile_size"])
    overlap = window // 4 if int(overlap) < 0 else int(overlap)
    check_window(meta, window, overlap, blend, img)
    check_scale(img, meta, ignore_scale_mismatch, progress)
    if os.path.abspath(output) in {os.path.abspath(p) for p in [image] + models}:
        raise FjordError("The output would overwrite an input; choose another path.")
    check_writable(output, "class raster")
    if meta.get("engine") != "onnx":  # an ONNX network needs no deep-learning engine
        from ...models import distribute

        distribute.start(device, progress)
    predict, batch = unet_predictor(models, window, img.bands, tta,
                                    windows_per_row(img.width, window, overlap))
    progress(0.0, f"{img.width} x {img.height} px in windows of {window} px overlapping by "
                  f"{overlap} px, {blend} blend" + (", averaged over flips" if tta else "")
                  + (f", averaged over {len(models)} models" if len(models) > 1 else "") + ".")
    try:
        with AtomicOutputs() as out:
            writer = _ClassWriter(out.add(output), img, meta["schema"], probabilities)
            try:
                predict_windows(StandardisedStrips(img, meta), predict, window, overlap,
                                len(writer.values), writer.write, blend=blend,
                                margin=blend_margin(overlap, blend), batch=batch,
                                should_stop=should_stop, progress=span_progress(progress, 0, 0.98))
                writer.flush()
            finally:
                writer.close()
            write_class_sidecars(out, output, meta["schema"])
    finally:
        img.close()
    seconds = time.perf_counter() - t0
    rate = img.width * img.height / seconds
    progress(1.0, f"Classified {img.width * img.height:,} px in {seconds:.1f} s "
                  f"({rate:,.0f} px/s): {writer.shares()}.")
    return {"output": os.path.abspath(output), "window": window, "overlap": overlap,
            "blend": blend, "tta": bool(tta), "probabilities": probabilities,
            "models": [os.path.abspath(p) for p in models], "seconds": seconds, "pixels_per_second": rate,
            "counts": {int(v): int(n) for v, n in enumerate(writer.counts) if n}}


def ensemble_members(models):
    """The U-Net model files to average: each file given and the members its metadata lists
    (``trainunet`` with ENSEMBLE > 1 records them in OUTPUT), each once, in order."""
    from ...models.modelfile import read_metadata

    if isinstance(models, (str, os.PathLike)):
        models = [models]
    paths = []
    for model in models:
        folder = os.path.dirname(os.path.abspath(model))
        members = [os.path.join(folder, m) for m in read_metadata(model).get("ensemble", [])]
        for path in [str(model)] + members:
            if os.path.abspath(path) not in {os.path.abspath(p) for p in paths}:
                paths.append(path)
    return paths


def read_unet_metadata(models):
    """``(paths, meta)``: the ensemble's model files (:func:`ensemble_members`) and the first
    one's metadata, checked to be U-Nets whose outputs follow their schema and that agree on
    bands, classes and normalisation, so that their probabilities can be averaged."""
    from ...models.modelfile import read_metadata

    paths = ensemble_members(models)
    metas = [read_metadata(p) for p in paths]
    for path, meta in zip(paths, metas):
        if meta["task"] != "segmentation":
            raise FjordError(f"{os.path.basename(path)} is a {meta['task']} model; classifyunet "
                             "needs a U-Net made by 'Train U-Net'.")
        if [int(c["value"]) for c in meta["schema"]["classes"]] != list(meta["outputs"]):
            raise FjordError(f"{os.path.basename(path)}: its outputs do not follow its class schema.")
    for path, meta in zip(paths[1:], metas[1:]):
        _check_member(path, meta, paths[0], metas[0])
    meta = dict(metas[0], downsampling=max(int(m.get("downsampling", 1)) for m in metas),
                engine="onnx" if all(m.get("engine") == "onnx" for m in metas) else "keras")
    return paths, meta


def _check_member(path, meta, first_path, first):
    """FjordError unless the U-Net ``meta`` reads images as ``first`` does and has its classes."""
    name, other = os.path.basename(path), os.path.basename(first_path)
    if meta["band_names"] != first["band_names"] or meta["bands"] != first["bands"]:
        raise FjordError(f"The ensemble's members need the same bands: {name} has "
                         f"{', '.join(meta['band_names'])}, {other} "
                         f"{', '.join(first['band_names'])}.")
    if meta["outputs"] != first["outputs"] or [c["name"] for c in meta["schema"]["classes"]] != [
            c["name"] for c in first["schema"]["classes"]]:
        raise FjordError(f"The ensemble's members need the same class schema; {name} and "
                         f"{other} differ.")
    rule = normalisation_of(meta)
    own_only = per_image(meta) and not (meta.get("fixed_bands") or first.get("fixed_bands"))
    same_input = rule == normalisation_of(first) and (own_only or (
        meta["scaling"] == first["scaling"]
        and np.allclose(meta["statistics"]["mean"], first["statistics"]["mean"])
        and np.allclose(meta["statistics"]["std"], first["statistics"]["std"])))
    if not same_input:
        raise FjordError(f"The ensemble's members must read images the same way: {name} and "
                         f"{other} differ in normalisation or training statistics. Train the "
                         "members on one dataset (trainunet ENSEMBLE), or with a per-image "
                         "NORMALISATION ('image' or 'range').")


def unet_predictor(models, window, bands, tta, columns):
    """``(predict, batch)``: a function from a batch of normalised windows to per-pixel
    probabilities, averaged over the model files ``models`` and (with ``tta``) over flips; and
    the windows per batch: about a million pixels, but no more than the ``columns`` windows of
    one row (a batch is padded to that one shape, so a larger one would be wasted work). The
    engine must be started (``distribute.start``)."""
    from ...models.modelfile import cached_model

    nets = [cached_model(path, task="segmentation")[0] for path in models]
    batch = min(window_batch(window), columns)
    shape = (batch * (4 if tta else 1), window, window, bands)

    def run(x):
        # padded to one shape: each network is compiled once
        return sum(predict_batch(net, x, shape) for net in nets) / np.float32(len(nets))

    def predict(x):
        return flip_average(run, x) if tta else run(x)

    return predict, batch


class _ClassWriter:
    """Writes blended probabilities as the class band and the probability bands, counting the
    pixels per class."""

    def __init__(self, path, img, schema, probabilities):
        self.schema, self.probabilities = schema, probabilities
        self.values = np.array([int(c["value"]) for c in schema["classes"]], np.int64)
        self.nodata = class_raster_type(schema)[1]
        self.counts = np.zeros(int(self.values.max()) + 1, np.int64)
        names = [c["name"] for c in schema["classes"]]
        self.ds = _create_output(path, img, schema, names, probabilities)
        self.bands = [self.ds.GetRasterBand(b + 1) for b in range(self.ds.RasterCount)]

    def write(self, row, probs, valid):
        classes = self.values[np.argmax(probs, axis=-1)]
        self.counts += np.bincount(classes[valid], minlength=len(self.counts))
        if self.probabilities == "float32":
            self.bands[0].WriteArray(np.where(valid, classes, np.nan).astype(np.float32), 0, row)
            layers = np.where(valid[..., None], probs, np.nan).astype(np.float32)
        else:
            self.bands[0].WriteArray(np.where(valid, classes, self.nodata), 0, row)
            if self.probabilities == "none":
                return
            layers = np.where(valid[..., None], np.rint(probs * BYTE_SCALE), self.nodata)
        for b, band in enumerate(self.bands[1:]):
            band.WriteArray(layers[..., b], 0, row)

    def flush(self):
        self.ds.FlushCache()

    def close(self):
        """Close the dataset (before the partial file is removed or renamed)."""
        self.ds = self.bands = None

    def shares(self):
        total = max(int(self.counts.sum()), 1)
        return ", ".join(f"{c['name']} {100 * self.counts[c['value']] / total:.1f} %"
                         for c in self.schema["classes"] if self.counts[c["value"]])
