"""Training datasets: tiles (CSC phase one) or image/mask windows (U-Net), streamed to disk.

The published CSC pipeline compiles every tile into one in-memory tensor; here the dataset is
built in two passes of bounded memory:

1. the class raster (and the image's nodata) is read in strips of ``tile_size`` rows; every
   candidate window is judged by the rules and only its position is kept;
2. thinning and the train/validation split work on positions; then the image is read again
   in strips and each kept window is written, with its augmented copies, to ``.npy`` files by
   plain sequential writes (see :mod:`.npyio`), while training statistics are accumulated.

Rules (tile classification)
    A tile is kept when at most ``max_unlabelled`` of its pixels are unlabelled (class 0,
    nodata, NaN) and its majority class covers at least ``purity`` of its labelled pixels; its
    label is that class. At most ``max_per_class`` distinct tiles per class are kept (random
    thinning), before augmentation.
Rules (segmentation)
    A window is kept when at least ``min_labelled`` of its pixels are labelled.
Augmentation
    Applied to the training split only (a rotated copy of a validation tile in the training set
    would leak): the 4 rotations, or the 8 rotations and flips, of image and labels together,
    labels exactly (no interpolation); ``noise`` adds uniform integer noise of at most that many
    DN to every copy but the original.
Split
    ``random``: tiles drawn at random (stratified by class for tiles). ``spatial``: the image is
    cut into square blocks that go whole to one split; a window that reaches into a block of the
    other split is dropped, so no pixel is shared between the splits.

The format is documented in the README (section "Dataset format").
"""

import json
import math
import os
import shutil
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..data import schema as schemas
from ..data.npyio import NpyWriter
from ..data.rasters import ImageStrips, open_raster, read_classes, same_grid
from ..errors import Cancelled, FjordError, never_stop, no_progress
from ..outputs import AtomicOutputs
from .normalise import PER_IMAGE, area_statistics, check_normalisation, fixed_bands, image_statistics, normalisation_of

gdal.UseExceptions()

MODES = ("tiles", "segmentation")
AUGMENTS = ("none", "rotations", "rotations+flips")
SPLITS = ("random", "spatial")
SPLIT_NAMES = ("train", "validation")
FORMAT = "fjord-dataset"
VERSION = 1
DEFAULT_TILE = {"tiles": 50, "segmentation": 256}


def dihedral(array, k):
    """The ``k``-th of the 8 rotations/flips (k = 0..7) of the first two axes of ``array``."""
    out = np.rot90(array, k % 4, axes=(0, 1))
    return np.flip(out, axis=1) if k >= 4 else out


def variants(augment):
    """The dihedral transforms an augmentation mode writes for each training tile."""
    return {"none": [0], "rotations": [0, 1, 2, 3], "rotations+flips": list(range(8))}[augment]


def scaling_rule(dtype, maximum):
    """The published scaling: DN / 255 when the image maximum is below 256, else DN / 8192;
    floating-point images are used as they are."""
    if np.issubdtype(np.dtype(dtype), np.floating):
        return {"rule": "none", "divisor": 1.0}
    if maximum < 256:
        return {"rule": "divide", "divisor": 255.0}
    return {"rule": "divide", "divisor": 8192.0}


# ---------------------------------------------------------------------------------------------
# Rasters


class _Image(ImageStrips):
    """The image and class raster pair, checked to share one grid."""

    def __init__(self, image, labels):
        super().__init__(image)
        self.lds = open_raster(labels, "class raster")
        self.labels_path = labels
        self.transform = self.ds.GetGeoTransform()
        self.crs = self.ds.GetProjection()
        if not same_grid(self.lds, self.ds, lenient_crs=True):
            raise FjordError(
                f"The class raster ({self.lds.RasterXSize} x {self.lds.RasterYSize} px, pixel "
                f"{self.lds.GetGeoTransform()[1]:g}) is not on the grid of the image ({self.width} x "
                f"{self.height} px, pixel {self.transform[1]:g}). Make it on the image's grid: run "
                "'Rasterize training labels' with this image as REFERENCE (or Raster > Align Rasters).")
        if self.lds.RasterCount != 1:
            raise FjordError("The class raster must have exactly one band.")
        self.check_valid()
        self.check_nodata = self.has_nodata
        self.read_image = self.read

    def read_labels(self, row, rows):
        return read_classes(self.lds, row, rows)

    def close(self):
        super().close()
        self.lds = None


# ---------------------------------------------------------------------------------------------
# Pass 1: judge every window by its labels


