"""Benchmark: phase-one training throughput (tiles/s), and the data loader alone.

    .venv/bin/python bench/train_throughput.py                     # this machine's CPU
    KERAS_BACKEND=jax python bench/train_throughput.py --gpu       # on a GPU machine

CPU mode (default) builds a synthetic tile dataset (50 px tiles), then times in one process:

- loader:  ``TileDataset`` batches alone (read from the memory-mapped shards, scaled,
           rotated/flipped on the fly): the baseline;
- compact and vgg16: training steps (``train_on_batch``) on batches from the same loader.

It prints tiles/s and the ratio to the loader (far below 1: the loader is not what limits
training), and vgg16 / compact.

GPU mode (``--gpu``; no dataset needed, so it runs where GDAL is absent) times vgg16 training
steps on random batches at 50 and 100 px, batch 50 and 256, in float32 and mixed precision,
then the GPU's own matrix-multiply ceiling (a large square matmul in the same precision), and
prints each rate as achieved FLOP/s and as a fraction of that ceiling (training = 3 x the
forward multiply-adds x 2 FLOP).
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(REPO))
PKG = os.path.basename(REPO)


def _import(name):
    import importlib

    return importlib.import_module(f"{PKG}.{name}")


def make_dataset(folder, size, seed=0):
    schema = _import("core.data.schema")
    rasterize = _import("core.prepare.rasterize")
    synthetic = _import("core.prepare.synthetic")
    tiles = _import("core.prepare.tiles")
    paths = synthetic.write_synthetic_scene(os.path.join(folder, "scene"), shape=(size, size), seed=seed)
    labels = os.path.join(folder, "labels.tif")
    rasterize.rasterize_labels(paths["labels"], "class", paths["image"], labels,
                               schema=schema.preset_schema("glacial"))
    out = os.path.join(folder, "dataset")
    tiles.build_dataset(paths["image"], labels, out, tile_size=50, stride=25, max_per_class=1000, seed=seed)
    return out


def time_loader(dataset, batch, epochs=2):
    sequence = _import("core.learn.sequence")
    data = sequence.TileDataset(dataset, "train", batch_size=batch, augment="rotations+flips")
    n, t = 0, time.perf_counter()
    for _ in range(epochs):
        for i in range(len(data)):
            x, _ = data[i]
            n += len(x)
        data.on_epoch_end()
    return n / (time.perf_counter() - t), data


def time_training(model, batches, steps, warmup=3):
    """tiles/s of ``steps`` training steps over ``batches`` (a list or a PyDataset)."""
    count = len(batches)
    for i in range(warmup):
        model.train_on_batch(*batches[i % count])
    n, t = 0, time.perf_counter()
    for i in range(steps):
        x, y = batches[i % count]
        model.train_on_batch(x, y)
        n += len(x)
    return n / (time.perf_counter() - t)


def compiled(architecture, bands, tile, classes, policy="float32"):
    import keras

    phase_one = _import("models.phase_one")
    keras.mixed_precision.set_dtype_policy(policy)
    model = phase_one.build_phase_one(architecture, bands, tile, classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-4, amsgrad=True), loss="categorical_crossentropy")
    keras.mixed_precision.set_dtype_policy("float32")
    return model, phase_one.multiply_adds(model)


def cpu(args):
    import keras

    with tempfile.TemporaryDirectory(prefix="fjord-bench-") as tmp:
        print(f"Building a synthetic dataset ({args.size} x {args.size} px scene, 50 px tiles)...", flush=True)
        dataset = make_dataset(tmp, args.size)
        loader_rate, data = time_loader(dataset, args.batch)
        rows = [("loader (baseline)", loader_rate, None)]
        batches = [data[i] for i in range(min(len(data), 8))]
        for arch, steps in (("compact", args.steps * 4), ("vgg16", args.steps)):
            model, macs = compiled(arch, data.meta["bands"], 50, data.num_classes)
            rows.append((f"{arch} training", time_training(model, batches, steps), macs))
        print(f"\nbackend {keras.backend.backend()}, batch {args.batch}, 50 px, "
              f"{data.meta['bands']} bands, {os.cpu_count()} CPU cores")
        print(f"{'':22s} {'tiles/s':>9s} {'/ loader':>9s} {'M mult-adds/tile':>17s}")
        for name, rate, macs in rows:
            print(f"{name:22s} {rate:9.1f} {rate / loader_rate:9.4f} "
                  f"{'' if macs is None else f'{macs / 1e6:17.0f}'}")
        print(f"vgg16 / compact speed: {rows[2][1] / rows[1][1]:.3f}")


def matmul_ceiling(dtype, n=8192, reps=20):
    from keras import ops

    a = ops.ones((n, n), dtype=dtype)
    b = ops.ones((n, n), dtype=dtype)
    c = ops.matmul(a, b)
    float(ops.sum(ops.cast(c[:1, :1], "float32")))  # sync
    t = time.perf_counter()
    for _ in range(reps):
        c = ops.matmul(a, b)
    float(ops.sum(ops.cast(c[:1, :1], "float32")))
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def gpu(args):
    import keras
    import numpy as np

    distribute = _import("models.distribute")
    gpus = distribute.gpus()
    print(f"backend {keras.backend.backend()}; GPUs: {gpus or 'none'}")
    policy, why = distribute.precision_policy("on", gpus)
    half = "bfloat16" if "bfloat16" in policy else "float16"
    ceilings = {"float32": matmul_ceiling("float32"), half: matmul_ceiling(half)}
    print(f"matmul ceiling: float32 {ceilings['float32'] / 1e12:.1f} TFLOP/s, "
          f"{half} {ceilings[half] / 1e12:.1f} TFLOP/s")
    print(f"\n{'tile':>4s} {'batch':>5s} {'precision':>15s} {'tiles/s':>9s} {'TFLOP/s':>8s} "
          f"{'of ceiling':>10s} {'x float32':>9s}")
    rng = np.random.default_rng(0)
    for tile in (50, 100):
        for batch in (50, 256):
            x = rng.random((batch, tile, tile, 4), np.float32)
            y = np.eye(8, dtype=np.float32)[rng.integers(0, 8, batch)]
            base = None
            for p in ("float32", policy):
                model, macs = compiled("vgg16", 4, tile, 8, p)
                rate = time_training(model, [(x, y)], args.steps, warmup=5)
                flops = rate * macs * 2 * 3
                ceiling = ceilings["float32" if p == "float32" else half]
                base = base or rate
                print(f"{tile:4d} {batch:5d} {p:>15s} {rate:9.0f} {flops / 1e12:8.2f} "
                      f"{flops / ceiling:10.1%} {rate / base:9.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="GPU mode: vgg16 at 50/100 px, batch 50/256")
    parser.add_argument("--size", type=int, default=768, help="synthetic scene size (CPU mode)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (vgg16)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    (gpu if args.gpu else cpu)(args)


if __name__ == "__main__":
    main()
