"""CNN-supervised classification (CSC) of one image: phase one, per-image phase two, reports.

:func:`classify_csc` is the worker job of ``fjord:classifycsc`` (Carbonneau et al. 2020;
Marochov et al. 2021):

1. **Phase one.** The phase-one model (a Fjord tile classifier) predicts tiles of the image in
   batches, strip by strip. Tiles start every ``tile_stride`` pixels; the last row and column
   of tiles end at the image edge, so every pixel is covered. Where tiles overlap their class
   probabilities are averaged. A pixel whose best probability is under the recognition
   threshold stays unlabelled (0).
2. **Phase two.** For every phase-one class, up to ``samples_per_class`` pixels are drawn at
   random (with replacement when the class has fewer), at their true (row, col), with the K x K
   patch centred on each (reflected at the image edge) and the phase-one class as label. An MLP
   (K = 1) or a compact CNN (K = 3, 5, 7, 15) learns them, with early stopping on the
   validation accuracy of a random 20 % (best weights kept). The trained network is then run
   *fully convolutionally* over blocks of the image with a halo of (K - 1) / 2 pixels, read and
   written through GDAL windows: every pixel is predicted, the result is the one of predicting
   each pixel's patch, and memory does not grow with the image.
3. **Smoothing.** A modal filter (disk of radius ``smoothing``), again in strips with a halo.

Outputs are class rasters styled from the model's class schema; nodata pixels of the input
stay nodata. With a validation raster, the per-class scores of the phase-one map and of the
final map go to ``CNN_<image>.csv`` and ``CSC_<image>.csv`` and the 4-panel figure to
``CSC_<image>.png`` in the report folder.
"""

import csv
import math
import os
import shutil
import time

import numpy as np
from osgeo import gdal

from ...models import PATCH_SIZES
from ..data.rasters import (
    GTIFF_OPTIONS,
    ImageStrips,
    class_raster_type,
    create_class_raster,
    create_gtiff,
    open_raster,
    read_classes,
    same_grid,
    write_class_sidecars,
)
from ..errors import Cancelled, FjordError, never_stop, no_progress, span_progress
from ..evaluate.metrics import Confusion, class_scores, write_scores_csv
from ..outputs import AtomicOutputs, check_writable, work_dir
from ..prepare.normalise import normaliser_for
from .predict import predict_batch
from .unet import StandardisedStrips, blend_margin, check_window, read_unet_metadata, unet_predictor
from .windows import padded_rows, predict_windows, windows_per_row
from .windows import window_positions as tile_positions

gdal.UseExceptions()

# The training patches of phase two are held in memory in the image's own type; beyond this
# many bytes the samples per class are reduced (and the log says so).
PATCH_MEMORY = 768 * 2 ** 20
# Bytes of the feature maps of one block of phase-two inference (all layers together).
BLOCK_MEMORY = 256 * 2 ** 20
# A phase-one class needs this many pixels to take part in phase two.
MIN_CLASS_PIXELS = 50
TILE_BATCH = 64
MIN_DELTA = 0.005
VALIDATION_SHARE = 0.2
MIN_STEPS = 20


def _check_stop(should_stop, where):
    if should_stop():
        raise Cancelled(f"Classification was cancelled during {where}; no output was written.")


def image_stem(path):
    return os.path.splitext(os.path.basename(path))[0]


# ------------------------------------------------------------------------------------ checks

def _check_inputs(img, meta, model_path, patch_size, tile_stride, threshold, smoothing,
                  samples_per_class, max_epochs, patience, boundary_margin):
    if int(patch_size) not in PATCH_SIZES:
        raise FjordError(f"PATCH_SIZE must be one of {', '.join(map(str, PATCH_SIZES))} "
                         f"(1 = MLP, else a compact CNN), not {patch_size}.")
    if img.bands != meta["bands"]:
        raise FjordError(
            f"The model {os.path.basename(model_path)} was trained on {meta['bands']} bands "
            f"({', '.join(meta['band_names'])}) but the image has {img.bands} "
            f"({', '.join(img.band_names)}). Stack the same bands in the same order "
            "('Stack bands') or use a model trained on this band set.")
    tile = int(meta["tile_size"])
    if meta["task"] == "tiles" and (img.width < tile or img.height < tile):
        raise FjordError(f"The image ({img.width} x {img.height} px) is smaller than one tile of "
                         f"the model ({tile} px); use a larger image or a model with smaller tiles.")
    if not 1 <= int(tile_stride) <= tile:
        raise FjordError(f"TILE_STRIDE must be between 1 and the tile size ({tile} px), not "
                         f"{tile_stride}: a larger stride would leave pixels without a tile.")
    if not 0 <= float(threshold) <= 1:
        raise FjordError("RECOGNITION_THRESHOLD is a probability between 0 and 1.")
    if int(boundary_margin) < 0:
        raise FjordError("BOUNDARY_MARGIN is a distance in pixels, 0 or more.")
    if int(smoothing) < 0:
        raise FjordError("SMOOTHING is a radius in pixels, 0 or more.")
    if int(samples_per_class) < MIN_CLASS_PIXELS:
        raise FjordError(f"SAMPLES_PER_CLASS must be at least {MIN_CLASS_PIXELS}.")
    if int(max_epochs) < 1 or int(patience) < 0:
        raise FjordError("MAX_EPOCHS must be at least 1 and PATIENCE 0 or more.")
    if int(patch_size) > 1 and min(img.width, img.height) <= (int(patch_size) - 1) // 2:
        raise FjordError("The image is too small for this patch size.")


def _check_validation(path, img, schema):
    ds = open_raster(path, "validation raster")
    if ds.RasterCount != 1:
        raise FjordError("The validation raster must have exactly one band of class values.")
    if not same_grid(ds, img.ds, lenient_crs=True):
        raise FjordError(
            f"The validation raster ({ds.RasterXSize} x {ds.RasterYSize} px) is not on the grid of "
            f"the image ({img.width} x {img.height} px, same geotransform and CRS). Rasterise the "
            "reference polygons with this image as REFERENCE, or align the raster first.")
    return ds


