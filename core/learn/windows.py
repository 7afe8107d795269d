"""Overlapping windows over an image, blended without seams, accumulated strip by strip.

The building block of windowed (U-Net) classification: the image is reflect-padded by half the
overlap, cut into windows of ``window`` px every ``window - overlap`` px (the last row and column
of windows ending at the padded edge), each window's per-pixel outputs are weighted by a
profile that falls towards the window's edges, and every pixel gets the weighted mean of the
windows that cover it. Weights of neighbouring windows add up to one across their overlap (the
ramps are complementary), and the mean is normalised by the weight actually received, so the
blend holds at the shifted last windows too.

Blends: ``none`` takes each pixel from the window whose edge is farthest (hard stitching, for
comparison); ``linear`` ramps over the overlap; ``cosine`` uses a raised-cosine ramp. A
``margin`` gives every window a dead border of that many pixels (weight 0): with a margin at
least the network's receptive-field radius, window edges cannot touch the result at all.

Only one band of windows is held at a time: memory grows with the image width, not its height.
"""

import numpy as np

BLENDS = ("none", "linear", "cosine")


def window_positions(length, window, step):
    """Start offsets along one axis: every ``step`` px, the last one ending at ``length``."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def padded_length(length, window, overlap):
    """The length of one axis as ``predict_windows`` covers it: reflect-padded by half the
    overlap on each side, and up to one window when it is shorter than that."""
    return max(length + 2 * (overlap // 2), window)


def windows_per_row(width, window, overlap):
    """How many windows ``predict_windows`` puts side by side across an image ``width`` px wide
    (the largest useful prediction batch: a row of windows is predicted at a time)."""
    return len(window_positions(padded_length(width, window, overlap), window, window - overlap))


def blend_profile(window, overlap, blend="cosine", margin=0):
    """The 1-D weight of each position of a window (the 2-D weight is the outer product)."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, not {blend!r}")
    t = np.arange(window, dtype=np.float64)
    d = np.minimum(t + 0.5, window - t - 0.5)  # distance of the pixel centre to the window edge
    if overlap <= 0:
        return np.ones(window)
    if blend == "none":
        return (d >= overlap / 2).astype(np.float64)
    ramp = np.clip((d - margin) / max(overlap - 2 * margin, 1e-9), 0.0, 1.0)
    return ramp if blend == "linear" else np.sin(0.5 * np.pi * ramp) ** 2


def reflect_index(index, n):
    """Indices reflected into 0 .. n-1 (edge pixel not repeated), for any overshoot."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    i = np.mod(index, period)
    return np.where(i < n, i, period - i)


def padded_rows(img, r0, r1, left, right):
    """Rows ``r0 .. r1`` (may lie beyond the image) of ``img`` reflected at its edges, with
    ``left`` and ``right`` reflected columns; and the matching valid mask."""
    rows = reflect_index(np.arange(r0, r1), img.height)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    data, valid = img.read(lo, hi - lo)
    if not (0 <= r0 and r1 <= img.height):  # rows beyond the image: reflected
        data, valid = data[rows - lo], valid[rows - lo]
    if left <= img.width - 1 and right <= img.width - 1:  # one reflection at each side
        return _reflect_columns(data, left, right), _reflect_columns(valid, left, right)
    cols = reflect_index(np.arange(-left, img.width + right), img.width)
    return data[:, cols], valid[:, cols]


def _reflect_columns(a, left, right):
    """``a`` with ``left`` and ``right`` columns reflected at its sides (edge not repeated),
    one copy."""
    if not left and not right:
        return a
    width = a.shape[1]
    out = np.empty((a.shape[0], width + left + right) + a.shape[2:], a.dtype)
    out[:, left:left + width] = a
    if left:
        out[:, :left] = a[:, np.arange(left, 0, -1)]
    if right:
        out[:, left + width:] = a[:, width - 2 - np.arange(right)]
    return out


def _prefetched(read, starts):
    """``read(start)`` for each start in turn, the next one read in a thread while the caller
    works on the current one (GDAL and numpy let go of the interpreter while they read)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(read, starts[0])
        for i in range(len(starts)):
            current = upcoming.result()
            if i + 1 < len(starts):
                upcoming = pool.submit(read, starts[i + 1])
            yield current


def predict_windows(img, predict, window, overlap, n_out, write, *, blend="cosine", margin=0,
                    batch=4, should_stop=None, progress=None):
    """Blend ``predict`` over overlapping windows of ``img`` and hand the result to ``write``.

    ``img``: an image read strip by strip (``fjord.core.data.rasters.ImageStrips``); ``predict``:
    (n, window, window, bands) float32 → (n, window, window, n_out); ``write(row, values,
    valid)`` gets consecutive bands of finished rows, (rows, width, n_out) float32 and the
    valid mask. The image is reflect-padded by half the overlap (and up to one window when it
    is smaller than that).
    """
    if not 0 <= overlap < window:
        raise ValueError("the overlap must be at least 0 and smaller than the window")
    if blend != "none" and overlap and overlap <= 2 * margin:
        raise ValueError("the overlap must be larger than twice the margin")
    step = window - overlap
    pad = overlap // 2
    height, width = padded_length(img.height, window, overlap), padded_length(img.width, window, overlap)
    extra_c = width - (img.width + 2 * pad)
    ys, xs = window_positions(height, window, step), window_positions(width, window, step)
    profile = blend_profile(window, overlap, blend, margin)
    weight = np.outer(profile, profile).astype(np.float32)[..., None]
    acc = np.zeros((window, width, n_out), np.float32)
    total = np.zeros((window, width, 1), np.float32)
    strips = _prefetched(lambda y: padded_rows(img, y - pad, y - pad + window, pad, pad + extra_c),
                         ys)
    for i, (y, (data, valid)) in enumerate(zip(ys, strips)):
        if should_stop and should_stop():
            from ..errors import Cancelled

            raise Cancelled("Classification was cancelled.")
        for b in range(0, len(xs), batch):
            cols = xs[b:b + batch]
            x = np.stack([data[:, c:c + window] for c in cols]).astype(np.float32)
            out = predict(x)
            for c, o in zip(cols, out):
                acc[:, c:c + window] += o * weight
                total[:, c:c + window] += weight
        nxt = ys[i + 1] if i + 1 < len(ys) else height
        # Padded rows y .. nxt are final; hand over those that are image rows.
        first, last = max(y, pad), min(nxt, pad + img.height)
        if last > first:
            rows = slice(first - y, last - y)
            values = acc[rows, pad:pad + img.width] / np.maximum(total[rows, pad:pad + img.width], 1e-12)
            write(first - pad, values, valid[rows, pad:pad + img.width])
        shift = nxt - y
        acc[:window - shift] = acc[shift:]
        acc[window - shift:] = 0
        total[:window - shift] = total[shift:]
        total[window - shift:] = 0
        if progress:
            progress((i + 1) / len(ys))
