"""Batch classification here against a Dask LocalCluster of 1 and 2 worker processes.

    .venv/bin/python bench/batch_scaling.py [--scenes 8] [--size 768x1024] [--keep DIR]

Eight synthetic scenes (768 x 1024 px, 4 bands, the fjord generator with a different seed
each) and one phase-one model trained on the first; a job table of one CSC job per scene
(K = 3, 20,000 phase-two samples per class, at most 10 epochs, patience 3) with a calving front
per job. The same table runs three times, each in a fresh Python process so that each pays for
loading the engine once: ``fjord:batchcsc``'s SCHEDULER empty (here, one job at a time),
``local:1`` and ``local:2``. Printed: wall time and its ratio to the run here, the cores kept
busy on average (CPU seconds of the run's processes over its wall time), the peak
resident memory of each process that ran jobs, the engine import and model load (once per
process, thanks to the worker cache) against the mean seconds per scene, and whether the class
rasters are byte-identical to those of the run here.
"""

import argparse
import csv
import filecmp
import json
import os
import shutil
import sys
import tempfile
import time

from common import child_env, import_plugin, run_child

MODES = (("here", ""), ("local:1", "local:1"), ("local:2", "local:2"))
OPTIONS = dict(samples_per_class=20_000, max_epochs=10, smoothing=2)


def prepare(work, scenes, shape):
    from fjord.core.data import schema as schemas
    from fjord.core.learn.phase_one import train_phase_one
    from fjord.core.prepare.rasterize import rasterize_labels
    from fjord.core.prepare.synthetic import write_synthetic_scene
    from fjord.core.prepare.tiles import build_dataset

    images = []
    for i in range(scenes):
        day = f"2019{3 + i // 28:02d}{1 + i % 28:02d}"
        paths = write_synthetic_scene(os.path.join(work, f"scene{i}"), shape=shape, seed=100 + i)
        name = os.path.join(work, "images", f"S2A_MSIL1C_{day}T101031_N0207_R022_T33XWG")
        os.makedirs(os.path.dirname(name), exist_ok=True)
        shutil.move(paths["image"], name + ".tif")
        shutil.move(paths["classes"], name + "_classes.tif")
        images.append(name + ".tif")
        if i == 0:
            labels = os.path.join(work, "labels.tif")
            rasterize_labels(paths["labels"], "class", name + ".tif", labels,
                             schema=schemas.preset_schema("glacial"))
    build_dataset(images[0], labels, os.path.join(work, "tiles"), mode="tiles", tile_size=32,
                  stride=16, max_per_class=400, seed=0)
    model = os.path.join(work, "phase1.keras")
    train_phase_one(os.path.join(work, "tiles"), model, architecture="compact", epochs=6,
                    batch_size=32, learning_rate=1e-3, patience=0, target_accuracy=0, seed=0)
    return images, model


def write_table(folder, images, model):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "jobs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Model", "DataSource", "OutFolder", "ExpShortHand", "Dims", "PatchSize",
                    "TileSize", "Patience", "Done", "Front"])
        for i, image in enumerate(images):
            w.writerow([model, image, f"out/s{i}", f"S{i}", 4, 3, 32, 3, 0, f"fronts/s{i}.gpkg"])
    return os.path.join(folder, "jobs.csv")


def child(jobs, scheduler):
    import_plugin()
    from fjord.core.run.batch import batch_csc, peak_memory_mb

    t0 = time.perf_counter()
    result = batch_csc(jobs, os.path.join(os.path.dirname(jobs), "summary.csv"),
                       fronts=os.path.join(os.path.dirname(jobs), "fronts.gpkg"),
                       scheduler=scheduler, **OPTIONS)
    result.pop("rows")
    result["wall"] = time.perf_counter() - t0
    result["coordinator_peak_mb"] = peak_memory_mb()
    # CPU seconds of this process and of its children (a local cluster's workers, reaped when
    # the cluster closed): how many cores the run kept busy on average
    import resource

    used = sum(getattr(resource.getrusage(who), k) for who in (resource.RUSAGE_SELF,
                                                                resource.RUSAGE_CHILDREN)
               for k in ("ru_utime", "ru_stime"))
    result["cores_busy"] = used / result["wall"]
    print(json.dumps(result, default=str))


def class_rasters(folder):
    found = {}
    for root, _, files in os.walk(os.path.join(folder, "out")):
        for name in files:
            if name.endswith(".tif"):
                path = os.path.join(root, name)
                found[os.path.relpath(path, folder)] = path
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("JOBS", "SCHEDULER"))
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", default="768x1024")
    parser.add_argument("--keep", help="folder for the scenes, model and outputs")
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1])
    plugins = import_plugin()
    work = args.keep or tempfile.mkdtemp(prefix="fjord-batch-bench-")
    os.makedirs(work, exist_ok=True)
    rows, cols = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    images, model = prepare(work, args.scenes, (rows, cols))
    print(f"{args.scenes} scenes of {cols} x {rows} px and a phase-one model in "
          f"{time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPU cores\n")
    results = {}
    for label, scheduler in MODES:
        folder = os.path.join(work, label.replace(":", "_"))
        shutil.rmtree(folder, ignore_errors=True)
        jobs = write_table(folder, images, model)
        results[label] = run_child(os.path.abspath(__file__), child_env(plugins), jobs,
                                   scheduler or "here")
        results[label]["folder"] = folder
        r = results[label]
        print(f"{label}: {r['wall']:.1f} s, {r['ran']} jobs run, {r['failed']} failed",
              flush=True)
    base = results["here"]
    reference = class_rasters(base["folder"])
    print("\n| run | wall s | vs here | cores busy | s per scene (mean of jobs) | processes "
          "running jobs: peak MB | engine import s | model loads (s) / cache hits | maps identical "
          "to here |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, _ in MODES:
        r = results[label]
        per_scene = sum(j["seconds"] for j in r["jobs"]) / max(1, len(r["jobs"]))
        peaks = {}
        for j in r["jobs"]:
            key = j.get("worker") or "here"
            peaks[key] = max(peaks.get(key, 0.0), j.get("peak_mb") or 0.0)
        if label == "here":
            peaks = {"here": r["coordinator_peak_mb"]}
        maps = class_rasters(r["folder"])
        same = sorted(maps) == sorted(reference) and all(
            filecmp.cmp(reference[k], maps[k], shallow=False) for k in reference)
        loads = r["loads"]
        print(f"| {label} | {r['wall']:.1f} | {base['wall'] / r['wall']:.2f}x | "
              f"{r['cores_busy']:.2f} | {per_scene:.1f} | "
              f"{', '.join(f'{v:.0f}' for v in peaks.values())} | "
              f"{loads['engine_seconds']:.1f} | {loads['loads']} ({loads['load_seconds']:.2f}) / "
              f"{loads['hits']} | {'yes' if same else 'NO'} ({len(maps)} files) |")
    r = results["local:2"]
    once = (r["loads"]["engine_seconds"] + r["loads"]["load_seconds"]) / max(1, r["loads"]["loads"])
    print(f"\nEngine import + model load per worker process: {once:.1f} s; mean scene "
          f"{sum(j['seconds'] for j in r['jobs']) / len(r['jobs']):.1f} s. Loaded once per worker "
          f"instead of once per scene, this saves {once * (len(r['jobs']) - r['loads']['loads']):.0f}"
          f" s of {len(r['jobs'])} scenes' work on local:2.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
