"""The README's worked example of fjord:terminuschange: the synthetic fjord's front through time.

    .venv/bin/python scripts/terminus_example.py [OUT_DIR]

Draws the demo's synthetic fjord (seed 0), takes its calving front and moves it along the fjord
through 2016-2024 (three scenes a year: a retreat of 60 m a year, a seasonal cycle of advance in
winter and calving in summer, and a loss of 250 m in the summer of 2021), and writes the dated fronts, the fjord's
centreline (drawn from the open sea up the glacier, MaQiT's direction) and a rectilinear box
around the front's range. Then runs ``qgis_process fjord:terminuschange`` with all three methods
and prints the table; the figure goes to OUT_DIR/terminus.png (and docs/terminus-example.png
with --docs).
"""

import csv
import datetime
import os
import shutil
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QGIS_PROCESS = "/usr/bin/qgis_process.bin"


def _plugin():
    plugins = os.path.join(REPO, ".plugins")
    os.makedirs(plugins, exist_ok=True)
    if not os.path.islink(os.path.join(plugins, "fjord")):
        os.symlink(REPO, os.path.join(plugins, "fjord"))
    sys.path.insert(0, plugins)
    return plugins


def _layer(path, name, srs, kind, features, fields=()):
    from osgeo import ogr

    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer(name, srs=srs, geom_type=kind)
    for field, ftype in fields:
        layer.CreateField(ogr.FieldDefn(field, ftype))
    for wkt, values in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        for field, value in values.items():
            if isinstance(value, datetime.date):
                feature.SetField(field, value.year, value.month, value.day, 0, 0, 0, 0)
            else:
                feature.SetField(field, value)
        layer.CreateFeature(feature)
    ds = None
    return path


def make_inputs(out):
    from osgeo import ogr, osr

    from fjord.core.prepare.synthetic import synthetic_fjord

    scene = synthetic_fjord((768, 1024), seed=0)
    gt = scene.geotransform
    srs = osr.SpatialReference()
    srs.ImportFromWkt(scene.crs_wkt)

    def to_map(col, row):
        return gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]

    # The centreline: the middle row of the fjord (water, mélange, ice: classes 1-5) in every
    # column, smoothed, from the sea (left) to the glacier (right).
    fjord = np.isin(scene.classes, (1, 2, 3, 4, 5))
    cols = np.array([c for c in range(0, scene.classes.shape[1], 8) if fjord[:, c].any()])
    rows = np.array([np.nonzero(fjord[:, c])[0].mean() for c in cols])
    rows = np.convolve(np.pad(rows, 4, mode="edge"), np.ones(9) / 9, mode="valid")
    centre = [to_map(c + 0.5, r + 0.5) for c, r in zip(cols, rows)]
    centreline = "LINESTRING(" + ", ".join(f"{x:.2f} {y:.2f}" for x, y in centre) + ")"

    # The fronts: the reference front moved along the fjord (columns) over time.
    front = scene.front  # (col, row)
    start, fronts = datetime.date(2016, 3, 1), []
    for k in range(27):
        day = start + datetime.timedelta(days=int(k * 365.25 / 3))
        years = (day - start).days / 365.25
        # + is up the fjord (the glacier is on the right): a retreat of 60 m a year, 80 m of
        # winter advance and summer calving, 250 m lost in the summer of 2021.
        shift_px = (6 * years - 8 * np.cos(2 * np.pi * (years - 0.1))
                    + (25 if day >= datetime.date(2021, 7, 1) else 0))
        wkt = "LINESTRING(" + ", ".join(
            "{:.2f} {:.2f}".format(*to_map(c + shift_px, r)) for c, r in front) + ")"
        fronts.append((wkt, {"date": day}))

    # The box: a rectangle along the fjord's direction at the front (the centreline from 1 km
    # below to 1 km above it), over the fronts' range, across the middle 40 % of the front.
    xy = np.array(centre)
    mid = np.array(to_map(*front.mean(axis=0)))
    near = np.hypot(*(xy - mid).T) < 1000
    d = xy[near][-1] - xy[near][0]
    d /= np.hypot(*d)
    n = np.array([-d[1], d[0]])
    along = (np.array([to_map(c, r) for c, r in front]) - mid) @ d
    a0, a1 = along.min() - 400, along.max() + 1100
    half_m = 0.2 * float(front[:, 1].max() - front[:, 1].min()) * gt[1]
    box = [tuple(mid + d * a + n * w) for a, w in ((a0, -half_m), (a1, -half_m), (a1, half_m),
                                                   (a0, half_m))]
    box_wkt = "POLYGON((" + ", ".join(f"{x:.2f} {y:.2f}" for x, y in box + box[:1]) + "))"
    return {
        "fronts": _layer(os.path.join(out, "fronts.gpkg"), "fronts", srs, ogr.wkbLineString,
                         fronts, [("date", ogr.OFTDate)]),
        "centreline": _layer(os.path.join(out, "centreline.gpkg"), "centreline", srs,
                             ogr.wkbLineString, [(centreline, {})]),
        "box": _layer(os.path.join(out, "box.gpkg"), "box", srs, ogr.wkbPolygon, [(box_wkt, {})]),
        "box_width_m": round(2 * half_m, -1),
    }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = os.path.abspath(args[0] if args else os.path.join(REPO, "demo-output", "terminus"))
    os.makedirs(out, exist_ok=True)
    plugins = _plugin()
    inputs = make_inputs(out)
    env = dict(os.environ, QGIS_PLUGINPATH=plugins, QT_QPA_PLATFORM="offscreen",
               QGIS_CUSTOM_CONFIG_PATH=os.path.join(out, ".qgis-profile"),
               FJORD_PYTHON=os.environ.get("FJORD_PYTHON", sys.executable))
    table, figure = os.path.join(out, "terminus.csv"), os.path.join(out, "terminus.png")
    command = [QGIS_PROCESS, "run", "fjord:terminuschange", "--",
               f"INPUT={inputs['fronts']}", f"CENTRELINE={inputs['centreline']}", "DIRECTION=0",
               f"BOX={inputs['box']}", f"BOX_WIDTH={inputs['box_width_m']}", f"OUTPUT={table}",
               f"FIGURE={figure}", f"OUTPUT_POINTS={os.path.join(out, 'crossings.gpkg')}"]
    print(" ".join(command[:4]) + " \\\n    " + " ".join(os.path.basename(a) if "=" not in a else
                                                       a.split("=")[0] + "=" + os.path.basename(a.split("=", 1)[1])
                                                       for a in command[4:]), flush=True)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "fjord"], env=env, capture_output=True)
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    with open(table, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")
    if "--docs" in sys.argv:
        shutil.copy(figure, os.path.join(REPO, "docs", "terminus-example.png"))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
