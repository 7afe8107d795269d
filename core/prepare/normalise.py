"""How image values become network input: the dataset's statistics, or each image's own.

``NORMALISATION`` of ``maketiles`` (recorded in the dataset and in every model trained on it):

``dataset`` (0, the behaviour before the choice existed)
    Values are scaled by the dataset's rule (``value / divisor``, see
    :func:`.tiles.scaling_rule`). Phase-one tile classifiers see those scaled values; U-Nets see
    per-band z-scores with the mean and standard deviation of the training split. An image of
    another date or sensor, with another gain and offset, reaches the network shifted.
``image`` (1)
    Every image is standardised by its own robust per-band statistics, in training and in
    classification alike: ``(value - median) / (spread / 4.1075)``, where the spread is the
    distance between the 2nd and 98th percentiles. Both come from a decimated sample of the
    image's valid pixels (at most 512 x 512). For normally distributed values this is the usual
    z-score (the 2-98 % range of a normal distribution is 4.1075 standard deviations), and it
    cancels any gain and offset of the whole image. A band without spread becomes 0.
``range`` (2)
    As ``image``, but centred on the middle of the 2-98 % range rather than on the median:
    ``(value - (p2 + p98) / 2) / (spread / 4.1075)``. The median moves with the class mix (on
    the Everest scene it is 156 in the western half, mostly rock, and 254 in the eastern half,
    mostly snow and ice), while the darkest and brightest 2 % (shadow, snow) are found in most
    scenes of a glacier or a river whatever their mix; the range still cancels a gain and an
    offset.

Under both per-image rules the spectral-index bands of a stack (NDVI, NDWI, ... by band name,
listed in the dataset's ``fixed_bands``) keep the training statistics, as under ``dataset``: an
index is a ratio that a gain common to its two bands does not change, and its value means
something (NDWI above 0 is water), which an image's own statistics would move with the class
mix. On the Everest halves the western half's NDWI 2-98 % spread is 0.43 and the eastern
half's 0.34; standardising it per image cost a U-Net 0.3 macro F1.

A gain that is not the same over the scene (haze in one corner) is not cancelled, and an image
whose class mix differs much from the training images' (all snow) gets other statistics: the
per-image rule trades that for robustness to calibration, sensor and season. To soften that, a
per-image dataset also records the statistics of random quarter-size areas of each image
(:func:`area_statistics`), and a U-Net trained with ``AUGMENT`` sub-area statistics reads each
training window by its whole image's statistics or by one area's, so it has seen the shifts
another class mix gives.
"""

import numpy as np

from ..errors import FjordError
from .stack import INDEX_NAMES

NORMALISATIONS = ("dataset", "image", "range")
#: The rules that standardise every image by its own statistics.
PER_IMAGE = ("image", "range")
#: Sample side of the image statistics (a decimated read of at most this many pixels squared).
SAMPLE = 512
#: Sub-areas per image whose statistics a U-Net may train under, and their side as a share of
#: the image's width and height (:func:`area_statistics`).
AREAS, AREA_SIDE = 8, 0.5
#: The 2..98 % range of a standard normal distribution, in standard deviations.
NORMAL_SPREAD = 4.1075


