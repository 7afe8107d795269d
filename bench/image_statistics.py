"""What recording sub-area statistics adds to a per-image ``maketiles``: the time of
``area_statistics`` (8 quarter-size areas) against ``image_statistics`` (the whole image), on a
synthetic scene of Sentinel-2 tile size with and without overviews.

    .venv/bin/python bench/image_statistics.py [--side 10980]

Each figure is the best of 3 runs in this process, the file in the system's cache (it has just
been written): the decoding and decimation, not the disk.
"""

import argparse
import os
import tempfile
import time

import numpy as np
from common import import_plugin


def write_scene(path, side, bands=4):
    """A ``side`` x ``side`` uint16 GeoTIFF (tiled, deflate) of smooth random values."""
    from osgeo import gdal

    gdal.UseExceptions()
    ds = gdal.GetDriverByName("GTiff").Create(path, side, side, bands, gdal.GDT_UInt16,
                                              ["TILED=YES", "COMPRESS=DEFLATE"])
    rng = np.random.default_rng(0)
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        for row in range(0, side, 1024):
            rows = min(1024, side - row)
            band.WriteArray(rng.integers(200, 4000, (rows, side), dtype=np.uint16), 0, row)
    ds = None
    return path


def best_of(fn, img, runs=3):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(img)
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10980)
    args = parser.parse_args()
    import_plugin()
    with tempfile.TemporaryDirectory(prefix="fjord-stats-") as folder:
        table(write_scene(os.path.join(folder, "scene.tif"), args.side), args.side)


def table(path, side):
    from osgeo import gdal

    from fjord.core.data.rasters import ImageStrips
    from fjord.core.prepare.normalise import area_statistics, image_statistics

    print(f"{side} x {side} px, 4 bands uint16")
    print(f"{'overviews':<10} {'whole image s':>14} {'8 areas s':>10} {'ratio':>7}")
    for overviews in (False, True):
        if overviews:
            ds = gdal.Open(path, gdal.GA_Update)
            ds.BuildOverviews("AVERAGE", [2, 4, 8, 16])
            ds = None
        img = ImageStrips(path)
        whole = best_of(image_statistics, img)
        areas = best_of(area_statistics, img)
        img.close()
        print(f"{'yes' if overviews else 'no':<10} {whole:>14.2f} {areas:>10.2f} "
              f"{areas / whole:>7.2f}")


if __name__ == "__main__":
    main()
