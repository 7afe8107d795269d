"""Terminus change of many fronts: seconds, and how the time grows with the number of fronts.

    .venv/bin/python bench/terminus_change.py [--sizes 1000,10000] [--vertices 200]

Synthetic record: a glacier 20 km long along a straight centreline, a 4 km wide rectilinear box
and a 3 km curvilinear box; N dated fronts of V vertices each (a wavy line across the fjord,
stepping back and forth over time), written to a GeoPackage in UTM. Each size runs the whole
job, ``terminus_change_files``: reading the layers, all three methods, the CSV table and the
crossing points (no figure), timed in this process; the baseline is the smallest size, and the
table gives the time per front and the ratio of each size's time to the baseline's scaled by the
number of fronts (1.0 = linear).
"""

import argparse
import datetime
import os
import sys
import tempfile
import time

import numpy as np
from common import import_plugin
from osgeo import ogr, osr

CRS = 32624


def write_fronts(path, n, vertices, seed=0):
    rng = np.random.default_rng(seed)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(CRS)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("fronts", srs=srs, geom_type=ogr.wkbLineString)
    layer.CreateField(ogr.FieldDefn("date", ogr.OFTDate))
    start = datetime.date(1985, 1, 1)
    y = np.linspace(-3000, 3000, vertices)
    position = 10000.0
    layer.StartTransaction()
    for i in range(n):
        position += rng.normal(0, 80)
        position = min(max(position, 6000), 14000)
        x = 500000 + position + 150 * np.sin(y / 700 + i) + rng.normal(0, 10, vertices)
        line = ogr.Geometry(ogr.wkbLineString)
        for xi, yi in zip(x, 7000000 + y):
            line.AddPoint_2D(float(xi), float(yi))
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(line)
        day = start + datetime.timedelta(days=i)  # daily fronts: 10,000 days is 27 years
        feature.SetField("date", day.year, day.month, day.day, 0, 0, 0, 0)
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    ds = None


def write_one(path, wkt, kind):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(CRS)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("layer", srs=srs, geom_type=kind)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
    layer.CreateFeature(feature)
    ds = None


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--vertices", type=int, default=200)
    args = parser.parse_args()
    import_plugin()
    from fjord.core.glaciers.terminus import terminus_change_files

    work = tempfile.mkdtemp(prefix="fjord-terminus-")
    centreline = os.path.join(work, "centreline.gpkg")
    box = os.path.join(work, "box.gpkg")
    write_one(centreline, "LINESTRING(500000 7000000, 520000 7000000)", ogr.wkbLineString)
    write_one(box, "POLYGON((502000 6998000, 518000 6998000, 518000 7002000, 502000 7002000, "
                   "502000 6998000))", ogr.wkbPolygon)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        fronts = os.path.join(work, f"fronts_{n}.gpkg")
        write_fronts(fronts, n, args.vertices)
        out = os.path.join(work, f"change_{n}.csv")
        t = time.perf_counter()
        result = terminus_change_files(fronts, out, centreline=centreline, direction=1, box=box,
                                       box_width=3000, output_points=os.path.join(
                                           work, f"points_{n}.gpkg"))
        seconds = time.perf_counter() - t
        rows.append((n, seconds, result))
        print(f"{n:,} fronts: {seconds:.1f} s, {result['notes']} with a note", flush=True)
    base_n, base_s, _ = rows[0]
    print(f"\nfronts of {args.vertices} vertices; centreline, rectilinear and curvilinear box")
    print("| fronts | s | ms per front | time ÷ baseline ÷ (fronts ÷ baseline fronts) |")
    print("|---|---|---|---|")
    for n, s, _ in rows:
        print(f"| {n:,} | {s:.1f} | {1000 * s / n:.2f} | {s / base_s / (n / base_n):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
