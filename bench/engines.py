"""Benchmark: TensorFlow (Keras) against ONNX Runtime for Fjord's networks on this CPU.

    .venv/bin/python bench/engines.py [--repeats 5]

Each network is built as Fjord builds it (random weights: speed does not depend on them),
converted to ONNX with Keras's exporter (operator set 17), and both run the same batches, the
shapes Fjord's classification gives them:

- U-Net windows: ``trainunet``'s default network (depth 5, 16 base filters), 4 bands, 7
  classes, 16 windows of 256 px (``window_batch``: about a million pixels);
- phase-one tiles: the VGG16 and the compact tile classifiers, 4 bands, 50 px tiles, 7 classes,
  64 tiles (``TILE_BATCH``);
- phase two: the fully convolutional form of the MLP (K = 1) and of the compact CNN (K = 7) on
  a strip of 256 x 1024 pixels (plus the halo), as ``classifycsc`` predicts it.

For each: the median seconds of a batch over ``--repeats`` runs (after one warm-up run each),
the ratio TF / ONNX Runtime (above 1: ONNX Runtime is faster), and the largest difference of the
probabilities; then the engine the measurement picks (ONNX Runtime where it is at least 1.3x
faster and agrees within 1e-4, Keras elsewhere) and the one Fjord uses
(``fjord.models.engines.RULE``), flagged where they differ.
"""

import argparse
import os
import sys
import tempfile
import time

from common import import_plugin

SPEEDUP, TOLERANCE = 1.3, 1e-4


def networks():
    """``(name, task/architecture, Keras model, input batch shape)`` of each network."""
    from fjord.models.phase_one import build_phase_one
    from fjord.models.phase_two import build_phase_two, fully_convolutional
    from fjord.models.unet import build_unet

    yield "U-Net windows (depth 5, 16 filters)", "segmentation/unet", \
        build_unet(4, 7, depth=5, filters=16), (16, 256, 256, 4)
    yield "phase one, VGG16 tiles", "tiles/vgg16", build_phase_one("vgg16", 4, 50, 7), \
        (64, 50, 50, 4)
    yield "phase one, compact tiles", "tiles/compact", build_phase_one("compact", 4, 50, 7), \
        (64, 50, 50, 4)
    yield "phase two, MLP (K = 1) strip", "patches/mlp", \
        fully_convolutional(build_phase_two(1, 4, 7, seed=0)), (1, 256, 1024, 4)
    yield "phase two, CNN (K = 7) strip", "patches/ccnn7", \
        fully_convolutional(build_phase_two(7, 4, 7, seed=0)), (1, 262, 1030, 4)


def median_seconds(run, x, repeats):
    run(x)  # warm-up: compilation, memory pools
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import_plugin()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from fjord.models.engines import RULE, onnx_twin

    print(f"CPU: {os.cpu_count()} cores; {args.repeats} runs per engine, median seconds per batch")
    print(f"{'network':38s} {'batch':>18s} {'TF s':>8s} {'ORT s':>8s} {'TF/ORT':>7s} "
          f"{'max diff':>9s}  {'measured':12s} {'Fjord uses':12s}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for name, key, model, shape in networks():
            x = rng.normal(0, 1, shape).astype(np.float32)
            twin = onnx_twin(model, shape[1:], os.path.join(folder, "net.onnx"))
            keras_s = median_seconds(model.predict_on_batch, x, args.repeats)
            onnx_s = median_seconds(twin.predict_on_batch, x, args.repeats)
            diff = float(np.abs(np.asarray(model.predict_on_batch(x)) -
                                twin.predict_on_batch(x)).max())
            ratio = keras_s / onnx_s
            measured = "onnx" if ratio >= SPEEDUP and diff <= TOLERANCE else "keras"
            used = RULE.get(key, "keras")
            print(f"{name:38s} {'x'.join(map(str, shape)):>18s} {keras_s:8.3f} {onnx_s:8.3f} "
                  f"{ratio:7.2f} {diff:9.1e}  {measured:12s} {used:12s}"
                  + ("" if used == measured else "  <- the rule differs"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