def window_counts(labels, valid, n_values, tile, stride):
    """Per-window pixel counts of each value (0 = unlabelled or invalid) along one strip.

    ``labels``/``valid``: (tile, width) arrays. Returns (n_windows, n_values) counts for the
    windows whose left columns are 0, stride, 2*stride, ...
    """
    lab = np.where(valid, labels, 0)
    width = lab.shape[1]
    starts = np.arange(0, width - tile + 1, stride)
    col = np.zeros((n_values, width + 1), np.int64)
    for v in np.unique(lab):
        col[v, 1:] = np.cumsum((lab == v).sum(axis=0))
    return (col[:, starts + tile] - col[:, starts]).T


def judge_tiles(counts, purity, max_unlabelled):
    """Apply the tile rules to window counts.

    Returns ``(classes, reasons)``: the majority class of each window and 0 (kept),
    1 (too many unlabelled pixels) or 2 (not pure enough).
    """
    total = counts.sum(axis=1)
    unlabelled = counts[:, 0]
    labelled = total - unlabelled
    if counts.shape[1] > 1:
        majority = np.argmax(counts[:, 1:], axis=1) + 1
    else:
        majority = np.zeros(len(counts), int)
    major = counts[np.arange(len(counts)), majority] if counts.shape[1] > 1 else np.zeros(len(counts))
    reasons = np.zeros(len(counts), np.int8)
    with np.errstate(invalid="ignore", divide="ignore"):
        pure = np.where(labelled > 0, major / np.maximum(labelled, 1), 0.0)
    reasons[pure < purity - 1e-9] = 2
    reasons[unlabelled > max_unlabelled * total + 1e-9] = 1
    reasons[labelled == 0] = 1
    return np.where(labelled > 0, majority, 0), reasons


def _scan(img, mode, tile, stride, n_values, rules, progress, should_stop):
    """Pass 1. Returns candidate rows, cols, classes, per-window counts and rejection tallies."""
    rows_out, cols_out, cls_out, counts_out = [], [], [], []
    rejected = {}
    starts = list(range(0, img.height - tile + 1, stride))
    for i, row in enumerate(starts):
        if should_stop():
            raise Cancelled()
        labels = img.read_labels(row, tile)
        valid = img.read_image(row, tile)[1] if img.check_nodata else np.ones(labels.shape, bool)
        counts = window_counts(labels, valid, n_values, tile, stride)
        cols = np.arange(0, img.width - tile + 1, stride)
        if mode == "tiles":
            classes, reasons = judge_tiles(counts, rules["purity"], rules["max_unlabelled"])
            for reason, name in ((1, "unlabelled"), (2, "purity")):
                for cls in classes[reasons == reason]:
                    rejected.setdefault(int(cls), {"unlabelled": 0, "purity": 0})[name] += 1
            keep = reasons == 0
        else:
            labelled = 1.0 - counts[:, 0] / (tile * tile)
            keep = labelled >= rules["min_labelled"] - 1e-9
            classes = np.zeros(len(counts), int)
            rejected.setdefault(0, {"min_labelled": 0})["min_labelled"] += int((~keep).sum())
        rows_out.append(np.full(int(keep.sum()), row))
        cols_out.append(cols[keep])
        cls_out.append(classes[keep])
        counts_out.append(counts[keep])
        progress(0.3 * (i + 1) / len(starts), None)
    counts_all = np.concatenate(counts_out) if counts_out else np.zeros((0, n_values), np.int64)
    return _cat(rows_out), _cat(cols_out), _cat(cls_out), counts_all, rejected


def _cat(parts):
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------
# Thinning and split


def thin(classes, max_per_class, rng):
    """Indices kept when each class is randomly thinned to at most ``max_per_class``."""
    keep = []
    for cls in np.unique(classes):
        idx = np.flatnonzero(classes == cls)
        if max_per_class and len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def auto_block_size(height, width, tile):
    """Blocks of about 8 tiles, fewer when the image would hold fewer than 16 blocks, but
    never under 2 tiles (windows that straddle blocks of both splits are dropped)."""
    return int(max(2 * tile, min(8 * tile, math.sqrt(height * width / 16.0))))


