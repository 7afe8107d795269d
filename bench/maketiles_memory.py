"""Benchmark: building a tile dataset, Fjord's streamed builder against the in-memory approach.

    .venv/bin/python bench/maketiles_memory.py [--size 1536] [--keep]

Makes a synthetic fjord scene of SIZE x SIZE px (1x) and of 2*SIZE x 2*SIZE px (4x the area),
rasterises its training polygons, then builds a 50 px tile dataset (stride 25, rotations, no
thinning, so the dataset grows with the area) twice per scene, each in a fresh child process
that reports its own peak RSS (VmHWM):

- fjord:     ``fjord.core.prepare.tiles.build_dataset`` (two passes, strips, sequential .npy writes);
- in-memory: the published approach: the whole image in memory, every kept tile and its
             rotations stacked into one array, then saved with ``numpy.save``.

It prints tiles/s, input MB/s and peak RSS, and the ratios 4x / 1x. Fjord's peak RSS must stay
within 10 % from 1x to 4x. Worker jobs run with GDAL_CACHEMAX=256 (MB), as the QGIS worker does.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

from common import child_env, import_plugin, peak_rss_mb, run_child


def child(kind, image, labels, out):
    """Runs in the child process: build one dataset, print tiles and seconds as JSON."""
    import numpy as np
    from osgeo import gdal

    from fjord.core.prepare.tiles import build_dataset, dihedral, judge_tiles, window_counts

    t = time.perf_counter()
    if kind == "fjord":
        meta = build_dataset(image, labels, out, tile_size=50, stride=25, augment="rotations",
                             max_per_class=0, validation_fraction=0.2, seed=0)
        tiles = meta["windows"]["train"] + meta["windows"]["validation"]
    else:
        ds = gdal.Open(image)
        data = np.moveaxis(ds.ReadAsArray(), 0, -1)          # the whole image
        lab = gdal.Open(labels).ReadAsArray().astype(np.int64)
        n_values = int(lab.max()) + 1
        kept, classes = [], []
        for r in range(0, lab.shape[0] - 50 + 1, 25):
            counts = window_counts(lab[r:r + 50], np.ones((50, lab.shape[1]), bool), n_values, 50, 25)
            cls, why = judge_tiles(counts, 0.95, 0.10)
            for j in np.flatnonzero(why == 0):
                kept.append((r, j * 25))
                classes.append(cls[j])
        stack = np.stack([dihedral(data[r:r + 50, c:c + 50], k) for r, c in kept for k in range(4)])
        labels_out = np.repeat(np.array(classes, np.uint8), 4)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "tiles.npy"), stack)
        np.save(os.path.join(out, "labels.npy"), labels_out)
        tiles = len(stack)
    print(json.dumps({"tiles": int(tiles), "seconds": time.perf_counter() - t,
                      "peak_rss_mb": peak_rss_mb()}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--keep", action="store_true", help="keep the scenes and datasets")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    plugins = import_plugin()
    if args.child:
        return child(*args.child)

    from fjord.core.data import schema as schemas
    from fjord.core.prepare.rasterize import rasterize_labels
    from fjord.core.prepare.synthetic import write_synthetic_scene

    env = child_env(plugins)
    work = tempfile.mkdtemp(prefix="fjord-bench-data-")
    rows = []
    for scale, size in (("1x", args.size), ("4x", 2 * args.size)):
        print(f"generating the {scale} scene ({size} x {size} px)...", flush=True)
        paths = write_synthetic_scene(os.path.join(work, scale), shape=(size, size), seed=0)
        labels = os.path.join(work, scale, "label_raster.tif")
        rasterize_labels(paths["labels"], "class", paths["image"], labels,
                         schema=schemas.preset_schema("glacial"))
        mb = size * size * 4 * 2 / 2**20
        for kind in ("fjord", "in-memory"):
            out = os.path.join(work, f"{scale}-{kind}")
            r = run_child(__file__, env, kind, paths["image"], labels, out)
            rows.append((scale, size, kind, r["tiles"], r["seconds"], mb, r["peak_rss_mb"]))
            print(f"  {kind:<10} {r['tiles']:>7} tiles  {r['seconds']:6.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB",
                  flush=True)

    print()
    print(f"{'scene':<6} {'px':>11} {'builder':<10} {'tiles':>7} {'tiles/s':>9} {'input MB/s':>10} "
          f"{'peak RSS MB':>11}")
    for scale, size, kind, tiles, seconds, mb, rss in rows:
        print(f"{scale:<6} {f'{size}x{size}':>11} {kind:<10} {tiles:>7} {tiles / seconds:>9.0f} "
              f"{mb / seconds:>10.1f} {rss:>11.0f}")
    by = {(s, k): r for s, _, k, *r in rows}
    print()
    print(f"{'ratio 4x / 1x':<24} {'tiles':>7} {'peak RSS':>9}")
    for kind in ("fjord", "in-memory"):
        t = by[("4x", kind)][0] / by[("1x", kind)][0]
        m = by[("4x", kind)][3] / by[("1x", kind)][3]
        print(f"{kind:<24} {t:>7.2f} {m:>9.2f}")
    f_ratio = by[("4x", "fjord")][3] / by[("1x", "fjord")][3]
    verdict = "flat (within 10 %)" if f_ratio <= 1.10 else "NOT flat"
    print(f"\nFjord peak RSS 4x / 1x = {f_ratio:.2f}: {verdict}; in-memory / Fjord at 4x = "
          f"{by[('4x', 'in-memory')][3] / by[('4x', 'fjord')][3]:.1f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(plugins, ignore_errors=True)


if __name__ == "__main__":
    main()
