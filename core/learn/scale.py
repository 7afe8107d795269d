"""Is an image on the scale a model was trained on?

A model file holds the statistics of the scaled training values (value / divisor, per band:
2nd, 50th and 98th percentiles). A network given values on another scale (reflectance 0..1 to
a model trained on digital numbers 0..10000, an 8-bit export to a 16-bit model) still returns a
map, a wrong one, without a word. :func:`check_scale` compares a cheap sample of the image (at
most 256 x 256 pixels, decimated) with those statistics and stops with a message that names
both ranges and the likely causes.

A band is off the training scale when its sampled median is off by a factor of 10 or more from
the training median (both positive), or lies further from the training 2..98 % range than that
range is wide. The image is refused when half of its bands or more are off: a different scene
of the same kind (snow here, none there) moves a band or two, not the whole image.
"""

import numpy as np

from ..errors import FjordError
from ..prepare.normalise import per_image

FACTOR = 10.0
SAMPLE = 256


def off_scale_bands(sample, stats, divisor):
    """Per band: ``(off, image p2, p50, p98, training p2, p50, p98)`` in scaled units."""
    out = []
    scaled = sample / float(divisor)
    for b in range(scaled.shape[1]):
        p2, p50, p98 = np.percentile(scaled[:, b], [2, 50, 98])
        t2, t50, t98 = (float(stats[k][b]) for k in ("p2", "median", "p98"))
        span = max(t98 - t2, 1e-12)
        ratio_off = (p50 > 0 and t50 > 0 and
                     (p50 / t50 >= FACTOR or t50 / p50 >= FACTOR))
        range_off = p50 < t2 - span or p50 > t98 + span
        out.append((bool(ratio_off or range_off), p2, p50, p98, t2, t50, t98))
    return out


def check_scale(img, meta, ignore=False, progress=None):
    """FjordError when the image ``img`` (an ImageStrips) is not on the scale of the model
    whose description is ``meta``; with ``ignore``, a log line instead. Models without
    percentile statistics are not checked, nor models that standardise every image by its own
    statistics (``normalisation`` 'image' or 'range'): a gain and an offset, which is what reflectance
    against digital numbers or an 8-bit export amounts to, do not reach their network."""
    if per_image(meta):
        return None
    stats = meta.get("statistics") or {}
    if not all(k in stats for k in ("p2", "median", "p98")) or len(stats["median"]) != img.bands:
        return None
    sample = img.sample(SAMPLE).astype(np.float64)
    if len(sample) < 16:
        return None
    divisor = float(meta.get("scaling", {}).get("divisor", 1.0)) or 1.0
    bands = off_scale_bands(sample, stats, divisor)
    if sentinel2_offset(bands, divisor):
        return _refuse(OFFSET_MESSAGE, ignore, progress)
    off = [b for b, row in enumerate(bands) if row[0]]
    if len(off) * 2 < len(bands) or not off:
        return None
    names = meta.get("band_names") or [f"band {b + 1}" for b in range(len(bands))]
    lines = []
    for b in off[:4]:
        _, p2, p50, p98, t2, t50, t98 = (v * divisor if i else v for i, v in enumerate(bands[b]))
        lines.append(f"{names[b]}: {p2:.4g} .. {p98:.4g} (median {p50:.4g}) here, "
                     f"{t2:.4g} .. {t98:.4g} (median {t50:.4g}) in training")
    ratio = np.median([bands[b][2] / bands[b][5] for b in off if bands[b][5] > 0 and bands[b][2] > 0]
                      or [1.0])
    hint = ""
    if ratio <= 1 / 1000:
        hint = ("The image looks like reflectance (0..1) and the model was trained on digital "
                "numbers (0..10000 or so). ")
    elif ratio >= 1000:
        hint = ("The image looks like digital numbers and the model was trained on reflectance "
                "(0..1). ")
    elif 1 / 1000 < ratio <= 1 / FACTOR:
        hint = "The image's values are far smaller, as an 8-bit export of a 16-bit scene. "
    elif FACTOR <= ratio < 1000:
        hint = "The image's values are far larger, as a 16-bit scene given to an 8-bit model. "
    message = (
        f"The image is not on the scale the model was trained on: {len(off)} of {len(bands)} "
        "bands are off (2nd .. 98th percentile, in the files' units): " + "; ".join(lines)
        + ". " + hint + "Likely causes: reflectance against digital numbers, another processing "
        "level (L1C top-of-atmosphere against L2A surface reflectance), the Sentinel-2 "
        "processing-baseline offset (+1000 on digital numbers since baseline 04.00, January "
        "2022), or the bands in another order. Give the image as the training image was made "
        "(same product, scaling and band order), or set IGNORE_SCALE_MISMATCH to classify "
        "anyway.")
    return _refuse(message, ignore, progress)


def _refuse(message, ignore, progress):
    if ignore:
        if progress is not None:
            progress(None, "Warning (IGNORE_SCALE_MISMATCH): " + message)
        return message
    raise FjordError(message)


OFFSET_MESSAGE = (
    "The image looks like Sentinel-2 digital numbers with the +1000 offset of processing "
    "baseline 04.00 and later (January 2022 on), against a model trained on numbers without it: "
    "every band's darkest values lie about 1000 above the training's. Stack the image from its "
    "product with 'Stack bands' PRODUCT (VALUES harmonised integers), which removes the offset, "
    "or subtract 1000 from every band; set IGNORE_SCALE_MISMATCH to classify anyway.")


def sentinel2_offset(bands, divisor):
    """Whether an image looks like the training's plus Sentinel-2's +1000 digital numbers: the
    training on digital numbers (2..98 % within 0..20000), and in every band (3 or more) the
    image's 2nd percentile 700 to 1300 above the training's and at least 1000 (``bands``:
    :func:`off_scale_bands` rows, in scaled units)."""
    if len(bands) < 3:
        return False
    for _, p2, _, _, t2, _, t98 in bands:
        p2, t2, t98 = p2 * divisor, t2 * divisor, t98 * divisor
        if not (0 <= t2 and 300 <= t98 <= 20000 and 700 <= p2 - t2 <= 1300 and p2 >= 1000):
            return False
    return True
