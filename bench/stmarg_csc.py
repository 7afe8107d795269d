"""CSC on real river photos (St-Marguerite, ../shared/data/stmarg) against a random forest.

    .venv/bin/python bench/stmarg_csc.py [--architecture compact] [--samples 100000] [--keep DIR]

Phase one is trained on the first seven photos (as bench/stmarg_phase_one.py: 50 px tiles,
rotations and flips, stop at 98.5 % validation accuracy). Each of the three held-out photos is
then classified with CSC, K = 1 (MLP) and K = 7 (compact CNN), validated against its hand-made
class raster. The baseline is a random-forest pixel classifier (scikit-learn, 100 trees) trained
on labelled pixels of the same seven photos (the band values of up to --rf-samples pixels per
class, drawn evenly from the photos), applied to every pixel of the held-out photos and scored
on the same reference pixels. Prints the weighted and macro F1 of each method per photo and
their mean.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from stmarg_phase_one import DATA, _import, byte_labels, pairs, train_model


def random_forest(train_set, work, per_class, seed=0):
    from osgeo import gdal
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for number, image, labels in train_set:
        lab = gdal.Open(byte_labels(labels, os.path.join(work, f"labels_{number}.tif"))).ReadAsArray()
        data = gdal.Open(image).ReadAsArray()
        for value in (1, 2, 3):
            rows, cols = np.nonzero(lab == value)
            take = rng.choice(len(rows), min(len(rows), per_class // len(train_set)), replace=False)
            xs.append(data[:, rows[take], cols[take]].T)
            ys.append(np.full(len(take), value))
    x, y = np.concatenate(xs), np.concatenate(ys)
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    forest.fit(x, y)
    return forest, np.bincount(y)[1:].tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="compact", choices=("compact", "vgg16"))
    parser.add_argument("--samples", type=int, default=100_000, help="phase-two samples per class")
    parser.add_argument("--rf-samples", type=int, default=100_000, help="random-forest pixels per class")
    parser.add_argument("--ks", default="1,7")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--keep", help="folder to keep the datasets, models and maps in")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="fjord-stmarg-")
    found = pairs(args.data)
    if len(found) < 10:
        sys.exit(f"Need the ten St-Marguerite photos in {args.data}")
    train_set, held_out = found[:7], found[7:]
    model, _, _, _ = train_model(work, args.architecture, data=args.data)
    csc = _import("core.learn.csc")
    metrics = _import("core.evaluate.metrics")
    from osgeo import gdal

    t = time.perf_counter()
    forest, rf_counts = random_forest(train_set, work, args.rf_samples)
    print(f"random forest: {sum(rf_counts):,} training pixels {rf_counts}, {time.perf_counter() - t:.0f} s",
          flush=True)
    ks = [int(k) for k in args.ks.split(",")]
    table = []
    for number, image, labels in held_out:
        reference = os.path.join(work, f"labels_{number}.tif")
        byte_labels(labels, reference)
        row = {"photo": number}
        for k in ks:
            t = time.perf_counter()
            result = csc.classify_csc(image, model, os.path.join(work, f"csc_{number}_k{k}.tif"),
                                      patch_size=k, samples_per_class=args.samples,
                                      validation=reference, report=os.path.join(work, f"report_k{k}"),
                                      seed=0)
            s = result["scores"]
            row["phase one"] = s["phase_one"]
            row[f"CSC K={k}"] = s["csc"]
            print(f"StMarg {number} K={k}: phase one {s['phase_one']['weighted']['f1']:.3f}, CSC "
                  f"{s['csc']['weighted']['f1']:.3f} ({time.perf_counter() - t:.0f} s, "
                  f"{result['phase_two']['epochs_run']} epochs)", flush=True)
        ds = gdal.Open(image)
        data = ds.ReadAsArray()
        predicted = forest.predict(data.reshape(data.shape[0], -1).T).reshape(data.shape[1:])
        truth = gdal.Open(reference).ReadAsArray()
        conf = metrics.Confusion(3)
        conf.add(truth, predicted)
        row["random forest"] = metrics.class_scores(conf.matrix)
        table.append(row)
    methods = ["phase one"] + [f"CSC K={k}" for k in ks] + ["random forest"]
    for key in ("weighted", "macro"):
        print(f"\n{key} F1 on the held-out photos")
        print(f"{'photo':>8} " + " ".join(f"{m:>14}" for m in methods))
        for row in table:
            print(f"{row['photo']:>8} " + " ".join(f"{row[m][key]['f1']:>14.3f}" for m in methods))
        print(f"{'mean':>8} " + " ".join(
            f"{np.mean([row[m][key]['f1'] for row in table]):>14.3f}" for m in methods))


if __name__ == "__main__":
    main()
