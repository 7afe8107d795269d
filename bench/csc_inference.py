"""Benchmark: phase-two inference of CSC, Fjord's fully convolutional strips against the
reference method, and a whole CSC run on a full Sentinel-2 tile.

    .venv/bin/python bench/csc_inference.py [--size 768x1024] [--ks 1,3,7,15]
                                            [--big 10980] [--big-k 7] [--work DIR]

1. A synthetic fjord scene (``--size``), its training tiles and a compact phase-one model
   (cached in ``--work``).
2. For each K: one CSC run trains the phase-two network (MLP or cCNN) on the scene and saves it;
   then, each in a fresh child process reporting its own peak RSS (VmHWM), with those same
   weights:
   - fjord:     the network run fully convolutionally over strips of the image with a halo of
                (K - 1) / 2 px (``fjord.core.learn.csc.phase_two_predict``);
   - reference: the published method: every K x K patch of the (reflect-padded) image built in
                memory, then predicted in batches.
   The class maps are compared pixel by pixel (agreement must be 100 %).
3. The machine's convolution throughput (a 3 x 3, 64 -> 64 convolution on a 256 x 256 map) in
   G multiply-adds/s, and Fjord's phase-two rate as a fraction of it.
4. ``--big``: the synthetic generator at full Sentinel-2 tile size (10980 x 10980 x 4), then a
   whole ``classify_csc`` run (phase one, sampling, phase-two training, prediction, smoothing)
   in a child process: seconds per step and peak RSS (target 2 GB). ``--big 0`` skips it.

Children run with GDAL_CACHEMAX=256 (MB), as the QGIS worker does.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from common import child_env, import_plugin, peak_rss_mb, run_child


def _fjord(image, model, out):
    import numpy as np
    from osgeo import gdal

    from fjord.core.data.rasters import ImageStrips
    from fjord.core.learn.csc import phase_two_predict
    from fjord.models.modelfile import load_model
    from fjord.models.phase_two import fully_convolutional

    net, meta = load_model(model, task="patches")
    img = ImageStrips(image)
    img.divisor = float(meta["scaling"]["divisor"])
    n = len(meta["outputs"])
    ds = gdal.GetDriverByName("MEM").Create("", img.width, img.height, 1, gdal.GDT_Byte)
    prob = gdal.GetDriverByName("MEM").Create("", img.width, img.height, n, gdal.GDT_Float32)
    t = time.perf_counter()
    phase_two_predict(img, fully_convolutional(net), meta["outputs"], list(range(n)),
                      ds.GetRasterBand(1), prob, 255, lambda *a: None, lambda: False)
    seconds = time.perf_counter() - t
    np.save(out, ds.GetRasterBand(1).ReadAsArray())
    np.save(out.replace(".npy", "-prob.npy"), np.moveaxis(prob.ReadAsArray(), 0, -1))
    return seconds


def _reference(image, model, out):
    import numpy as np
    from osgeo import gdal

    from fjord.models.modelfile import load_model

    net, meta = load_model(model, task="patches")
    k = int(meta["patch_size"])
    t = time.perf_counter()
    data = np.moveaxis(gdal.Open(image).ReadAsArray(), 0, -1).astype(np.float32)
    data /= float(meta["scaling"]["divisor"])
    h = (k - 1) // 2
    padded = np.pad(data, ((h, h), (h, h), (0, 0)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))
    patches = np.ascontiguousarray(np.moveaxis(windows, 2, -1)).reshape(-1, k, k, data.shape[-1])
    probs = net.predict(patches, batch_size=max(256, 500_000 // k ** 2), verbose=0)
    classes = np.asarray(meta["outputs"], np.uint8)[np.argmax(probs, axis=-1)]
    seconds = time.perf_counter() - t
    np.save(out, classes.reshape(data.shape[:2]))
    np.save(out.replace(".npy", "-prob.npy"), probs.reshape(data.shape[:2] + (-1,)))
    return seconds


def _conv_throughput():
    import keras
    import numpy as np

    inputs = keras.Input((None, None, 64))
    model = keras.Model(inputs, keras.layers.Conv2D(64, 3, padding="same")(inputs))
    x = np.random.default_rng(0).random((1, 256, 256, 64), np.float32)
    model.predict_on_batch(x)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        model.predict_on_batch(x)
        best = min(best, time.perf_counter() - t)
    return 256 * 256 * 9 * 64 * 64 / best / 1e9


def _big(image, model, out, k):
    from fjord.core.learn.csc import classify_csc

    result = classify_csc(image, model, out, patch_size=int(k), samples_per_class=20_000,
                          max_epochs=5, patience=0, seed=0,
                          progress=lambda f, m=None: m and print(m, file=sys.stderr, flush=True))
    return result


def child(kind, *args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if kind == "fjord":
        value = {"seconds": _fjord(*args)}
    elif kind == "reference":
        value = {"seconds": _reference(*args)}
    elif kind == "conv":
        value = {"gmacs": _conv_throughput()}
    elif kind == "train":
        from fjord.core.learn.csc import classify_csc

        image, model, out, k, p2 = args
        value = classify_csc(image, model, out, patch_size=int(k), samples_per_class=5000,
                             max_epochs=8, patience=0, phase_two_model=p2, seed=0)
    elif kind == "big":
        value = _big(*args)
    value["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(value, default=str))


def prepare(work, shape):
    """Scene, tiles and phase-one model (cached)."""
    from fjord.core.data import schema as schemas
    from fjord.core.learn.phase_one import train_phase_one
    from fjord.core.prepare.rasterize import rasterize_labels
    from fjord.core.prepare.synthetic import write_synthetic_scene
    from fjord.core.prepare.tiles import build_dataset

    folder = os.path.join(work, f"scene-{shape[0]}x{shape[1]}")
    model = os.path.join(work, "phase1.keras")
    image = os.path.join(folder, "image.tif")
    if not os.path.isfile(image):
        paths = write_synthetic_scene(folder, shape=shape, seed=0)
        rasterize_labels(paths["labels"], "class", image, os.path.join(folder, "labels.tif"),
                         schema=schemas.preset_schema("glacial"))
    if not os.path.isfile(model):
        build_dataset(image, os.path.join(folder, "labels.tif"), os.path.join(work, "tiles"),
                      tile_size=50, stride=25, max_per_class=400, seed=0)
        train_phase_one(os.path.join(work, "tiles"), model, architecture="compact", epochs=8,
                        batch_size=32, learning_rate=1e-3, patience=0, target_accuracy=0)
    return image, model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="768x1024", help="ROWSxCOLS of the comparison scene")
    parser.add_argument("--ks", default="1,3,7,15", help="patch sizes to compare ('' for none)")
    parser.add_argument("--big", type=int, default=10980, help="side of the big scene (0: skip)")
    parser.add_argument("--big-k", type=int, default=7)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "fjord-bench-csc"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    plugins = import_plugin()
    if args.child:
        return child(*args.child)

    import numpy as np

    env = child_env(plugins)
    os.makedirs(args.work, exist_ok=True)
    shape = tuple(int(v) for v in args.size.lower().split("x"))
    image, model = prepare(args.work, shape)
    pixels = shape[0] * shape[1]
    from fjord.models.phase_two import multiply_adds_per_pixel

    conv = run_child(__file__, env, "conv")["gmacs"]
    print(f"machine convolution throughput: {conv:.1f} G multiply-adds/s (3x3, 64 -> 64)", flush=True)
    rows = []
    for k in [int(v) for v in args.ks.split(",") if v.strip()]:
        p2 = os.path.join(args.work, f"phase2-k{k}.keras")
        trained = run_child(__file__, env, "train", image, model, os.path.join(args.work, f"csc-k{k}.tif"), k, p2)
        outs = {m: os.path.join(args.work, f"{m}-k{k}.npy") for m in ("fjord", "reference")}
        res = {m: run_child(__file__, env, m, image, p2, outs[m]) for m in ("fjord", "reference")}
        a, b = np.load(outs["fjord"]), np.load(outs["reference"])
        pa = np.load(outs["fjord"].replace(".npy", "-prob.npy"))
        pb = np.load(outs["reference"].replace(".npy", "-prob.npy"))
        agree = float((a == b).mean())
        top2 = np.sort(pb, axis=-1)[..., -2:]
        margin = float((top2[..., 1] - top2[..., 0])[a != b].max(initial=0))
        macs = multiply_adds_per_pixel(k, 4, len(trained["phase_two"]["classes"]))
        rows.append((k, agree, res, macs))
        print(f"K={k:<2} agreement {100 * agree:.4f} % ({int((a != b).sum())} px differ, largest "
              f"top-two probability margin there {margin:.1e}; largest probability difference "
              f"{float(np.abs(pa - pb).max()):.1e})  fjord {res['fjord']['seconds']:.1f} s "
              f"{res['fjord']['peak_rss_mb']:.0f} MB  reference {res['reference']['seconds']:.1f} s "
              f"{res['reference']['peak_rss_mb']:.0f} MB", flush=True)

    if rows:
        print(f"\nPhase-two prediction of {shape[0]} x {shape[1]} px, same trained weights per K:")
        print(f"{'K':>3} {'agreement':>10} {'fjord s':>8} {'ref. s':>8} {'speed ×':>8} "
              f"{'fjord MB':>9} {'ref. MB':>8} {'RSS ×':>6} {'fjord px/s':>11} {'of conv peak':>12}")
    for k, agree, res, macs in rows:
        f, r = res["fjord"], res["reference"]
        rate = pixels / f["seconds"]
        print(f"{k:>3} {100 * agree:>9.4f}% {f['seconds']:>8.2f} {r['seconds']:>8.2f} "
              f"{r['seconds'] / f['seconds']:>8.2f} {f['peak_rss_mb']:>9.0f} {r['peak_rss_mb']:>8.0f} "
              f"{r['peak_rss_mb'] / f['peak_rss_mb']:>6.2f} {rate:>11,.0f} "
              f"{100 * rate * macs / 1e9 / conv:>11.1f}%")

    if args.big:
        from fjord.core.prepare.synthetic import write_synthetic_scene

        folder = os.path.join(args.work, f"big-{args.big}")
        big_image = os.path.join(folder, "image.tif")
        if not os.path.isfile(big_image):
            print(f"\ngenerating the {args.big} x {args.big} x 4 scene...", flush=True)
            write_synthetic_scene(folder, shape=(args.big, args.big), seed=0)
        t = time.perf_counter()
        r = run_child(__file__, env, "big", big_image, model, os.path.join(args.work, "big-csc.tif"), args.big_k)
        wall = time.perf_counter() - t
        tm = r["timings"]
        print(f"\nWhole CSC (K = {args.big_k}) of {args.big} x {args.big} x 4 px "
              f"({args.big ** 2 / 1e6:.0f} Mpx) in one worker process:")
        print(f"{'step':<22} {'seconds':>8}")
        for key in ("phase_one", "sampling", "phase_two_training", "phase_two_prediction",
                    "smoothing", "total"):
            print(f"{key:<22} {tm.get(key, 0):>8.1f}")
        macs = multiply_adds_per_pixel(args.big_k, 4, len(r["phase_two"]["classes"]))
        print(f"wall {wall:.0f} s; peak RSS {r['peak_rss_mb']:.0f} MB (target 2048 MB: "
              f"{'met' if r['peak_rss_mb'] <= 2048 else 'NOT met'}); phase two "
              f"{r['pixels_per_second']:,.0f} px/s = "
              f"{100 * r['pixels_per_second'] * macs / 1e9 / conv:.1f} % of the conv peak")


if __name__ == "__main__":
    main()
