"""Reading a training dataset back for Keras: a ``keras.utils.PyDataset`` over the shards.

Tiles are read from the memory-mapped ``.npy`` shards batch by batch (only the batch is in
memory), scaled by the dataset's rule, optionally shuffled every epoch and augmented on the fly
with random rotations and flips (labels transformed exactly with the images), so that
augmentation need not multiply the disk.
"""

import os

import numpy as np

from ...models.engine import keras
from ..data.npyio import open_npy
from ..errors import FjordError
from ..prepare.normalise import normaliser
from ..prepare.tiles import SPLIT_NAMES, dihedral, read_dataset, variants


class TileDataset(keras.utils.PyDataset):
    """Batches ``(x, y)`` of one split of a Fjord dataset.

    Parameters
    ----------
    folder : str
        Dataset folder (with ``dataset.json``).
    split : {'train', 'validation'}
    batch_size : int
    shuffle : bool
        Reshuffle the order every epoch (seeded by ``seed`` and the epoch number).
    augment : {'none', 'rotations', 'rotations+flips'}
        Random transform per tile, drawn anew every epoch.
    one_hot : bool
        Labels as one-hot vectors (tiles) or one-hot masks (segmentation) over the schema's
        classes, in schema order; else class indices (0..n_classes-1; segmentation masks keep
        0 for unlabelled and number the classes from 1). One-hot masks are all zero where a
        pixel is unlabelled, so it adds nothing to a categorical cross-entropy.
    seed : int
    standardise : bool
        Under the dataset's ``dataset`` normalisation: per-band z-scores with its training
        statistics instead of the scaled values (the U-Net's input). Under ``image``, every
        tile is standardised by the statistics of the image it comes from, either way
        (:mod:`fjord.core.prepare.normalise`).
    crops : sequence of int, optional
        Random crops: the batches take these sizes in turn (from a random first one each
        epoch, so consecutive batches differ and Keras, which reads the shapes of the first
        two batches, sees the size vary) and each window of a batch a random crop of that
        size (image and mask together), anew every epoch.
    radiometric : bool
        Random radiometric change per window, anew every epoch: each band's standardised values
        times a gain and plus an offset (log-gain and offset normal, 0.2 and 0.3 standard
        deviations, half shared by all bands, half per band), as another date, sensor or
        atmosphere gives. Meant for standardised input (``standardise``).
    area_statistics : bool
        Under a per-image rule: each window standardised, anew every epoch, by the statistics
        of its whole image or of one of the image's random sub-areas recorded in the dataset
        (:func:`fjord.core.prepare.normalise.area_statistics`), as if the image's class mix
        were another.
    shard : (int, int), optional
        ``(index, count)``: this process's share in a multi-process run, every ``count``-th
        tile of the (shuffled) order from ``index`` on. Every share has the same length and
        holds whole batches only, so all processes step together.
    **kwargs
        Passed to ``PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """

    def __init__(self, folder, split="train", batch_size=50, shuffle=True, augment="none",
                 one_hot=True, seed=0, shard=None, standardise=False, crops=None,
                 radiometric=False, area_statistics=False, **kwargs):
        super().__init__(**kwargs)
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}")
        self.meta = read_dataset(folder)
        self.folder = folder
        self.split = split
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.transforms = variants(augment)
        self.one_hot = one_hot
        self.seed = seed
        self.shard = shard
        # Normalisers per shard (shard i of a split holds the windows of source image i): the
        # whole image's, then those of its sub-areas when windows draw among them.
        self._normalise = [
            [normaliser(self.meta, stats, standardise)
             for stats in [source.get("image_statistics")]
             + (_areas_of(source) if area_statistics else [])]
            for source in self.meta["sources"]]
        self.crops = [int(c) for c in crops] if crops else None
        self.radiometric = bool(radiometric)
        self.values = [c["value"] for c in self.meta["schema"]["classes"]]
        lookup = np.zeros(max(self.values) + 1, np.int64)
        lookup[self.values] = np.arange(len(self.values))
        self._lookup = lookup
        self._images, self._labels = [], []
        for shard in self.meta["shards"][split]:
            self._images.append(open_npy(os.path.join(folder, shard["images"])))
            self._labels.append(open_npy(os.path.join(folder, shard["labels"])))
        sizes = [len(a) for a in self._images]
        self._shard = np.repeat(np.arange(len(sizes)), sizes)
        self._index = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, int)
        self._epoch = 0
        self._reorder()

    @property
    def num_classes(self):
        return len(self.values)

    def __len__(self):
        return int(np.ceil(len(self._order) / self.batch_size))

    def _reorder(self):
        rng = np.random.default_rng((self.seed, self._epoch))
        order = rng.permutation(len(self._index)) if self.shuffle else np.arange(len(self._index))
        self._first_crop = int(rng.integers(len(self.crops))) if self.crops else 0
        if self.shard is not None:
            index, count = self.shard
            length = len(order) // count // self.batch_size * self.batch_size
            order = order[index::count][:length]
        self._order = order

    def on_epoch_end(self):
        self._epoch += 1
        self._reorder()

    def __getitem__(self, batch):
        picks = self._order[batch * self.batch_size:(batch + 1) * self.batch_size]
        rng = np.random.default_rng((self.seed, self._epoch, batch))
        xs, ys = [], []
        for p in picks:
            s, i = self._shard[p], self._index[p]
            choices = self._normalise[s]
            normalise = choices[int(rng.integers(len(choices)))] if len(choices) > 1 else choices[0]
            x = normalise(np.array(self._images[s][i], np.float32))  # a copy
            y = np.asarray(self._labels[s][i])
            if len(self.transforms) > 1:
                k = int(rng.choice(self.transforms))
                x = dihedral(x, k)
                if y.ndim == 2:
                    y = dihedral(y, k)
            xs.append(x)
            ys.append(y)
        if self.crops:
            size = self.crops[(self._first_crop + batch) % len(self.crops)]
            for j, (x, y) in enumerate(zip(xs, ys)):
                r, c = (int(v) for v in rng.integers(0, np.array(x.shape[:2]) - size + 1))
                xs[j], ys[j] = x[r:r + size, c:c + size], y[r:r + size, c:c + size]
        x = np.stack(xs)
        if self.radiometric:
            x = radiometric_change(x, rng)
        y = np.stack(ys).astype(np.int64)
        if self.meta["mode"] == "tiles":
            y = self._lookup[y]
            return x, (np.eye(self.num_classes, dtype=np.float32)[y] if self.one_hot else y)
        if self.one_hot:
            return x, np.eye(max(self.values) + 1, dtype=np.float32)[y][..., self.values]
        return x, np.where(y > 0, self._lookup[y] + 1, 0)


def _areas_of(source):
    """The sub-area statistics of a dataset source, which only per-image datasets record."""
    if "area_statistics" not in source:
        raise FjordError("Training under sub-area statistics needs a dataset made with "
                         "NORMALISATION image or range (by this version of maketiles); make the "
                         "dataset again with one of those, or choose another AUGMENT.")
    return source["area_statistics"]


#: Standard deviations of the radiometric change's log-gain and offset (standardised units).
RADIOMETRIC_GAIN, RADIOMETRIC_OFFSET = 0.2, 0.3


def radiometric_change(x, rng):
    """``x`` (windows, rows, cols, bands) with a random gain and offset per window and band.

    Log-gains and offsets are normal; half their variance is shared by a window's bands (a
    change of illumination), half is the band's own (sensor, atmosphere).
    """
    shape = (len(x), 1, 1, x.shape[-1])
    half = np.sqrt(0.5)

    def draw(sd):
        shared = rng.normal(0, sd * half, (len(x), 1, 1, 1))
        return shared + rng.normal(0, sd * half, shape)

    gain = np.exp(draw(RADIOMETRIC_GAIN)).astype(np.float32)
    return x * gain + draw(RADIOMETRIC_OFFSET).astype(np.float32)