def _check_outputs(paths, inputs):
    seen = set()
    for what, path in paths:
        if not path:
            continue
        check_writable(path, what)
        full = os.path.abspath(path)
        if full in inputs:
            raise FjordError(f"The {what} would overwrite an input ({path}); choose another path.")
        if full in seen:
            raise FjordError(f"Two outputs share the path {path}; give each its own.")
        seen.add(full)


# --------------------------------------------------------------------------------- phase one

def phase_one(img, model, meta, out_ds, stride, threshold, progress, should_stop):
    """Paint the phase-one map into band 1 of ``out_ds``; returns per-strip class counts.

    Returns ``(counts, strips)``: the pixel count of each class value over the image, and the
    list of (row, rows, counts) of the strips as written (for sampling).
    """
    tile = int(meta["tile_size"])
    normalise = normaliser_for(img, meta)
    values = np.asarray(meta["outputs"], np.int64)
    top = int(max(c["value"] for c in meta["schema"]["classes"]))
    _, nodata = class_raster_type(meta["schema"])
    width, height = img.width, img.height
    ys, xs = tile_positions(height, tile, stride), tile_positions(width, tile, stride)
    acc = np.zeros((tile, width, len(values)), np.float32)
    hits = np.zeros((tile, width), np.float32)
    band = out_ds.GetRasterBand(1)
    strips = []
    total = np.zeros(top + 1, np.int64)
    size = min(TILE_BATCH, len(xs))  # every call padded to one shape, no larger than a row
    for i, y in enumerate(ys):
        _check_stop(should_stop, "phase one")
        data, valid = img.read(y, tile)
        picks = [x for x in xs if valid[:, x:x + tile].any()]
        for b in range(0, len(picks), size):
            batch = picks[b:b + size]
            x = normalise(np.stack([data[:, c:c + tile] for c in batch]).astype(np.float32))
            probs = predict_batch(model, x, (size,) + x.shape[1:])
            for c, p in zip(batch, probs):
                acc[:, c:c + tile] += p
                hits[:, c:c + tile] += 1
        done = (ys[i + 1] if i + 1 < len(ys) else height) - y
        mean = acc[:done] / np.maximum(hits[:done], 1)[..., None]
        classes = values[np.argmax(mean, axis=-1)]
        if threshold > 0:
            classes[mean.max(axis=-1) < threshold] = 0
        classes[~valid[:done]] = nodata
        band.WriteArray(classes.astype(np.uint16 if nodata > 255 else np.uint8), 0, y)
        counts = np.bincount(classes[valid[:done]], minlength=top + 1)[:top + 1]
        strips.append((y, done, counts))
        total += counts
        acc[:tile - done] = acc[done:]
        acc[tile - done:] = 0
        hits[:tile - done] = hits[done:]
        hits[tile - done:] = 0
        progress((i + 1) / len(ys))
    band.FlushCache()
    return total, strips


def unet_phase_one(img, predict, meta, out_ds, windows, threshold, progress, should_stop):
    """Phase one by a U-Net: its per-pixel probabilities over cosine-blended windows
    (:func:`.windows.predict_windows`; ``windows``: window, overlap and windows per batch),
    painted into band 1 of ``out_ds`` as classes (pixels whose best probability is under
    ``threshold`` unlabelled). Returns ``(counts, strips)`` as :func:`phase_one` does."""
    window, overlap, batch = windows
    values = np.asarray(meta["outputs"], np.int64)
    top = int(max(c["value"] for c in meta["schema"]["classes"]))
    _, nodata = class_raster_type(meta["schema"])
    band = out_ds.GetRasterBand(1)
    strips, total = [], np.zeros(top + 1, np.int64)

    def write(row, probs, valid):
        classes = values[np.argmax(probs, axis=-1)]
        if threshold > 0:
            classes[probs.max(axis=-1) < threshold] = 0
        classes[~valid] = nodata
        band.WriteArray(classes.astype(np.uint16 if nodata > 255 else np.uint8), 0, row)
        counts = np.bincount(classes[valid], minlength=top + 1)[:top + 1]
        strips.append((row, len(classes), counts))
        total[:] += counts

    predict_windows(StandardisedStrips(img, meta), predict, window, overlap, len(values),
                    write, blend="cosine", margin=blend_margin(overlap, "cosine"), batch=batch,
                    should_stop=should_stop, progress=progress)
    band.FlushCache()
    return total, strips


def away_from_boundaries(src_ds, dst_ds, margin, top, should_stop, rows=512):
    """Copy the class raster ``src_ds`` into ``dst_ds`` keeping only the pixels whose disk of
    radius ``margin`` px holds no other value (unlabelled 0 and nodata count as values); the
    others become 0. Returns ``(counts, strips)`` of the kept pixels as :func:`phase_one`
    does."""
    from scipy import ndimage

    yy, xx = np.mgrid[-margin:margin + 1, -margin:margin + 1]
    disk = yy ** 2 + xx ** 2 <= margin ** 2
    nodata = src_ds.GetRasterBand(1).GetNoDataValue()
    height = src_ds.RasterYSize
    strips, total = [], np.zeros(top + 1, np.int64)
    for y in range(0, height, rows):
        _check_stop(should_stop, "the boundary margin")
        n = min(rows, height - y)
        y0, y1 = max(0, y - margin), min(height, y + n + margin)
        raw = src_ds.GetRasterBand(1).ReadAsArray(0, y0, src_ds.RasterXSize, y1 - y0)
        src_ds.FlushCache()
        uniform = (ndimage.maximum_filter(raw, footprint=disk, mode="nearest")
                   == ndimage.minimum_filter(raw, footprint=disk, mode="nearest"))
        own = raw[y - y0:y - y0 + n]
        kept = np.where(uniform[y - y0:y - y0 + n], own, 0).astype(own.dtype)
        invalid = own == nodata if nodata is not None else np.zeros(own.shape, bool)
        kept[invalid] = own[invalid]
        dst_ds.GetRasterBand(1).WriteArray(kept, 0, y)
        counts = np.bincount(kept[~invalid].ravel().astype(np.int64), minlength=top + 1)[:top + 1]
        strips.append((y, n, counts))
        total += counts
    dst_ds.FlushCache()
    return total, strips