def split_windows(rows, cols, classes, tile, fraction, how, rng, block=None, shape=None):
    """Assign each window to 0 (train), 1 (validation) or -1 (dropped at a block border)."""
    n = len(rows)
    out = np.zeros(n, np.int8)
    if fraction <= 0 or n == 0:
        return out
    if how == "random":
        for cls in np.unique(classes):
            idx = rng.permutation(np.flatnonzero(classes == cls))
            out[idx[: int(round(fraction * len(idx)))]] = 1
        return out
    block = block or auto_block_size(shape[0], shape[1], tile)
    nbx = shape[1] // block + 1
    first = (rows // block) * nbx + cols // block
    last = ((rows + tile - 1) // block) * nbx + (cols + tile - 1) // block
    ids, per_block = np.unique(first, return_counts=True)
    # Blocks go to validation in random order, skipping those that would overshoot the share
    # by more than a quarter; the smallest block if every block is too big.
    in_val, total = set(), 0
    for j in rng.permutation(len(ids)):
        if total >= fraction * n:
            break
        if total + per_block[j] <= 1.25 * fraction * n:
            in_val.add(int(ids[j]))
            total += per_block[j]
    if not in_val and len(ids) > 1:
        in_val.add(int(ids[np.argmin(per_block)]))
    for i in range(n):
        b0r, b0c = divmod(int(first[i]), nbx)
        b1r, b1c = divmod(int(last[i]), nbx)
        sides = {int(br * nbx + bc) in in_val for br in range(b0r, b1r + 1) for bc in range(b0c, b1c + 1)}
        out[i] = -1 if len(sides) > 1 else (1 if sides.pop() else 0)
    return out


# ---------------------------------------------------------------------------------------------
# Statistics


class _Stats:
    """Running per-band mean/std and a bounded random sample for percentiles.

    The sample is one array allocated up front: many small arrays kept alive between the
    large temporary ones would fragment the heap and let memory creep up with the tile count.
    """

    def __init__(self, bands, sample_budget, n_tiles, pixels_per_tile, rng):
        self.n = np.zeros(bands)
        self.sum = np.zeros(bands)
        self.sumsq = np.zeros(bands)
        self.per_tile = min(max(1, int(math.ceil(sample_budget / max(n_tiles, 1)))), pixels_per_tile)
        self._sample = np.empty((self.per_tile * max(n_tiles, 1), bands), np.float32)
        self._filled = 0
        self.rng = rng

    def add(self, tile, valid):
        values = tile[valid].astype(np.float64)
        self.n += len(values)
        self.sum += values.sum(axis=0)
        self.sumsq += (values ** 2).sum(axis=0)
        take = min(self.per_tile, len(values), len(self._sample) - self._filled)
        if take > 0:
            pick = self.rng.choice(len(values), take, replace=False)
            self._sample[self._filled:self._filled + take] = values[pick]
            self._filled += take

    def sample(self):
        return self._sample[:self._filled]


def summarise_stats(n, total, sumsq, sample, divisor):
    """Statistics of the scaled values (what the networks see)."""
    n = np.maximum(n, 1)
    mean = total / n
    std = np.sqrt(np.maximum(sumsq / n - mean ** 2, 0))
    sample = sample / divisor
    pct = (np.percentile(sample, [2, 50, 98], axis=0) if len(sample)
           else np.zeros((3, len(mean))))
    return {"of": "scaled values of the training split", "mean": (mean / divisor).tolist(),
            "std": (std / divisor).tolist(), "p2": pct[0].tolist(), "median": pct[1].tolist(),
            "p98": pct[2].tolist(), "pixels": int(n.min()),
            "sums": {"n": n.tolist(), "sum": total.tolist(), "sumsq": sumsq.tolist()}}


# ---------------------------------------------------------------------------------------------
# The builder


def read_dataset(folder):
    """The ``dataset.json`` of a complete dataset folder (FjordError otherwise)."""
    path = os.path.join(folder, "dataset.json")
    if not os.path.isfile(path):
        raise FjordError(f"{folder!r} holds no Fjord dataset (no dataset.json). Make one with "
                         "'Make training tiles'.")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT or not meta.get("complete"):
        raise FjordError(f"{folder!r} holds no complete Fjord dataset; build it again.")
    return meta


def _schema_for(img, values, existing=None):
    schema = schemas.read_raster_schema(img.labels_path)
    present = sorted(int(v) for v in values if v)
    if schema is None:
        schema = schemas.schema_from_values(present) if present else None
    if schema is not None:
        known = {c["value"] for c in schema["classes"]}
        missing = [v for v in present if v not in known]
        if missing:
            raise FjordError(f"The class raster holds values {missing[:10]} that its class schema "
                             f"({', '.join(c['name'] for c in schema['classes'])}) does not list. "
                             "Fix the schema or the labels.")
    if existing is not None and schema is not None:
        merged = {c["value"]: c for c in existing["classes"]}
        for cls in schema["classes"]:
            old = merged.get(cls["value"])
            if old is not None and old["name"].lower() != cls["name"].lower():
                raise FjordError(f"Class {cls['value']} is {old['name']!r} in the dataset but "
                                 f"{cls['name']!r} in the new class raster; use one class schema.")
            merged.setdefault(cls["value"], cls)
        schema = dict(existing, classes=[merged[v] for v in sorted(merged)])
    return schema


@dataclass(frozen=True)
class _Settings:
    """The choices of one :func:`build_dataset` call."""

    mode: str
    tile: int
    stride: int
    rules: dict  # purity, max_unlabelled, min_labelled
    augment: str
    noise: int
    max_per_class: int
    fraction: float
    split: str
    block_size: int
    seed: int
    normalisation: str = "dataset"

    @property
    def tiles(self):
        return self.mode == "tiles"

    def rule_text(self):
        if self.tiles:
            return (f"at most {self.rules['max_unlabelled']:.0%} unlabelled and a majority class "
                    f"of at least {self.rules['purity']:.0%}")
        return f"at least {self.rules['min_labelled']:.0%} labelled"


def build_dataset(image, labels, output, *, mode="tiles", tile_size=None, stride=None, purity=0.95,
                  max_unlabelled=0.10, min_labelled=0.25, augment="none", noise=0,
                  max_per_class=5000, validation_fraction=0.2, split="random", block_size=None,
                  seed=0, append=False, normalisation="dataset", progress=None, should_stop=None):
    """Build (or extend) a training dataset folder from an image and its class raster.

    Parameters
    ----------
    image, labels : str
        Image and class raster on the same grid (0 = unlabelled).
    output : str
        Dataset folder.
    mode : {'tiles', 'segmentation'}
        Tile classification (one label per tile) or segmentation (image/mask pairs).
    tile_size, stride : int, optional
        Window size and step in pixels (defaults: 50 and 25 for tiles, 256 and 128 for
        segmentation).
    purity, max_unlabelled : float
        Tile rules (see the module documentation).
    min_labelled : float
        Segmentation rule: least labelled fraction of a window.
    augment : {'none', 'rotations', 'rotations+flips'}
    noise : int
        Uniform integer noise (DN) added to augmented copies.
    max_per_class : int
        Tiles: most distinct tiles per class (0 = all).
    validation_fraction : float
    split : {'random', 'spatial'}
    block_size : int, optional
        Spatial split: block side in pixels (default: about 8 tiles, at least 16 blocks).
    seed : int
    append : bool
        Add this image/label pair to the dataset already in ``output``.
    normalisation : {'dataset', 'image', 'range'}
        How values become network input (:mod:`.normalise`): the training data's statistics,
        or each image's own robust statistics (stored per image in ``sources``).

    Returns
    -------
    dict: the dataset description (also written as ``dataset.json``), plus ``added`` (the counts
    of this call) and ``rejected`` (candidate windows per class and the rule that rejected them).
    """
    settings = _settings(mode, tile_size, stride, augment, split, validation_fraction, dict(
        purity=float(purity), max_unlabelled=float(max_unlabelled),
        min_labelled=float(min_labelled)), int(noise), int(max_per_class or 0), block_size, seed,
        check_normalisation(normalisation))
    existing = _existing_dataset(output, image, labels, append, settings)
    img = _Image(image, labels)
    # Every block is read once per strip and dropped after it: a small block cache is enough,
    # and keeps memory flat whatever the image size.
    cache = gdal.GetCacheMax()
    gdal.SetCacheMax(min(cache, 16 * 2**20))
    try:
        return _DatasetBuild(img, output, existing, settings, progress or no_progress,
                             should_stop or never_stop).run()
    finally:
        img.close()
        gdal.SetCacheMax(cache)


def _settings(mode, tile_size, stride, augment, split, fraction, rules, noise, max_per_class,
              block_size, seed, normalisation):
    if mode not in MODES:
        raise FjordError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    if augment not in AUGMENTS:
        raise FjordError(f"Unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTS)}.")
    if split not in SPLITS:
        raise FjordError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    tile = int(tile_size or DEFAULT_TILE[mode])
    stride = int(stride or max(1, tile // 2))
    if tile < 2 or stride < 1:
        raise FjordError("The tile size must be at least 2 and the stride at least 1 pixel.")
    if not 0 <= fraction < 1:
        raise FjordError("The validation fraction must be at least 0 and below 1.")
    return _Settings(mode, tile, stride, rules, augment, noise, max_per_class, float(fraction),
                     split, block_size, seed, normalisation)


def _existing_dataset(output, image, labels, append, settings):
    """The description of the dataset to append to; None when building from scratch."""
    meta_path = os.path.join(output, "dataset.json")
    if not os.path.isfile(meta_path):
        if append and os.path.isdir(output) and os.listdir(output):
            raise FjordError(f"APPEND is on but {output!r} holds no Fjord dataset.")
        return None
    with open(meta_path, encoding="utf-8") as f:
        existing = json.load(f)
    first = (existing.get("sources") or [{}])[0]
    same_source = (first.get("image") == os.path.abspath(image)
                   and first.get("labels") == os.path.abspath(labels))
    if not append and not (same_source and len(existing["sources"]) == 1):
        raise FjordError(
            f"{output!r} already holds a dataset built from other data. Choose an empty "
            "folder, or turn on APPEND to add this image to it.")
    if not append:
        return None  # rebuilt from scratch
    if not existing.get("complete"):
        raise FjordError(f"The dataset in {output!r} is incomplete; build it again without APPEND.")
    if existing["mode"] != settings.mode or existing["tile_size"] != settings.tile:
        raise FjordError(f"The dataset in {output!r} holds {existing['mode']} of "
                         f"{existing['tile_size']} px; append with the same mode and tile size.")
    if normalisation_of(existing) != settings.normalisation:
        raise FjordError(f"The dataset in {output!r} uses the {normalisation_of(existing)!r} "
                         "normalisation; append with the same NORMALISATION.")
    return existing


class _DatasetBuild:
    """One run of :func:`build_dataset` on an opened image, as named steps."""

    def __init__(self, img, output, existing, settings, progress, should_stop):
        self.img, self.output, self.existing, self.s = img, output, existing, settings
        self.progress, self.should_stop = progress, should_stop
        self.rng = np.random.default_rng(settings.seed)

    def run(self):
        self.check_image()
        per_image = self.s.normalisation in PER_IMAGE
        self.image_stats = image_statistics(self.img) if per_image else None
        self.area_stats = area_statistics(self.img, self.s.seed) if per_image else None
        self.scan()
        self.choose_windows()
        self.choose_types()
        self.check_disk()
        with AtomicOutputs() as out:
            self.write_windows(out)
            self.warn_clipped_noise()
            self.progress(0.95, "Writing dataset.json")
            meta = self.describe()
            np.save(out.add(os.path.join(self.output, "train", "stats_sample.npy")),
                    meta.pop("_sample"))
            # dataset.json comes last: it marks the dataset complete.
            with open(out.add(os.path.join(self.output, "dataset.json")), "w",
                      encoding="utf-8") as f:
                json.dump(meta, f, indent=2, ensure_ascii=False)
        self.progress(1.0, None)
        meta["added"] = self.added
        meta["rejected"] = {str(k): v for k, v in self.rejected.items()}
        return meta

    # ---------------------------------------------------------------- steps before writing

    def check_image(self):
        img, existing, tile = self.img, self.existing, self.s.tile
        if tile > img.width or tile > img.height:
            raise FjordError(f"The tile size ({tile} px) is larger than the image "
                             f"({img.width} x {img.height} px); choose a smaller TILE_SIZE.")
        if existing is None:
            return
        if existing["bands"] != img.bands:
            raise FjordError(f"The dataset has {existing['bands']} bands but this image has "
                             f"{img.bands}; every image of a dataset needs the same bands.")
        if np.dtype(existing["dtype"]) != img.dtype:
            raise FjordError(f"The dataset stores {existing['dtype']} but this image is "
                             f"{img.dtype}; convert it first.")

    def scan(self):
        """Pass 1: the candidate windows, the schema and the classes they hold."""
        img, s = self.img, self.s
        self.progress(0.0, f"Scanning {img.width} x {img.height} px for {s.mode} of {s.tile} px, "
                           f"stride {s.stride}")
        top = int(np.ceil(img.lds.GetRasterBand(1).ComputeRasterMinMax(False)[1]))
        img.lds.FlushCache()
        self.n_values = max(top, 1) + 1
        self.rows, self.cols, self.classes, counts, self.rejected = _scan(
            img, s.mode, s.tile, s.stride, self.n_values, s.rules, self.progress, self.should_stop)
        present = np.flatnonzero(counts.sum(axis=0)[1:]) + 1 if len(counts) else []
        found = np.unique(self.classes) if s.tiles else present
        self.schema = _schema_for(img, found, self.existing["schema"] if self.existing else None)
        if len(self.rows) == 0:
            raise FjordError(f"No {s.tile} px window passes the rules ({s.rule_text()}). "
                             f"Candidates per majority class: {self.rejections() or 'none'}. "
                             "Use smaller tiles, relax the rules, or add labels.")
        self.all_classes = {int(c) for c in found}
        if self.existing is not None:
            self.all_classes |= {int(k) for k in self.existing["counts"]["train"]}
        if len(self.all_classes) < 2:
            only = _class_name(self.schema, next(iter(self.all_classes)))
            raise FjordError(f"Only one class ({only}) has training windows; a classifier needs "
                             "at least two. Add labels of other classes.")

    def rejections(self):
        return "; ".join(
            f"{_class_name(self.schema, c)}: "
            + ", ".join(f"{n} rejected by {r}" for r, n in why.items() if n)
            for c, why in sorted(self.rejected.items()))

    def choose_windows(self):
        """Thin the tiles per class, then split the windows into training and validation."""
        s = self.s
        if s.tiles:
            kept = thin(self.classes, s.max_per_class, self.rng)
            self.rows, self.cols, self.classes = self.rows[kept], self.cols[kept], self.classes[kept]
        self.which = split_windows(self.rows, self.cols, self.classes, s.tile, s.fraction, s.split,
                                   self.rng, block=s.block_size,
                                   shape=(self.img.height, self.img.width))
        self.dropped = int((self.which == -1).sum())
        if not (self.which == 0).any():
            raise FjordError(
                f"No training window is left after the {s.split} split ({len(self.which)} "
                f"windows, {self.dropped} dropped at block borders). Use a random split, smaller "
                "windows or blocks, a lower validation fraction, or a larger image.")
        self.k_variants = variants(s.augment)
        self.sizes = {0: int((self.which == 0).sum()) * len(self.k_variants),
                      1: int((self.which == 1).sum())}

    def choose_types(self):
        """The stored image type and its scaling rule (the dataset's when appending)."""
        img, existing = self.img, self.existing
        self.dtype = img.dtype if existing is None else np.dtype(existing["dtype"])
        if existing is not None:
            self.scaling = existing["scaling"]
        else:
            maximum = max(img.ds.GetRasterBand(b + 1).ComputeRasterMinMax(False)[1]
                          for b in range(img.bands))
            img.ds.FlushCache()
            self.scaling = scaling_rule(self.dtype, maximum)
        self.label_dtype = np.uint8 if max(self.all_classes) < 256 else np.uint16

    def check_disk(self):
        tile, per_pixel = self.s.tile, self.img.bands * self.dtype.itemsize
        need = sum(self.sizes.values()) * tile * tile * (per_pixel + (0 if self.s.tiles else 1))
        os.makedirs(self.output, exist_ok=True)
        free = shutil.disk_usage(self.output).free
        if need > free:
            raise FjordError(f"The dataset needs {need / 2**20:.0f} MiB but {self.output!r} has "
                             f"only {free / 2**20:.0f} MiB free. Free some space, use a larger "
                             "stride, or thin harder (MAX_PER_CLASS).")

    # --------------------------------------------------------------------- pass 2: writing

    def write_windows(self, out):
        """Pass 2: read the image again in strips and write each kept window and its copies."""
        s, img = self.s, self.img
        self.stats = _Stats(img.bands, 200_000, max(self.sizes[0] // len(self.k_variants), 1),
                            s.tile * s.tile, self.rng)
        self.added = {name: {} for name in SPLIT_NAMES}
        self.noisy = [0, 0]  # augmented values clipped to the data type, augmented values
        writers = self.open_writers(out)
        try:
            order = np.argsort(self.rows * img.width + self.cols, kind="stable")
            strip_row = strip = None
            for n, i in enumerate(order):
                split = int(self.which[i])
                if split < 0:
                    continue
                if self.rows[i] != strip_row:
                    if self.should_stop():
                        raise Cancelled()
                    strip_row = int(self.rows[i])
                    strip = self.read_strip(strip_row)
                    self.progress(0.3 + 0.65 * n / len(order), None)
                self.write_window(writers[split], split, strip, i)
            _close_all(writers, check=True)
        finally:
            _close_all(writers)

    def open_writers(self, out):
        """Image, label and position writers of each split, under partial names."""
        s, shard = self.s, len(self.existing["sources"]) if self.existing else 0
        label_shape = () if s.tiles else (s.tile, s.tile)
        self.paths, writers = {}, {}
        for split, name in enumerate(SPLIT_NAMES):
            os.makedirs(os.path.join(self.output, name), exist_ok=True)
            base = os.path.join(self.output, name, f"{shard:03d}")
            paths = self.paths[name] = {"images": base + "_images.npy",
                                        "labels": base + "_labels.npy",
                                        "positions": base + "_positions.npy"}
            n = self.sizes[split]
            writers[split] = (
                NpyWriter(out.add(paths["images"]), n, (s.tile, s.tile, self.img.bands),
                          self.dtype),
                NpyWriter(out.add(paths["labels"]), n, label_shape, self.label_dtype),
                NpyWriter(out.add(paths["positions"]), n, (3,), np.int32))
        return writers

    def read_strip(self, row):
        """Image, validity and (segmentation) labels of the ``tile`` rows from ``row``."""
        image, valid = self.img.read_image(row, self.s.tile)
        labels = None if self.s.tiles else self.img.read_labels(row, self.s.tile)
        return image, valid, labels

    def write_window(self, writers, split, strip, i):
        """Window ``i`` and, in the training split, its augmented copies."""
        s = self.s
        r, c = int(self.rows[i]), int(self.cols[i])
        image, valid, labels = (None if a is None else a[:, c:c + s.tile] for a in strip)
        data = image.astype(self.dtype, copy=True)
        data[~valid] = 0
        if s.tiles:
            target = np.array(self.classes[i], self.label_dtype)
        else:
            target = np.where(valid, labels, 0).astype(self.label_dtype)
        if split == 0:
            self.stats.add(data, valid)
        copies = self.k_variants if split == 0 else [0]
        for k in copies:
            images_w, labels_w, pos_w = writers
            images_w.write(self.with_noise(dihedral(data, k), k)[None])
            labels_w.write((target if s.tiles else dihedral(target, k))[None])
            pos_w.write(np.array([[r, c, k]], np.int32))
        self.count(split, target, len(copies))

    def with_noise(self, tile, k):
        """``tile`` with the augmentation noise, for copies other than the original."""
        noise = self.s.noise
        if not (k and noise):
            return tile
        tile = tile + self.rng.integers(-noise, noise + 1, size=tile.shape)
        self.noisy[1] += tile.size
        if np.issubdtype(self.dtype, np.integer):
            lo, hi = np.iinfo(self.dtype).min, np.iinfo(self.dtype).max
            self.noisy[0] += int(((tile < lo) | (tile > hi)).sum())
            tile = np.clip(tile, lo, hi)
        return tile

    def count(self, split, target, copies):
        """Add a window's tiles (tiles) or labelled pixels (segmentation) to ``added``."""
        added = self.added[SPLIT_NAMES[split]]
        if self.s.tiles:
            per = {int(target): copies}
        else:
            hist = np.bincount(target.ravel(), minlength=self.n_values)
            per = {int(v): int(hist[v]) * copies for v in np.flatnonzero(hist[1:]) + 1}
        for v, n in per.items():
            added[str(v)] = added.get(str(v), 0) + n

    def warn_clipped_noise(self):
        clipped, total = self.noisy
        if clipped and clipped >= 0.01 * total:
            info = np.iinfo(self.dtype)
            self.progress(None, f"Warning: NOISE {self.s.noise} pushed {clipped / total:.1%} of "
                                f"the augmented values beyond the data type's range ({info.min:g} "
                                f".. {info.max:g}), where they were clipped. NOISE is in the "
                                "image's units; choose a few percent of the bands' range (see the "
                                "statistics in dataset.json).")

    # ------------------------------------------------------------------------ description

    def describe(self):
        """``dataset.json`` (with ``_sample``, the statistics sample, to store beside it)."""
        s, img, existing = self.s, self.img, self.existing
        sources = (existing["sources"] if existing else []) + [self.source()]
        n, total, sumsq, sample = self.statistics()
        block_size = s.block_size or (auto_block_size(img.height, img.width, s.tile)
                                      if s.split == "spatial" else None)
        return {
            "format": FORMAT, "version": VERSION, "complete": True, "mode": s.mode,
            "tile_size": s.tile, "stride": s.stride, "bands": img.bands,
            "band_names": existing["band_names"] if existing else img.band_names,
            "dtype": self.dtype.name, "label_dtype": np.dtype(self.label_dtype).name,
            "labels": ("one class value per tile" if s.tiles
                       else "class mask per window, 0 = unlabelled"),
            "fill_value": 0, "scaling": self.scaling, "normalisation": s.normalisation,
            "fixed_bands": (existing.get("fixed_bands", []) if existing  # read as before
                            else fixed_bands(img.band_names, s.normalisation)),
            "statistics": summarise_stats(n, total, sumsq, sample, self.scaling["divisor"]),
            "schema": self.schema, "counts": self.total_counts(),
            "counts_unit": "tiles" if s.tiles else "labelled pixels",
            "windows": {name: sum(src["windows"][name] for src in sources)
                        for name in SPLIT_NAMES},
            "augmentation": {"on_disk": s.augment, "variants": self.k_variants,
                             "noise": s.noise, "applied_to": "train"},
            "rules": dict(s.rules, max_per_class=s.max_per_class, validation_fraction=s.fraction,
                          split=s.split, block_size=block_size, seed=s.seed),
            "crs": existing["crs"] if existing else img.crs,
            "sources": sources,
            "shards": {name: [src["shards"][name] for src in sources] for name in SPLIT_NAMES},
            "_sample": sample,
        }

    def source(self):
        """The entry of this image in ``sources``."""
        img = self.img
        rel = {name: {k: os.path.relpath(v, self.output) for k, v in p.items()}
               for name, p in self.paths.items()}
        return {"image": os.path.abspath(img.path), "labels": os.path.abspath(img.labels_path),
                "size": [img.width, img.height], "geotransform": list(img.transform),
                "crs": img.crs, "band_names": img.band_names, "shards": rel,
                "counts": self.added,
                "windows": {SPLIT_NAMES[s]: n for s, n in self.sizes.items()},
                "dropped_at_block_borders": self.dropped,
                **({"image_statistics": self.image_stats,
                    "area_statistics": self.area_stats} if self.image_stats else {})}

    def statistics(self):
        """Sums and sample of the training split, the dataset's own added when appending."""
        st = self.stats
        n, total, sumsq, sample = st.n, st.sum, st.sumsq, st.sample()
        if self.existing is None:
            return n, total, sumsq, sample
        old = self.existing["statistics"]["sums"]
        n, total, sumsq = (n + np.array(old["n"]), total + np.array(old["sum"]),
                           sumsq + np.array(old["sumsq"]))
        old_sample = np.load(os.path.join(self.output, "train", "stats_sample.npy"))
        sample = np.concatenate([old_sample, sample])
        if len(sample) > 400_000:
            pick = np.random.default_rng(self.s.seed).choice(len(sample), 400_000, replace=False)
            sample = sample[pick]
        return n, total, sumsq, sample

    def total_counts(self):
        counts = {name: dict(self.existing["counts"][name]) if self.existing else {}
                  for name in SPLIT_NAMES}
        for name in SPLIT_NAMES:
            for k, v in self.added[name].items():
                counts[name][k] = counts[name].get(k, 0) + v
            counts[name] = {k: counts[name][k] for k in sorted(counts[name], key=int)}
        return counts


def _close_all(writers, check=False):
    """Close every writer; with ``check``, fail when one got fewer windows than planned."""
    for ws in writers.values():
        for w in ws:
            w.close()
            if check and w.written != w.n:
                raise FjordError(f"{w.path}: {w.written} of {w.n} windows written.")


def _class_name(schema, value):
    if schema:
        for cls in schema["classes"]:
            if cls["value"] == value:
                return cls["name"]
    return "unlabelled" if value == 0 else f"class {value}"


def make_tiles(image, labels, output, *, progress=None, should_stop=None, **options):
    """:func:`build_dataset`, then the preview figure ``preview.png`` in the dataset folder.

    This is the worker job of ``fjord:maketiles``. Returns the summary: the dataset description
    without its per-source details, the counts added, the rejection tallies and the preview path.
    """
    from .preview import write_preview

    progress = progress or no_progress
    meta = build_dataset(image, labels, output, progress=progress, should_stop=should_stop, **options)
    path = os.path.join(output, "preview.png")
    with AtomicOutputs() as out:
        write_preview(output, meta, out.add(path), seed=options.get("seed", 0))
    summary = {k: v for k, v in meta.items() if k not in ("sources",)}
    summary["preview"] = path
    summary["sources"] = len(meta["sources"])
    return summary


def count_table(meta, added=False):
    """Per-class counts per split as lines of text."""
    counts = meta["added"] if added else meta["counts"]
    unit = meta["counts_unit"]
    lines = [f"{'class':<24} {'train':>12} {'validation':>12}   ({unit})"]
    for cls in meta["schema"]["classes"]:
        key = str(cls["value"])
        lines.append(f"{cls['value']:>3} {cls['name']:<20} {counts['train'].get(key, 0):>12,} "
                     f"{counts['validation'].get(key, 0):>12,}")
    return lines
