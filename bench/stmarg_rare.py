"""A rare class on held-out river photos: sediment in St-Marguerite (../shared/data/stmarg).

    .venv/bin/python bench/stmarg_rare.py [--settings fjord,published] [--ks 1,7,15] [--keep DIR]

Sediment covers 1-8 % of the four photos whose hand-made labels have it (26607, 26758, 26806,
27113) and none of the other six. Two of the four are held out (26758 and 27113); the other
eight photos train every method, so the two held-out photos are unseen and both contain the
rare class.

Phase one: 50 px tiles, stride 50, the published tile rules, at most 600 tiles per class and
photo, 20 % validation, the compact network with rotations and flips on the fly (learning rate
1e-3, at most 30 epochs, patience 8), trained twice:

- ``published``: stop when the validation accuracy reaches 0.985, no class weights;
- ``fjord``: Fjord's defaults — stop when the validation *balanced* accuracy (mean recall over
  the classes) reaches 0.985, balanced class weights.

Each held-out photo is then classified with CSC (K = 1 MLP, K = 7 and K = 15 compact CNNs;
50,000 phase-two samples per class instead of the published 500,000 to keep the CPU run to
minutes; other settings the defaults of classifycsc), and with a random-forest pixel classifier
(scikit-learn, 100 trees, band values of up to 100,000 training pixels per class). Prints the
per-class F1 (sediment first) of every method on every held-out photo, and macro F1.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from stmarg_phase_one import DATA, _import, byte_labels, pairs, say

HELD_OUT = (26758, 27113)
NAMES = {1: "water", 2: "sediment", 3: "vegetation"}
SETTINGS = {
    "published": dict(target_metric="accuracy", class_weights="none"),
    "balanced": dict(target_metric="balanced_accuracy", class_weights="none"),
    "fjord": {},  # the defaults of train_phase_one
}


def tile_datasets(work, train_set):
    tiles = _import("core.prepare.tiles")
    folder = os.path.join(work, "tiles")
    if not os.path.isfile(os.path.join(folder, "dataset.json")):
        for i, (number, image, labels) in enumerate(train_set):
            lab = byte_labels(labels, os.path.join(work, f"labels_{number}.tif"))
            tiles.build_dataset(image, lab, folder, mode="tiles", tile_size=50, stride=50,
                                max_per_class=600, append=i > 0, seed=number)
    return folder, tiles.read_dataset(folder)


def random_forest(train_set, work, per_class=100_000, seed=0):
    from osgeo import gdal
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for number, image, labels in train_set:
        lab = gdal.Open(byte_labels(labels, os.path.join(work, f"labels_{number}.tif"))).ReadAsArray()
        data = gdal.Open(image).ReadAsArray()
        for value in NAMES:
            rows, cols = np.nonzero(lab == value)
            take = rng.choice(len(rows), min(len(rows), per_class // len(train_set)), replace=False)
            xs.append(data[:, rows[take], cols[take]].T)
            ys.append(np.full(len(take), value))
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    return forest.fit(np.concatenate(xs), np.concatenate(ys))


def f1_per_class(truth, predicted):
    from sklearn.metrics import f1_score

    keep = truth > 0
    present = [v for v in NAMES if (truth[keep] == v).any()]
    f1 = f1_score(truth[keep], predicted[keep], labels=present, average=None, zero_division=0)
    out = {NAMES[v]: float(f) for v, f in zip(present, f1)}
    out["macro"] = float(np.mean(f1))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="published,fjord")
    parser.add_argument("--ks", default="1,7,15")
    parser.add_argument("--samples", type=int, default=50_000, help="phase-two samples per class")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--keep", help="folder to keep the datasets, models and maps in")
    args = parser.parse_args()
    found = pairs(args.data)
    if len(found) < 10:
        sys.exit(f"Need the ten St-Marguerite photos in {args.data}")
    train_set = [p for p in found if p[0] not in HELD_OUT]
    held_out = [p for p in found if p[0] in HELD_OUT]
    work = args.keep or tempfile.mkdtemp(prefix="fjord-stmarg-rare-")
    os.makedirs(work, exist_ok=True)
    from osgeo import gdal

    csc = _import("core.learn.csc")
    train = _import("core.learn.phase_one")
    dataset, meta = tile_datasets(work, train_set)
    print(f"training photos {[n for n, _, _ in train_set]}, held out {list(HELD_OUT)}; tiles: "
          f"train {meta['counts']['train']}, validation {meta['counts']['validation']}", flush=True)
    rows = {}
    t = time.perf_counter()
    forest = random_forest(train_set, work)
    print(f"random forest trained ({time.perf_counter() - t:.0f} s)", flush=True)
    truths = {}
    for number, image, labels in held_out:
        reference = byte_labels(labels, os.path.join(work, f"labels_{number}.tif"))
        truths[number] = gdal.Open(reference).ReadAsArray()
        data = gdal.Open(image).ReadAsArray()
        predicted = forest.predict(data.reshape(data.shape[0], -1).T).reshape(data.shape[1:])
        rows[("random forest", number)] = f1_per_class(truths[number], predicted)
    ks = [int(k) for k in args.ks.split(",")]
    methods = ["random forest"]
    for name in args.settings.split(","):
        model = os.path.join(work, f"phase1_{name}.keras")
        if not os.path.isfile(model):
            t = time.perf_counter()
            result = train.train_phase_one(
                dataset, model, architecture="compact", epochs=30, batch_size=50,
                learning_rate=1e-3, patience=8, augment="rotations+flips", seed=0, progress=say,
                **SETTINGS[name])
            print(f"phase one ({name}): {result['epochs_run']} epochs, stopped by "
                  f"{result['stopped']}, validation recall per class "
                  f"{[round(c['recall'], 3) for c in result['classes']]} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        methods += [f"{name}: phase one"] + [f"{name}: CSC K = {k}" for k in ks]
        for number, image, _ in held_out:
            for k in ks:
                out = os.path.join(work, f"csc_{name}_{number}_k{k}.tif")
                first = os.path.join(work, f"phase1_{name}_{number}.tif")
                t = time.perf_counter()
                result = csc.classify_csc(image, model, out, patch_size=k,
                                          samples_per_class=args.samples, output_phase_one=first,
                                          seed=0)
                rows[(f"{name}: CSC K = {k}", number)] = f1_per_class(
                    truths[number], gdal.Open(out).ReadAsArray())
                rows[(f"{name}: phase one", number)] = f1_per_class(
                    truths[number], gdal.Open(first).ReadAsArray())
                print(f"StMarg {number}, {name}, K = {k}: sediment F1 "
                      f"{rows[(f'{name}: CSC K = {k}', number)].get('sediment', 0):.3f} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)

    print("\nF1 on the held-out photos (labelled pixels of the hand-made class rasters)")
    print("| method | photo | sediment | water | vegetation | macro |")
    print("|---|---|---|---|---|---|")
    for method in methods:
        for number in HELD_OUT:
            r = rows[(method, number)]
            print(f"| {method} | {number} | {r.get('sediment', 0):.3f} | {r.get('water', 0):.3f} | "
                  f"{r.get('vegetation', 0):.3f} | {r['macro']:.3f} |")
    print(f"maps and models in {work}")


if __name__ == "__main__":
    main()