# --------------------------------------------------------------------------------- phase two

def padded_strip(img, y0, y1, halo):
    """Rows ``y0 .. y1`` of the image with ``halo`` extra rows and columns on every side,
    reflected at the image's edges; plus the valid mask of the rows ``y0 .. y1``."""
    data, valid = padded_rows(img, y0 - halo, y1 + halo, halo, halo)
    return data, valid[halo:halo + y1 - y0, halo:halo + img.width]


def strip_rows(width, halo, channels, budget=BLOCK_MEMORY, cols=None):
    """Rows per strip and columns per block so that a block's feature maps (``channels`` per
    pixel, all layers together, float32) fit ``budget`` bytes."""
    pixels = max(1, budget // (4 * channels))
    cols = min(width, cols or 4096)
    return max(1, pixels // (cols + 2 * halo)), cols


def allot_samples(counts, samples_per_class, patch_size, bands, itemsize, progress):
    """Samples per phase-one class: ``samples_per_class`` each, fewer when the patches would
    not fit in :data:`PATCH_MEMORY`. Classes with too few pixels are left out."""
    present = {v: int(n) for v, n in enumerate(counts) if v > 0 and n >= MIN_CLASS_PIXELS}
    left_out = {v: int(n) for v, n in enumerate(counts) if v > 0 and 0 < n < MIN_CLASS_PIXELS}
    per_class = int(samples_per_class)
    patch_bytes = patch_size * patch_size * bands * itemsize
    if present and per_class * len(present) * patch_bytes > PATCH_MEMORY:
        per_class = max(MIN_CLASS_PIXELS, PATCH_MEMORY // (patch_bytes * len(present)))
        progress(None, f"Phase two: {per_class:,} samples per class instead of "
                       f"{int(samples_per_class):,}, so that the {patch_size} x {patch_size} "
                       f"patches fit in {PATCH_MEMORY / 2 ** 20:.0f} MiB.")
    return present, left_out, per_class


def draw_samples(strips, present, per_class, rng):
    """For each class, ``per_class`` ordinals into its pixels (in raster order), drawn at
    random, with replacement only when the class has fewer pixels."""
    picks = {}
    for v, n in present.items():
        if n >= per_class:
            picks[v] = np.sort(rng.choice(n, per_class, replace=False))
        else:
            picks[v] = np.sort(rng.integers(0, n, per_class))
    return picks


def gather_patches(img, phase_one_ds, strips, picks, patch_size, progress, should_stop):
    """The K x K patch around every drawn pixel, at its true (row, col), and its class.

    Returns ``(patches, labels, rows, cols)``; patches keep the image's type.
    """
    halo = (patch_size - 1) // 2
    n = sum(len(p) for p in picks.values())
    patches = np.empty((n, patch_size, patch_size, img.bands), img.dtype)
    labels = np.empty(n, np.int64)
    rows_out, cols_out = np.empty(n, np.int64), np.empty(n, np.int64)
    seen = {v: 0 for v in picks}  # pixels of each class in the strips before this one
    k = 0
    for s, (y, rows, counts) in enumerate(strips):
        _check_stop(should_stop, "phase-two sampling")
        wanted = {}
        for v, ords in picks.items():
            lo, hi = np.searchsorted(ords, [seen[v], seen[v] + counts[v]])
            if hi > lo:
                wanted[v] = ords[lo:hi] - seen[v]
            seen[v] += int(counts[v])
        if not wanted:
            continue
        classes = read_classes(phase_one_ds, y, rows, "phase-one map")
        data, _ = padded_strip(img, y, y + rows, halo)
        for v, local in wanted.items():
            flat = np.flatnonzero(classes == v)[local]
            r, c = np.divmod(flat, img.width)
            m = len(flat)
            # (r, c) in the strip is (r, c) .. (r + K, c + K) in the padded strip.
            for dy in range(patch_size):
                for dx in range(patch_size):
                    patches[k:k + m, dy, dx] = data[r + dy, c + dx]
            labels[k:k + m] = v
            rows_out[k:k + m], cols_out[k:k + m] = r + y, c
            k += m
        progress((s + 1) / len(strips))
    return patches, labels, rows_out, cols_out


def _patch_batches(keras):
    class PatchBatches(keras.utils.PyDataset):
        """Batches of scaled patches and class indices, reshuffled every epoch."""

        def __init__(self, patches, targets, index, batch_size, divisor, shuffle, seed):
            super().__init__()
            self.patches, self.targets, self.index = patches, targets, index
            self.batch_size, self.divisor = int(batch_size), float(divisor)
            self.shuffle, self.seed, self.epoch = shuffle, seed, 0
            self.order = self._order()

        def _order(self):
            if not self.shuffle:
                return self.index
            return np.random.default_rng((self.seed, self.epoch)).permutation(self.index)

        def __len__(self):
            return max(1, math.ceil(len(self.index) / self.batch_size))

        def __getitem__(self, i):
            pick = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
            return self.patches[pick].astype(np.float32) / self.divisor, self.targets[pick]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return PatchBatches


def _monitor(keras, max_epochs, progress, should_stop, history):
    class Monitor(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.epoch = epoch
            _check_stop(should_stop, "phase-two training")

        def on_train_batch_end(self, batch, logs=None):
            _check_stop(should_stop, "phase-two training")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.t0, 2)}
            row.update({k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                        if k in logs})
            history.append(row)
            progress((epoch + 1) / max_epochs,
                     f"Phase two, epoch {epoch + 1}: loss {row.get('loss', float('nan')):.4f}, "
                     f"accuracy {row.get('accuracy', float('nan')):.4f}, validation accuracy "
                     f"{row.get('val_accuracy', float('nan')):.4f} ({row['seconds']:.1f} s)")

    return Monitor()


def train_phase_two(keras, patches, labels, values, patch_size, divisor, *, max_epochs, patience,
                    batch_size, seed, progress, should_stop):
    """Train the MLP / cCNN on the sampled patches; returns (model, history, stopped_early)."""
    from ...models.phase_two import build_phase_two

    lookup = np.zeros(max(values) + 1, np.int64)
    lookup[values] = np.arange(len(values))
    targets = lookup[labels]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_val = max(1, int(round(VALIDATION_SHARE * len(order))))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    batches = _patch_batches(keras)
    train = batches(patches, targets, train_idx, batch_size, divisor, True, seed)
    val = batches(patches, targets, val_idx, max(batch_size, 4096), divisor, False, seed)
    model = build_phase_two(patch_size, patches.shape[-1], len(values), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = []
    callbacks = [_monitor(keras, max_epochs, progress, should_stop, history)]
    stopper = None
    if patience > 0:
        stopper = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=int(patience),
                                                min_delta=MIN_DELTA, restore_best_weights=True)
        callbacks.append(stopper)
    # shuffle=False: the batches shuffle themselves from the seed; Keras would reorder them with
    # Python's process-wide random state, which a Dask worker's own threads draw from too.
    model.fit(train, validation_data=val, epochs=int(max_epochs), callbacks=callbacks, verbose=0,
              shuffle=False)
    # EarlyStopping puts the best epoch's weights back at the end of training.
    best = int(stopper.best_epoch) + 1 if stopper is not None and history else None
    return model, history, (stopper is not None and stopper.stopped_epoch > 0), best


def phase_two_predict(img, fcn, values, bands_of, out_band, prob_ds, nodata, progress, should_stop,
                      block_budget=BLOCK_MEMORY, block_cols=None):
    """Run the fully convolutional network over the image in strips; write the classes and,
    with ``prob_ds``, the probabilities strip by strip.

    ``values`` maps the network's outputs to class values; output i goes to band
    ``bands_of[i]`` (0-based) of ``prob_ds``, whose other bands get 0; nodata pixels get -1.
    """
    halo = len([layer for layer in fcn.layers if getattr(layer, "kernel_size", (1, 1)) == (3, 3)])
    channels = sum(int(layer.output.shape[-1]) for layer in fcn.layers)
    rows, cols = strip_rows(img.width, halo, channels, block_budget, block_cols)
    values = np.asarray(values, np.int64)
    dtype = np.uint16 if nodata > 255 else np.uint8
    n_strips = math.ceil(img.height / rows)
    divisor = float(img.divisor)
    shape = (1, min(rows, img.height) + 2 * halo, cols + 2 * halo, img.bands)
    for s, y0 in enumerate(range(0, img.height, rows)):
        _check_stop(should_stop, "phase-two prediction")
        y1 = min(img.height, y0 + rows)
        data, valid = padded_strip(img, y0, y1, halo)
        probs = np.empty((y1 - y0, img.width, len(values)), np.float32)
        for c0 in range(0, img.width, cols):
            c1 = min(img.width, c0 + cols)
            block = data[:, c0:c1 + 2 * halo].astype(np.float32) / divisor
            probs[:, c0:c1] = predict_batch(fcn, block[None], shape)[0]
        classes = values[np.argmax(probs, axis=-1)]
        classes[~valid] = nodata
        out_band.WriteArray(classes.astype(dtype), 0, y0)
        if prob_ds is not None:
            where = dict(zip(bands_of, range(len(values))))
            for b in range(prob_ds.RasterCount):
                layer = probs[..., where[b]] if b in where else np.zeros(valid.shape, np.float32)
                layer[~valid] = -1.0
                prob_ds.GetRasterBand(b + 1).WriteArray(layer, 0, y0)
        progress((s + 1) / n_strips)
    return halo


def modal_filter(src_ds, out_band, radius, nodata, progress, should_stop, rows=512):
    """A modal filter (disk of ``radius`` px) of a class raster, in strips with a halo; nodata
    pixels neither vote nor change."""
    from skimage.filters.rank import modal
    from skimage.morphology import disk

    footprint = disk(int(radius))
    height = src_ds.RasterYSize
    band = src_ds.GetRasterBand(1)
    n_strips = math.ceil(height / rows)
    for s, y0 in enumerate(range(0, height, rows)):
        _check_stop(should_stop, "smoothing")
        y1 = min(height, y0 + rows)
        lo, hi = max(0, y0 - radius), min(height, y1 + radius)
        block = band.ReadAsArray(0, lo, src_ds.RasterXSize, hi - lo)
        src_ds.FlushCache()
        valid = block != nodata
        smooth = modal(block, footprint, mask=valid)
        smooth[~valid] = nodata
        out_band.WriteArray(smooth[y0 - lo:y1 - lo], 0, y0)
        progress((s + 1) / n_strips)


# ------------------------------------------------------------------------------- validation

def score_maps(reference_ds, maps, top, should_stop, rows=512):
    """Confusion matrices of several class rasters against the reference, read in strips."""
    confusions = [Confusion(top) for _ in maps]
    height, width = reference_ds.RasterYSize, reference_ds.RasterXSize
    for y in range(0, height, rows):
        _check_stop(should_stop, "validation")
        n = min(rows, height - y)
        truth = read_classes(reference_ds, y, n, "validation raster")
        if truth.max(initial=0) > top:
            bad = sorted(set(np.unique(truth[truth > top]).tolist()))[:5]
            raise FjordError(f"The validation raster holds class values {bad} that the model's "
                             f"class schema does not have (values 1 to {top}); rasterise it with "
                             "the same schema.")
        for conf, ds in zip(confusions, maps):
            predicted = ds.GetRasterBand(1).ReadAsArray(0, y, width, n).astype(np.int64)
            ds.FlushCache()
            nodata = ds.GetRasterBand(1).GetNoDataValue()
            keep = predicted != nodata if nodata is not None else None
            conf.add(truth, predicted, keep)
    return confusions


def _preview(ds, step, classes):
    width, height = ds.RasterXSize, ds.RasterYSize
    bx, by = max(1, width // step), max(1, height // step)
    alg = gdal.GRIORA_NearestNeighbour if classes else gdal.GRIORA_Average
    bands = [1] if classes else list(range(1, min(3, ds.RasterCount) + 1))
    data = ds.ReadAsArray(0, 0, width, height, buf_xsize=bx, buf_ysize=by,
                          band_list=bands, resample_alg=alg)
    ds.FlushCache()
    return data


def csc_figure(path, image_ds, reference_ds, phase_one_ds, final_ds, schema, f1_one, f1_final,
               title):
    """The 4-panel figure: input (2-98 % stretch), reference, phase one and final maps."""
    from matplotlib.colors import ListedColormap

    from ..data.plotting import pyplot

    plt = pyplot()
    step = max(1, math.ceil(max(image_ds.RasterXSize, image_ds.RasterYSize) / 1200))
    rgb = _preview(image_ds, step, False).astype(np.float64)
    if rgb.ndim == 2:
        rgb = rgb[None]
    rgb = np.moveaxis(rgb, 0, -1)
    stretched = np.zeros(rgb.shape)
    for b in range(rgb.shape[-1]):
        lo, hi = np.percentile(rgb[..., b], (2, 98))
        stretched[..., b] = np.clip((rgb[..., b] - lo) / max(hi - lo, 1e-9), 0, 1)
    if stretched.shape[-1] == 1:
        stretched = stretched[..., 0]
    top = max(c["value"] for c in schema["classes"])
    colours = ["#000000"] * (top + 1)
    for c in schema["classes"]:
        colours[c["value"]] = c["color"]
    cmap = ListedColormap(colours)

    def classes(ds):
        data = _preview(ds, step, True).astype(np.float64)
        nodata = ds.GetRasterBand(1).GetNoDataValue()
        if nodata is not None:
            data[data == nodata] = np.nan
        return np.where(data > top, np.nan, data)

    panels = [("Input (2-98 % stretch)", stretched, None),
              ("Reference", classes(reference_ds), cmap),
              (f"Phase one (CNN): weighted F1 {f1_one:.3f}", classes(phase_one_ds), cmap),
              (f"CSC: weighted F1 {f1_final:.3f}", classes(final_ds), cmap)]
    h, w = stretched.shape[:2]
    size = (12, 12 * h / w + 1.6) if w >= h else (12 * w / h + 0.5, 13.6)
    fig, axes = plt.subplots(2, 2, figsize=size, layout="constrained")
    for ax, (name, data, cm) in zip(axes.ravel(), panels):
        if cm is None:
            ax.imshow(data, cmap="gray" if data.ndim == 2 else None, interpolation="nearest")
        else:
            ax.imshow(data, cmap=cm, vmin=-0.5, vmax=top + 0.5, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c["color"], edgecolor="#444444", label=c["name"])
               for c in schema["classes"]]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=9,
               frameon=False)
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------- job

def classify_csc(image, model, output, *, patch_size=7, samples_per_class=500_000, patience=10,
                 max_epochs=300, recognition_threshold=0.0, boundary_margin=0, tile_stride=None,
                 smoothing=4,
                 validation=None, output_phase_one=None, output_probabilities=None,
                 phase_two_model=None, report=None, report_name=None, device="auto", seed=0,
                 ignore_scale_mismatch=False, progress=None, should_stop=None):
    """CNN-supervised classification of ``image`` with the phase-one ``model``.

    Parameters
    ----------
    image : str
        Raster with the model's bands in the model's order.
    model : str
        The phase-one model file: a tile classifier (``trainphaseone``) or a U-Net
        (``trainunet``; an ensemble file averages its members), whose per-pixel probabilities
        over blended windows are then phase one.
    output : str
        Final class raster (GeoTIFF).
    patch_size : {1, 3, 5, 7, 15}
        Phase-two patch: 1 = MLP on the band values, else a compact CNN.
    samples_per_class : int
        Training pixels drawn per phase-one class (reduced when the patches would not fit
        :data:`PATCH_MEMORY`).
    patience : int
        Early stopping of phase two on the validation accuracy (0 = never).
    max_epochs : int
    recognition_threshold : float
        Phase-one pixels whose best (averaged) probability is below it stay unlabelled.
    boundary_margin : int
        Phase two trains only on phase-one pixels at least this many pixels (Euclidean) from a
        change of phase-one class (unlabelled pixels count as a class): the pixels along
        boundaries, where phase one errs most, are left out. 0: every labelled pixel.
    tile_stride : int, optional
        Distance between phase-one tiles (default the tile size; smaller strides average
        overlapping tiles).
    smoothing : int
        Radius of the modal filter of the final map (0 = none).
    validation : str, optional
        Reference class raster on the image's grid (0 = unlabelled): scores and figure.
    output_phase_one, output_probabilities, phase_two_model : str, optional
        The phase-one map; the phase-two probabilities (one float32 band per class of the
        schema); the trained per-image network (a Fjord model file).
    report : str, optional
        Folder for ``CNN_<image>.csv``, ``CSC_<image>.csv``, ``CSC_<image>.png`` and the
        phase-two training history (scores and figure need ``validation``).
    report_name : str, optional
        The ``<image>`` of the report file names (default: the image's file name stem).
    device : str
    seed : int
    ignore_scale_mismatch : bool
        Classify even when the image is not on the scale of the model's training statistics
        (:func:`fjord.core.learn.scale.check_scale`; a warning instead of an error).

    Returns
    -------
    dict with the output paths, class pixel counts, phase-two training summary, timings and,
    with ``validation``, the scores of both maps.
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    job = _CscJob(image, model, output, patch_size=patch_size, samples_per_class=samples_per_class,
                  patience=patience, max_epochs=max_epochs, threshold=recognition_threshold,
                  boundary_margin=boundary_margin,
                  tile_stride=tile_stride, smoothing=smoothing, validation=validation,
                  output_phase_one=output_phase_one, output_probabilities=output_probabilities,
                  phase_two_model=phase_two_model, report=report, report_name=report_name,
                  seed=seed, ignore_scale_mismatch=ignore_scale_mismatch, progress=progress,
                  should_stop=should_stop)
    return job.run(device)


class _CscJob:
    """One CSC run: checks at construction (no engine loaded), then :meth:`run`."""

    def __init__(self, image, model, output, *, patch_size, samples_per_class, patience,
                 max_epochs, threshold, boundary_margin, tile_stride, smoothing, validation,
                 output_phase_one,
                 output_probabilities, phase_two_model, report, report_name, seed, progress,
                 should_stop, ignore_scale_mismatch=False):
        from ...models.modelfile import read_metadata

        self.t_start = time.perf_counter()
        self.progress, self.should_stop = progress, should_stop
        meta = read_metadata(model)
        self.members = None  # the U-Net phase one's model files
        if meta["task"] == "segmentation":
            self.members, meta = read_unet_metadata(model)
            self.unet_meta = meta
        elif meta["task"] != "tiles":
            raise FjordError(f"{os.path.basename(model)} is a {meta['task']} model; CSC's phase "
                             "one is a tile classifier ('Train phase-one CNN') or a U-Net "
                             "('Train U-Net').")
        self.image, self.model, self.output = image, model, output
        self.patch_size, self.tile = int(patch_size), int(meta["tile_size"])
        self.stride = int(tile_stride) if tile_stride else self.tile
        self.img = ImageStrips(image)
        self.img.check_valid()
        if self.members:
            self.overlap = self.tile // 4
            check_window(meta, self.tile, self.overlap, "cosine", self.img)
        _check_inputs(self.img, meta, model, self.patch_size, self.stride, threshold, smoothing,
                      samples_per_class, max_epochs, patience, boundary_margin)
        from .scale import check_scale

        check_scale(self.img, meta, ignore_scale_mismatch, progress)
        self.samples_per_class, self.patience, self.max_epochs = (
            int(samples_per_class), int(patience), int(max_epochs))
        self.threshold, self.smoothing, self.seed = float(threshold), int(smoothing), int(seed)
        self.margin = int(boundary_margin)
        self.schema = meta["schema"]
        self.names = {int(c["value"]): c["name"] for c in self.schema["classes"]}
        self.schema_values = [int(c["value"]) for c in self.schema["classes"]]
        self.top = max(self.names)
        self.ds = {}
        if validation:
            self.ds["reference"] = _check_validation(validation, self.img, self.schema)
        inputs = {os.path.abspath(p) for p in [image, model, validation] + (self.members or [])
                  if p}
        _check_outputs([("class raster", output), ("phase-one map", output_phase_one),
                        ("probability raster", output_probabilities),
                        ("phase-two model", phase_two_model)], inputs)
        if phase_two_model and not phase_two_model.lower().endswith(".keras"):
            raise FjordError("The phase-two model file must end in .keras.")
        if report:
            try:
                os.makedirs(report, exist_ok=True)
            except OSError as exc:
                raise FjordError(f"Cannot create the report folder {report!r}: {exc.strerror}.") from None
        self.output_phase_one, self.output_probabilities = output_phase_one, output_probabilities
        self.phase_two_model, self.report = phase_two_model, report
        self.img.divisor = float(meta["scaling"]["divisor"])
        self.nodata = class_raster_type(self.schema)[1]
        self.stem = report_name or image_stem(image)
        self.timings = {}

    # ------------------------------------------------------------------------------ steps

    def run(self, device):
        from ...models import distribute
        from ...models.modelfile import cached_model

        self.keras = keras = distribute.start(device, self.progress)
        if self.members:
            self.meta = self.unet_meta
            self.net, self.windows_batch = unet_predictor(
                self.members, self.tile, self.img.bands, tta=False,
                columns=windows_per_row(self.img.width, self.tile, self.overlap))
        else:
            self.net, self.meta = cached_model(self.model, task="tiles")
        keras.utils.set_random_seed(self.seed)
        self.work = work_dir(self.output)
        try:
            with AtomicOutputs() as out:
                try:
                    result = self._steps(out)
                finally:
                    self.ds.clear()  # every dataset closed before files are renamed or removed
        finally:
            self.ds.clear()
            self.img.close()
            shutil.rmtree(self.work, ignore_errors=True)
        self.timings["total"] = time.perf_counter() - self.t_start
        result["timings"] = self.timings
        self.progress(1.0, f"CSC finished in {self.timings['total']:.1f} s.")
        return result

    def _timed(self, key, func, *args):
        t0 = time.perf_counter()
        value = func(*args)
        self.timings[key] = time.perf_counter() - t0
        return value

    def _steps(self, out):
        counts, strips = self._timed("phase_one", self._phase_one, out)
        train_counts, train_strips = counts, strips
        if self.margin:
            train_counts, train_strips = self._timed("boundary_margin",
                                                     self._away_from_boundaries, counts)
        present, per_class = self._allot(train_counts)
        patches, labels = self._timed("sampling", self._sample, train_strips, present, per_class)
        p2, history, early, best = self._timed("phase_two_training", self._train, patches, labels,
                                               sorted(present), per_class)
        del patches
        rate = self._timed("phase_two_prediction", self._predict, out, p2, sorted(present))
        if self.smoothing:
            self._timed("smoothing", self._smooth, out)
        write_class_sidecars(out, self.output, self.schema)
        if self.output_phase_one:
            write_class_sidecars(out, self.output_phase_one, self.schema)
        files = self._history_csv(out, history) if self.report else {}
        scores = {}
        if "reference" in self.ds:
            scores = self._timed("validation", self._validate, out, files, p2)
        if self.phase_two_model:
            self._save_phase_two(out, p2, sorted(present), per_class, history)
        val_acc = max((h.get("val_accuracy", 0) for h in history), default=0.0)
        return {"output": os.path.abspath(self.output),
                "phase_one": _abs(self.output_phase_one),
                "probabilities": _abs(self.output_probabilities),
                "phase_two_model": _abs(self.phase_two_model),
                "phase_one_counts": {int(v): int(n) for v, n in enumerate(counts) if n},
                "phase_one_model": "unet" if self.members else "tiles",
                "phase_two": {"network": p2.name, "patch_size": self.patch_size,
                              "classes": sorted(present), "samples_per_class": per_class,
                              "epochs_run": len(history), "stopped_early": bool(early),
                              "best_epoch": best, "validation_accuracy": float(val_acc),
                              "batch_size": self.batch_size},
                "scores": scores, "report": files, "pixels_per_second": rate}

    def _phase_one(self, out):
        path = out.add(self.output_phase_one) if self.output_phase_one else os.path.join(
            self.work, "phase_one.tif")
        self.ds["phase_one"] = create_class_raster(path, self.img.ds, self.schema,
                                                   description="phase one class")
        img = self.img
        span = span_progress(self.progress, 0, 0.25)
        if self.members:
            self.progress(0.0, f"Phase one: the U-Net {os.path.basename(self.model)}"
                               + (f" (ensemble of {len(self.members)})" if len(self.members) > 1
                                  else "")
                               + f" over {img.width} x {img.height} px in windows of "
                                 f"{self.tile} px overlapping by {self.overlap} px")
            counts, strips = unet_phase_one(img, self.net, self.meta, self.ds["phase_one"],
                                            (self.tile, self.overlap, self.windows_batch),
                                            self.threshold, span, self.should_stop)
        else:
            self.progress(0.0, f"Phase one: {self.tile} px tiles every {self.stride} px over "
                               f"{img.width} x {img.height} px")
            counts, strips = phase_one(img, self.net, self.meta, self.ds["phase_one"],
                                       self.stride, self.threshold, span, self.should_stop)
        self.ds["phase_one"].FlushCache()
        total = max(int(counts.sum()), 1)
        shares = [f"{self.names.get(v, v)} {100 * n / total:.1f} %" for v, n in enumerate(counts)
                  if n and v > 0]
        if counts[0]:
            shares.append(f"unlabelled {100 * counts[0] / total:.1f} %")
        self.progress(0.25, "Phase one: " + ", ".join(shares) + ".")
        return counts, strips

    def _away_from_boundaries(self, counts):
        """The phase-one pixels at least BOUNDARY_MARGIN px from a class change (a work raster
        that phase two samples from); returns its counts and strips."""
        path = os.path.join(self.work, "phase_two_training.tif")
        self.ds["training"] = create_class_raster(path, self.img.ds, self.schema,
                                                  description="phase two training pixels")
        kept, strips = away_from_boundaries(self.ds["phase_one"], self.ds["training"],
                                            self.margin, self.top, self.should_stop)
        share = kept[1:].sum() / max(int(counts[1:].sum()), 1)
        self.progress(None, f"Phase two trains on the {int(kept[1:].sum()):,} phase-one pixels "
                            f"at least {self.margin} px from a class change ({100 * share:.0f} % "
                            "of the labelled ones).")
        return kept, strips

    def _allot(self, counts):
        present, left_out, per_class = allot_samples(
            counts, self.samples_per_class, self.patch_size, self.img.bands,
            self.img.dtype.itemsize, self.progress)
        if len(present) < 2:
            found = ", ".join(f"{self.names.get(v, v)}: {int(n):,} px" for v, n in enumerate(counts)
                              if v > 0 and n) or "none"
            raise FjordError(
                f"Phase one found fewer than two classes with at least {MIN_CLASS_PIXELS} pixels "
                f"(found {found}), so phase two has nothing to learn from. Check that the model "
                "fits this image (same sensor, bands and scaling), lower RECOGNITION_THRESHOLD, "
                "or classify a larger area.")
        if left_out:
            self.progress(None, "Phase two leaves out classes with too few phase-one pixels: "
                          + ", ".join(f"{self.names.get(v, v)} ({n} px)" for v, n in left_out.items()))
        return present, per_class

    def _sample(self, strips, present, per_class):
        picks = draw_samples(strips, present, per_class, np.random.default_rng(self.seed))
        source = self.ds.get("training", self.ds["phase_one"])
        patches, labels, _, _ = gather_patches(self.img, source, strips, picks,
                                               self.patch_size, span_progress(self.progress, 0.25, 0.3),
                                               self.should_stop)
        k = self.patch_size
        self.progress(0.3, f"Phase two: {len(labels):,} patches of {k} x {k} px ({per_class:,} per "
                           f"class, {len(present)} classes).")
        return patches, labels

    def _train(self, patches, labels, values, per_class):
        # About SAMPLES_PER_CLASS / K² as published, but at least MIN_STEPS steps per epoch, so
        # that the MLP (K = 1) does not spend its early-stopping patience on a handful of steps.
        train = len(labels) - int(round(VALIDATION_SHARE * len(labels)))
        self.batch_size = max(16, min(math.ceil(per_class / self.patch_size ** 2),
                                      train // MIN_STEPS))
        t0 = time.perf_counter()
        p2, history, early, best = train_phase_two(
            self.keras, patches, labels, values, self.patch_size, self.img.divisor,
            max_epochs=self.max_epochs, patience=self.patience, batch_size=self.batch_size,
            seed=self.seed, should_stop=self.should_stop, progress=span_progress(self.progress, 0.3, 0.6))
        val_acc = max((h.get("val_accuracy", 0) for h in history), default=0.0)
        self.progress(0.6, f"Phase two: {p2.name}, {p2.count_params():,} parameters, batch "
                           f"{self.batch_size}, {len(history)} epochs"
                           + (" (stopped early" if early else " (")
                           + (f", best epoch {best} kept)" if best else ")")
                           + f", validation accuracy {val_acc:.4f}, "
                           f"{time.perf_counter() - t0:.1f} s.")
        return p2, history, early, best

    def _predict(self, out, p2, values):
        from ...models.phase_two import fully_convolutional, multiply_adds_per_pixel

        img = self.img
        t0 = time.perf_counter()
        fcn = fully_convolutional(p2)
        path = os.path.join(self.work, "phase_two.tif") if self.smoothing else out.add(self.output)
        self.ds["raw"] = create_class_raster(path, img.ds, self.schema)
        prob = None
        if self.output_probabilities:
            prob = self.ds["probabilities"] = create_gtiff(
                out.add(self.output_probabilities), img.width, img.height, len(self.schema_values),
                gdal.GDT_Float32, GTIFF_OPTIONS + ["INTERLEAVE=BAND", "PREDICTOR=3"])
            prob.SetGeoTransform(img.ds.GetGeoTransform())
            if img.ds.GetProjection():
                prob.SetProjection(img.ds.GetProjection())
            for b, v in enumerate(self.schema_values):
                band = prob.GetRasterBand(b + 1)
                band.SetDescription(self.names[v])
                band.SetNoDataValue(-1.0)
        phase_two_predict(img, fcn, values, [self.schema_values.index(v) for v in values],
                          self.ds["raw"].GetRasterBand(1), prob, self.nodata,
                          span_progress(self.progress, 0.6, 0.9), self.should_stop)
        self.ds["raw"].FlushCache()
        self.ds.pop("probabilities", None)
        prob = None
        seconds = time.perf_counter() - t0
        rate = img.width * img.height / seconds
        macs = multiply_adds_per_pixel(self.patch_size, img.bands, len(values))
        self.progress(0.9, f"Phase two predicted {img.width * img.height:,} pixels in {seconds:.1f} s "
                           f"({rate:,.0f} px/s, {rate * macs / 1e9:.2f} G multiply-adds/s).")
        return rate

    def _smooth(self, out):
        final = self.ds["final"] = create_class_raster(out.add(self.output), self.img.ds, self.schema)
        modal_filter(self.ds["raw"], final.GetRasterBand(1), self.smoothing, self.nodata,
                     span_progress(self.progress, 0.9, 0.95), self.should_stop)
        final.FlushCache()

    def _final(self):
        return self.ds["final"] if self.smoothing else self.ds["raw"]

    def _history_csv(self, out, history):
        path = os.path.join(self.report, f"phase_two_history_{self.stem}.csv")
        with open(out.add(path), "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                                              "seconds"], extrasaction="ignore")
            w.writeheader()
            w.writerows(history)
        return {"history": path}

    def _validate(self, out, files, p2):
        self.progress(0.95, "Validating against the reference classes")
        one, final = self.ds["phase_one"], self._final()
        conf_one, conf_final = score_maps(self.ds["reference"], [one, final], self.top,
                                          self.should_stop)
        scores = {"phase_one": class_scores(conf_one.matrix, self.names),
                  "csc": class_scores(conf_final.matrix, self.names)}
        if scores["csc"]["total"] == 0:
            self.progress(None, "The validation raster labels none of the image's valid pixels.")
        for key, label in (("phase_one", "Phase one"), ("csc", "CSC")):
            s = scores[key]
            self.progress(None, f"{label}: weighted F1 {s['weighted']['f1']:.4f}, macro F1 "
                                f"{s['macro']['f1']:.4f}, accuracy {s['accuracy']:.4f} over "
                                f"{s['total']:,} reference pixels")
        if self.report:
            for key, prefix in (("phase_one", "CNN"), ("csc", "CSC")):
                path = os.path.join(self.report, f"{prefix}_{self.stem}.csv")
                write_scores_csv(out.add(path), scores[key])
                files[key + "_csv"] = path
            path = os.path.join(self.report, f"CSC_{self.stem}.png")
            csc_figure(out.add(path), self.img.ds, self.ds["reference"], one, final, self.schema,
                       scores["phase_one"]["weighted"]["f1"], scores["csc"]["weighted"]["f1"],
                       f"{self.stem}: CSC with {p2.name.upper()} (K = {self.patch_size}), phase one "
                       f"{os.path.basename(self.model)}")
            files["figure"] = path
        return scores

    def _save_phase_two(self, out, p2, values, per_class, history):
        from ...models.modelfile import save_model

        meta = {"task": "patches", "architecture": p2.name, "bands": self.img.bands,
                "band_names": self.meta["band_names"], "tile_size": self.patch_size,
                "patch_size": self.patch_size, "scaling": self.meta["scaling"],
                "schema": self.schema, "outputs": values, "image": os.path.abspath(self.image),
                "phase_one_model": os.path.abspath(self.model),
                "training": {"samples_per_class": per_class, "epochs_run": len(history),
                             "history": history, "batch_size": self.batch_size}}
        save_model(p2, out.add(self.phase_two_model), meta)


def _abs(path):
    return os.path.abspath(path) if path else None
