"""Glacier maps of a real Landsat 7 scene with inventory outlines as labels: Fjord against a
random forest.

    .venv/bin/python bench/everest_glacier.py [--keep DIR] [--methods NAME,NAME,...] [--seed 0]

Data: ../shared/data/everest_landsat — Landsat 7 ETM+ over Mount Everest (2000-10-30, 30 m,
UTM 45N, 800 x 655 px; bands 3, 2, 1 in one file and band 4, NIR, in another) and 86 outlines of
the Randolph Glacier Inventory 6.0 in EPSG:4326.

Chain (the core functions the Fjord algorithms run, with their defaults unless named here):
``stack_bands`` of the two files with NDVI and NDWI (Landsat 4-7 naming: B4 is NIR) →
``rasterize_labels`` of the outlines with the built-in schema 'glacier outlines', CLASS glacier
and BACKGROUND not glacier → the test labels removed → datasets, training, classification of
the whole scene → scores on the test pixels.

Split (fixed, repeatable): the scene is cut into 160 px blocks; a pixel is a test pixel when
``(row // 160 + col // 160) % 3 == 0``. Test labels are set to 0 (unlabelled) before any
training or tiling; every method sees the whole image but only the labels of the other pixels.
Scores over the test pixels: macro F1 (glacier and not glacier), glacier IoU, accuracy.

Methods:

- random forest: scikit-learn, 100 trees, on the four band values of every training pixel; and
  on the band values plus their 11 px median and standard deviation (texture);
- CSC: ``maketiles`` (tiles) → ``train_phase_one`` (compact, 20 epochs) → ``classify_csc`` with
  K = 7 and K = 15 (100,000 phase-two samples per class; the phase-one map is scored too);
- U-Net: ``maketiles`` (segmentation, 256 px windows every 32 px, spatial split) →
  ``train_unet`` with the defaults (depth 5, 16 base filters, cross-entropy + Dice, cosine
  learning rate from 2e-3, no early stop) for 25 epochs of batches of 2 windows, and with the
  'glacier' and 'lulc' presets → ``classify_unet``; and the default one with TTA.

Prints the table, and writes a PNG of every map beside the outlines in the work folder.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from common import import_plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data", "everest_landsat")
if not os.path.isdir(DATA):  # the same files, bundled for the demo
    DATA = os.path.join(REPO, "resources", "demo", "everest")
BLOCK = 160

# Dataset settings: documented parameters of maketiles, chosen for a scene of this size.
TILES = dict(mode="tiles", tile_size=32, stride=8, augment="rotations+flips", split="spatial",
             max_per_class=2000)
PHASE_ONE = dict(architecture="compact", epochs=20)
# Phase two: 100,000 samples per class (the Glacier CSC chain's default) instead of 500,000, so
# that the CPU run takes minutes.
PHASE_TWO = dict(samples_per_class=100_000)
WINDOWS = dict(mode="segmentation", tile_size=256, stride=32, split="spatial")
# About 1,500 steps of 2 windows (117 training windows of 256 px): the length measured best; the
# cosine schedule runs over all of them (PATIENCE 0, the default).
TRAINING = dict(epochs=25, batch_size=2)
UNETS = {"U-Net": {}, "U-Net, glacier preset": {"preset": "glacier"},
         "U-Net, lulc preset": {"preset": "lulc"}}
METHODS = ("random forest", "random forest + texture", "CSC phase one", "CSC K = 7",
           "CSC K = 15", "U-Net", "U-Net + TTA", "U-Net, glacier preset", "U-Net, lulc preset")


def test_mask(height, width, block=BLOCK):
    """The fixed test pixels: ``(row // block + col // block) % 3 == 0``."""
    rows, cols = np.mgrid[:height, :width]
    return (rows // block + cols // block) % 3 == 0


def prepare(data, work):
    """The stacked image, the class raster of the outlines and its training copy (test labels
    removed). Returns their paths and the test mask."""
    from osgeo import gdal

    from fjord.core.data.schema import preset_schema
    from fjord.core.prepare.rasterize import rasterize_labels
    from fjord.core.prepare.stack import stack_bands

    rgb = os.path.join(data, "LE71400412000304SGS00_RGB.tif")
    nir = os.path.join(data, "LE71400412000304SGS00_B4.tif")
    outlines = os.path.join(data, "15_rgi60_glacier_outlines.gpkg")
    if not os.path.isfile(rgb):
        sys.exit(f"The Everest scene is not in {data}")
    paths = {"rgb": rgb, "outlines": outlines, "image": os.path.join(work, "stack.tif"),
             "labels": os.path.join(work, "outlines.tif"),
             "train_labels": os.path.join(work, "outlines_train.tif")}
    if not os.path.isfile(paths["image"]):
        stack_bands([rgb, nir], paths["image"], indices=["NDVI", "NDWI"])
    if not os.path.isfile(paths["labels"]):
        rasterize_labels(outlines, None, paths["image"], paths["labels"],
                         schema=preset_schema("glacier_outlines"), class_value="glacier",
                         background="not glacier")
    ds = gdal.Open(paths["labels"])
    labels = ds.GetRasterBand(1).ReadAsArray()
    test = test_mask(*labels.shape)
    if not os.path.isfile(paths["train_labels"]):
        out = gdal.GetDriverByName("GTiff").CreateCopy(paths["train_labels"], ds)
        out.GetRasterBand(1).WriteArray(np.where(test, 0, labels).astype(labels.dtype))
        out = None
    ds = None
    return paths, labels, test


def scores(truth, predicted, test):
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score

    t, p = truth[test], predicted[test]
    return {"macro_f1": float(f1_score(t, p, labels=[1, 2], average="macro")),
            "glacier_iou": float(jaccard_score(t, p, labels=[2], average="macro")),
            "accuracy": float(accuracy_score(t, p))}


def texture(bands, size=11):
    """Per band: its ``size`` px median and standard deviation."""
    from scipy import ndimage

    out = []
    for b in bands.astype(np.float64):
        mean = ndimage.uniform_filter(b, size)
        std = np.sqrt(np.maximum(ndimage.uniform_filter(b * b, size) - mean * mean, 0))
        out += [ndimage.median_filter(b, size), std]
    return np.stack(out)


def random_forest(paths, train_labels, with_texture, seed):
    from osgeo import gdal
    from sklearn.ensemble import RandomForestClassifier

    bands = gdal.Open(paths["image"]).ReadAsArray()[:4].astype(np.float32)
    features = np.concatenate([bands, texture(bands)]) if with_texture else bands
    x = features.reshape(len(features), -1).T
    y = train_labels.ravel()
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    forest.fit(x[y > 0], y[y > 0])
    return forest.predict(x).reshape(train_labels.shape)


def read_map(path):
    from osgeo import gdal

    ds = gdal.Open(path)  # held while its band is read (a band outliving its dataset crashes)
    return ds.GetRasterBand(1).ReadAsArray().astype(np.int64)


def run_csc(paths, work, seed, progress, ks=(7, 15)):
    from fjord.core.learn.csc import classify_csc
    from fjord.core.learn.phase_one import train_phase_one
    from fjord.core.prepare.tiles import build_dataset

    tiles = os.path.join(work, "tiles")
    if not os.path.isfile(os.path.join(tiles, "dataset.json")):
        build_dataset(paths["image"], paths["train_labels"], tiles, seed=seed, **TILES)
    model = os.path.join(work, "phase1.keras")
    if not os.path.isfile(model):
        train_phase_one(tiles, model, seed=seed, **PHASE_ONE,
                        report=os.path.join(work, "phase1-report"), progress=progress)
    maps = {}
    for k in ks:
        out = os.path.join(work, f"csc_k{k}.tif")
        classify_csc(paths["image"], model, out, patch_size=k, seed=seed, **PHASE_TWO,
                     output_phase_one=os.path.join(work, "phase1.tif"), progress=progress)
        maps[f"CSC K = {k}"] = out
    maps["CSC phase one"] = os.path.join(work, "phase1.tif")
    return maps


def run_unet(paths, work, name, options, seed, progress):
    from fjord.core.learn.unet import classify_unet, train_unet
    from fjord.core.prepare.tiles import build_dataset

    windows = os.path.join(work, "windows")
    if not os.path.isfile(os.path.join(windows, "dataset.json")):
        build_dataset(paths["image"], paths["train_labels"], windows, seed=seed, **WINDOWS)
    stem = name.lower().replace(", ", "_").replace(" ", "_").replace("-", "")
    model = os.path.join(work, f"{stem}.keras")
    if not os.path.isfile(model):
        train_unet(windows, model, seed=seed, report=os.path.join(work, f"{stem}-report"),
                   progress=progress, **TRAINING, **options)
    maps = {}
    for tta in (False, True) if name == "U-Net" else (False,):
        out = os.path.join(work, f"{stem}{'_tta' if tta else ''}.tif")
        classify_unet(paths["image"], model, out, tta=tta, probabilities="none", progress=progress)
        maps[name + (" + TTA" if tta else "")] = out
    return maps


def figure(path, title, rgb, predicted, truth, test, result):
    """The map in the outline schema's colours with the RGI outlines (red) and the test blocks
    (yellow) drawn over it, beside the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fjord.core.data.schema import preset_schema

    colours = {c["value"]: c["color"] for c in preset_schema("glacier_outlines")["classes"]}
    image = np.zeros(predicted.shape + (3,))
    for value, colour in colours.items():
        image[predicted == value] = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    fig, axes = plt.subplots(1, 2, figsize=(16, 6.8))
    axes[0].imshow(np.moveaxis(rgb, 0, -1))
    axes[0].set_title("Landsat 7 bands 3, 2, 1 (2000-10-30); RGI 6.0 outlines in red")
    axes[1].imshow(image)
    axes[1].set_title(f"{title}: test macro F1 {result['macro_f1']:.3f}, glacier IoU "
                      f"{result['glacier_iou']:.3f}")
    for ax in axes:
        ax.contour(truth == 2, [0.5], colors="red", linewidths=0.6)
        ax.contour(test, [0.5], colors="yellow", linewidths=1.0, linestyles="dashed")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--keep", help="folder for the datasets, models, maps and figures "
                                       "(models found there are reused)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, of: " + ", ".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        sys.exit(f"Unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    import_plugin()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from osgeo import gdal

    work = args.keep or tempfile.mkdtemp(prefix="fjord-everest-")
    os.makedirs(work, exist_ok=True)
    paths, truth, test = prepare(args.data, work)
    train_labels = np.where(test, 0, truth)
    rgb = gdal.Open(paths["rgb"]).ReadAsArray()

    def progress(fraction, message=None):
        if message and not message.startswith("{"):
            print(f"   {message}", flush=True)

    print(f"Everest: {truth.shape[1]} x {truth.shape[0]} px, {int(test.sum()):,} test pixels "
          f"({100 * test.mean():.1f} %), {int((train_labels > 0).sum()):,} training pixels; "
          f"glacier {100 * (truth == 2).mean():.1f} % of the scene", flush=True)
    results, seconds, maps = {}, {}, {}
    for name in methods:
        if name in results:
            continue
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        if name.startswith("random forest"):
            maps[name] = random_forest(paths, train_labels, name.endswith("texture"), args.seed)
            done = {name: None}
        elif name.startswith("CSC"):
            ks = [int(m.split("=")[1]) for m in methods if m.startswith("CSC K")] or [7]
            done = run_csc(paths, work, args.seed, progress, ks)
        else:
            base = name.replace(" + TTA", "")
            done = run_unet(paths, work, base, UNETS[base], args.seed, progress)
        elapsed = time.perf_counter() - t0
        for key, path in done.items():
            if path is not None:
                maps[key] = read_map(path)
            results[key] = scores(truth, maps[key], test)
            seconds[key] = elapsed
            figure(os.path.join(work, key.lower().replace(" ", "_").replace(",", "")
                                .replace("=", "").replace("+", "plus") + ".png"),
                   key, rgb, maps[key], truth, test, results[key])
            print(f"   {key}: macro F1 {results[key]['macro_f1']:.3f}, glacier IoU "
                  f"{results[key]['glacier_iou']:.3f}", flush=True)

    order = [m for m in METHODS if m in results]
    print(f"\nEverest, test pixels ((row // {BLOCK} + col // {BLOCK}) % 3 == 0), seed {args.seed}")
    print("| method | macro F1 | glacier IoU | accuracy | s |")
    print("|---|---|---|---|---|")
    for name in order:
        r = results[name]
        print(f"| {name} | {r['macro_f1']:.3f} | {r['glacier_iou']:.3f} | {r['accuracy']:.3f} "
              f"| {seconds[name]:.0f} |")
    best = max(order, key=lambda n: results[n]["macro_f1"])
    rf = results.get("random forest + texture")
    goal = results[best]["macro_f1"] >= 0.89 and results[best]["glacier_iou"] >= 0.80
    print(f"\nbest: {best}, macro F1 {results[best]['macro_f1']:.3f}, glacier IoU "
          f"{results[best]['glacier_iou']:.3f}"
          + (f" ({results[best]['macro_f1'] - rf['macro_f1']:+.3f} macro F1 against the random "
             "forest with texture)" if rf else "")
          + f"; goal (macro F1 >= 0.89 and glacier IoU >= 0.80) {'met' if goal else 'NOT met'}")
    with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"results": results, "seconds": seconds}, f, indent=2)
    print(f"maps, models and figures in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