def standardise(x, divisor, mean, std):
    """Scaled values (``x / divisor``) as per-band z-scores with the training statistics, in
    place on a float32 array; a band without spread becomes 0 (the U-Net's input)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    x /= np.float32(divisor)
    x -= mean
    x *= np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0).astype(np.float32)
    return x


def check_normalisation(name):
    if name not in NORMALISATIONS:
        raise FjordError(f"Unknown normalisation {name!r}; choose one of "
                         f"{', '.join(NORMALISATIONS)}.")
    return name


def image_statistics(img, size=SAMPLE, window=None):
    """The robust per-band statistics of an image (an ``ImageStrips``) or of its ``window``
    (col, row, width, height), in its own units: ``{"median": [...], "midrange": [...],
    "spread": [...], "pixels": n}``: spread = 98th - 2nd percentile, midrange = their mean, over
    the valid pixels of a decimated read."""
    sample = img.sample(size, window).astype(np.float64)
    if len(sample) < 16:
        raise FjordError("The image has too few valid pixels to compute its own statistics "
                         "(NORMALISATION 'image'); give a larger image or area.")
    p2, p50, p98 = np.percentile(sample, [2, 50, 98], axis=0)
    return {"median": p50.tolist(), "midrange": ((p2 + p98) / 2).tolist(),
            "spread": (p98 - p2).tolist(), "pixels": int(len(sample))}


def area_statistics(img, seed=0, count=AREAS, side=AREA_SIDE):
    """The :func:`image_statistics` of ``count`` random sub-areas of ``img``, each ``side`` of
    its width and height (areas without enough valid pixels are left out).

    They are what the image's own statistics would be with another class mix, drawn from the
    image itself: a U-Net trained under them (``AUGMENT`` sub-area statistics) learns the
    shifts that a per-image rule gives an image with more snow or more shadow.
    """
    rng = np.random.default_rng(seed)
    width, height = (max(1, round(n * side)) for n in (img.width, img.height))
    areas = []
    for _ in range(count):
        col = int(rng.integers(0, img.width - width + 1))
        row = int(rng.integers(0, img.height - height + 1))
        try:
            areas.append(image_statistics(img, window=(col, row, width, height)))
        except FjordError:  # an area of nodata
            continue
    return areas


def fixed_bands(band_names, rule):
    """The bands that keep the training statistics under ``rule``: the spectral indices of a
    per-image rule (by name), none under ``dataset``."""
    if rule not in PER_IMAGE:
        return []
    return [b for b, name in enumerate(band_names) if str(name).upper() in INDEX_NAMES]


def with_training_statistics(stats, meta):
    """An image's ``stats`` with the bands of ``meta['fixed_bands']`` set to the training
    statistics, so that :func:`normalise_image` reads them as ``(value / divisor - mean) / std``."""
    fixed = meta.get("fixed_bands") or []
    if not fixed:
        return stats
    divisor = float(meta["scaling"]["divisor"])
    mean, std = meta["statistics"]["mean"], meta["statistics"]["std"]
    stats = {k: list(v) if isinstance(v, list) else v for k, v in stats.items()}
    for b in fixed:
        for centre in ("median", "midrange"):
            if centre in stats:
                stats[centre][b] = divisor * mean[b]
        stats["spread"][b] = divisor * std[b] * NORMAL_SPREAD
    return stats


def normalise_image(x, stats, rule="image"):
    """``x`` (..., bands) float32 standardised in place by an image's own ``stats``, centred on
    their median (rule ``image``) or on their midrange (rule ``range``)."""
    centre = np.asarray(stats["median" if rule == "image" else "midrange"], np.float32)
    spread = np.asarray(stats["spread"], np.float32)
    gain = np.where(spread > 0, NORMAL_SPREAD / np.where(spread > 0, spread, 1.0), 0.0)
    x -= centre
    x *= gain.astype(np.float32)
    return x


def normaliser(meta, image_stats=None, z_scores=False):
    """The function from raw values (float32, (..., bands), changed in place) to network
    input, for a dataset or model description ``meta``.

    ``z_scores``: the dataset rule's U-Net input (z-scores with the training statistics)
    rather than its tile-classifier input (scaled values). ``image_stats``: the image's own
    statistics (:func:`image_statistics`), needed under the per-image rules.
    """
    rule = normalisation_of(meta)
    if rule in PER_IMAGE:
        if image_stats is None:
            raise ValueError(f"the {rule} rule needs the image's statistics")
        stats = with_training_statistics(image_stats, meta)
        return lambda x: normalise_image(x, stats, rule)
    divisor = float(meta["scaling"]["divisor"])
    if z_scores or meta.get("standardise"):  # an imported network's per-band standardisation
        stats = meta["statistics"]
        return lambda x: standardise(x, divisor, stats["mean"], stats["std"])

    def scaled(x):
        x /= np.float32(divisor)
        return x

    return scaled


def normalisation_of(meta):
    """The rule of a dataset or model description: ``dataset`` when it predates the choice
    (U-Net model files then said ``zscore``, the dataset rule's U-Net input)."""
    rule = meta.get("normalisation")
    return rule if rule in PER_IMAGE else "dataset"


def per_image(meta):
    """Whether the description ``meta`` standardises every image by its own statistics."""
    return normalisation_of(meta) in PER_IMAGE


def normaliser_for(img, meta, z_scores=False):
    """:func:`normaliser` of the image ``img`` (an ``ImageStrips``) under ``meta``'s rule."""
    stats = image_statistics(img) if per_image(meta) else None
    return normaliser(meta, stats, z_scores)
