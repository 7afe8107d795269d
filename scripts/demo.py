"""The Fjord demo: runs the chain through qgis_process and writes a styled QGIS project.

    make demo                 (or: .venv/bin/python scripts/demo.py [OUTPUT_FOLDER] [--quick])

Real glacier: the bundled Landsat 7 scene of Mount Everest (resources/demo/everest) is stacked
with NDVI and NDWI, the Randolph Glacier Inventory outlines are rasterised onto it (glacier inside,
not glacier outside), the labels of a fixed third of the scene (160 px blocks) are held out, a
U-Net is trained on the rest, classifies the whole scene, and is validated on the held-out
blocks. Land cover: the bundled real Sentinel-2 scene (resources/demo) and its OpenStreetMap polygons
are rasterised onto the image grid; NDVI and NDWI are added to the bands, the stack is cut
into a segmentation dataset, a small U-Net is trained on it and classifies the scene over
blended windows, and the map is validated against the labels. Glacier: a synthetic
Sentinel-2-like fjord scene is generated, its training polygons rasterised with the glacial
class schema and cut into a phase-one tile dataset, the phase-one CNN is trained and the scene
classified with CSC; its calving front is extracted and measured against the reference front,
and the map is validated against the true classes. Everything runs
as a user's script would run it, through ``qgis_process``; the project ``fjord-demo.qgz``
opens every output styled and grouped, and a PNG of each map is written beside it.
"""

import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_DATA = os.path.join(REPO, "resources", "demo")
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # the Debian wrapper passes a flag 3.22 rejects


# Training lengths of the U-Nets: the demo's, and the test suite's quick run (--quick: the
# same chain and outputs, fewer epochs).
FULL = {"unet_epochs": 12, "everest_epochs": 6}
QUICK = {"unet_epochs": 3, "everest_epochs": 1}
EVEREST = os.path.join(DEMO_DATA, "everest")
HOLD_OUT_BLOCK = 160  # the split of bench/everest_glacier.py


def hold_out(labels, train_path, test_path, block=HOLD_OUT_BLOCK):
    """Two copies of a class raster: the training labels (0 where ``(row // block + col //
    block) % 3 == 0``) and the test labels (only there)."""
    import numpy as np
    from osgeo import gdal

    src = gdal.Open(labels)
    values = src.GetRasterBand(1).ReadAsArray()
    rows, cols = np.mgrid[:values.shape[0], :values.shape[1]]
    test = (rows // block + cols // block) % 3 == 0
    for path, keep in ((train_path, ~test), (test_path, test)):
        out = gdal.GetDriverByName("GTiff").CreateCopy(path, src, options=["COMPRESS=DEFLATE"])
        out.GetRasterBand(1).WriteArray(np.where(keep, values, 0).astype(values.dtype))
        out = None
        shutil.copy(os.path.splitext(labels)[0] + ".qml", os.path.splitext(path)[0] + ".qml")
    return int((values[test] > 0).sum())


def main(out_dir, quick=False):
    size = QUICK if quick else FULL
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the project and map images
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    plugins = os.path.join(out_dir, ".plugins")
    os.makedirs(plugins, exist_ok=True)
    link = os.path.join(plugins, "fjord")
    if os.path.islink(link) and os.readlink(link) != REPO:
        os.remove(link)
    if not os.path.islink(link):
        os.symlink(REPO, link)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=plugins,
               QGIS_CUSTOM_CONFIG_PATH=os.path.join(out_dir, ".qgis-profile"),
               FJORD_PYTHON=os.environ.get("FJORD_PYTHON", sys.executable),
               PYTHONPATH=os.pathsep.join([plugins] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p]))
    rows = []
    started = time.monotonic()
    # The demo owns its folder: datasets from an earlier run are rebuilt, not appended to.
    for old in ("everest/windows", "landcover/windows", "landcover/tiles", "glacier/tiles"):
        shutil.rmtree(os.path.join(out_dir, old), ignore_errors=True)

    def step(title, cmd, check=True):
        print(f"== {title}", flush=True)
        t = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"demo step failed: {title}")
        return proc.stdout, time.monotonic() - t

    def alg(title, alg_id, **params):
        args = [QGIS_PROCESS, "--json", "run", alg_id, "--"] + [
            f"{k}={v}" for k, values in params.items()
            for v in (values if isinstance(values, list) else [values])]
        stdout, seconds = step(title, args)
        results = json.loads(stdout)["results"]
        rows.append((title, alg_id, results, seconds))
        return results

    # "enable" fails when the plugin is enabled already; "help" tells whether the provider loads.
    step("Enabling the Fjord plugin in a demo QGIS profile", [QGIS_PROCESS, "plugins", "enable", "fjord"],
         check=False)
    step("Checking that the Fjord provider loads", [QGIS_PROCESS, "help", "fjord:rasterizelabels"])

    # Real glacier: Landsat 7 over Mount Everest, RGI outlines as labels.
    ev = os.path.join(out_dir, "everest")
    os.makedirs(ev, exist_ok=True)
    outlines = os.path.join(EVEREST, "15_rgi60_glacier_outlines.gpkg")
    ev_stack = alg("Everest: stack Landsat 7 bands 3 2 1 and 4 (NIR) with NDVI and NDWI",
                   "fjord:stackbands", INPUTS=[os.path.join(EVEREST, "LE71400412000304SGS00_RGB.tif"),
                                               os.path.join(EVEREST, "LE71400412000304SGS00_B4.tif")],
                   INDICES="0,1", OUTPUT=os.path.join(ev, "stack.tif"))
    ev_labels = alg("Everest: rasterise 86 RGI outlines (EPSG:4326) onto the UTM grid",
                    "fjord:rasterizelabels", INPUT=outlines, CLASS="glacier",
                    BACKGROUND="not glacier", PRESET=4, REFERENCE=ev_stack["OUTPUT"],
                    OUTPUT=os.path.join(ev, "outlines.tif"))
    ev_train, ev_test = os.path.join(ev, "labels_train.tif"), os.path.join(ev, "labels_test.tif")
    t = time.monotonic()
    held = hold_out(ev_labels["OUTPUT"], ev_train, ev_test)
    rows.append(("Everest: hold out the labels of every third 160 px block", "numpy + GDAL",
                 {"OUTPUT": f"{held:,} test px held out"}, time.monotonic() - t))
    alg("Everest: segmentation windows of the training blocks (128 px, stride 32)",
        "fjord:maketiles", INPUT=ev_stack["OUTPUT"], LABELS=ev_train, MODE=1, TILE_SIZE=128,
        STRIDE=32, SPLIT=1, OUTPUT=os.path.join(ev, "windows"))
    ev_model = alg(f"Everest: train a U-Net (defaults, {size['everest_epochs']} epochs)",
                   "fjord:trainunet", DATASET=os.path.join(ev, "windows"),
                   EPOCHS=size["everest_epochs"], OUTPUT=os.path.join(ev, "unet.keras"),
                   REPORT=os.path.join(ev, "unet-report"))
    ev_map = alg("Everest: classify the whole scene with the U-Net", "fjord:classifyunet",
                 INPUT=ev_stack["OUTPUT"], MODEL=ev_model["OUTPUT"],
                 OUTPUT=os.path.join(ev, "unet.tif"))
    alg("Everest: validate on the held-out blocks against the outlines",
        "fjord:validateclassification", INPUT=ev_map["OUTPUT"], REFERENCE=ev_test,
        OUTPUT=os.path.join(ev, "scores.csv"), OUTPUT_CONFUSION=os.path.join(ev, "confusion.csv"),
        FIGURE=os.path.join(ev, "confusion.png"))

    # Land cover: the real scene.
    lc = os.path.join(out_dir, "landcover")
    os.makedirs(lc, exist_ok=True)
    image = os.path.join(DEMO_DATA, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    polygons = os.path.join(DEMO_DATA, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    lc_labels = alg("Land cover: rasterise 604 OpenStreetMap polygons onto the Sentinel-2 grid",
                    "fjord:rasterizelabels", INPUT=polygons, FIELD="fclass", REFERENCE=image,
                    OUTPUT=os.path.join(lc, "osm_labels.tif"))
    stacked = alg("Land cover: stack B4 B3 B2 B8 with NDVI and NDWI", "fjord:stackbands",
                  INPUTS=image, INDICES="0,1", OUTPUT=os.path.join(lc, "stack.tif"))
    alg("Land cover: segmentation windows (128 px, spatial split)", "fjord:maketiles",
        INPUT=stacked["OUTPUT"], LABELS=lc_labels["OUTPUT"], MODE=1, TILE_SIZE=128, STRIDE=64,
        SPLIT=1, AUGMENT=0, OUTPUT=os.path.join(lc, "windows"))  # trainunet augments on the fly
    unet = alg(f"Land cover: train a U-Net (depth 4, 16 filters, {size['unet_epochs']} epochs at most)",
               "fjord:trainunet",
               DATASET=os.path.join(lc, "windows"), DEPTH=4, FILTERS=16, EPOCHS=size["unet_epochs"],
               BATCH_SIZE=8,
               LEARNING_RATE=2e-3, PATIENCE=6, CLASS_WEIGHTS=1, OUTPUT=os.path.join(lc, "unet.keras"),
               REPORT=os.path.join(lc, "unet-report"))
    lc_unet = alg("Land cover: classify the scene with the U-Net (blended windows)",
                  "fjord:classifyunet", INPUT=stacked["OUTPUT"], MODEL=unet["OUTPUT"],
                  OUTPUT=os.path.join(lc, "unet.tif"))
    alg("Land cover: validate the U-Net map against all OSM labels", "fjord:validateclassification",
        INPUT=lc_unet["OUTPUT"], REFERENCE=lc_labels["OUTPUT"], OUTPUT=os.path.join(lc, "unet_scores.csv"),
        OUTPUT_CONFUSION=os.path.join(lc, "unet_confusion.csv"),
        FIGURE=os.path.join(lc, "unet_confusion.png"))

    # Glacier: the synthetic fjord.
    gl = os.path.join(out_dir, "glacier")
    scene = os.path.join(gl, "scene")
    stdout, seconds = step("Glacier: generate the synthetic fjord scene (seed 0, 768 x 1024)",
                           [sys.executable, "-m", "fjord.core", "synthetic", scene, "--seed", "0"])
    paths = json.loads(stdout)
    rows.append(("Glacier: synthetic fjord scene", "python -m fjord.core synthetic",
                 {"OUTPUT": paths["image"]}, seconds))
    gl_labels = alg("Glacier: rasterise the training polygons with the glacial schema",
                    "fjord:rasterizelabels", INPUT=paths["labels"], FIELD="name",
                    REFERENCE=paths["image"], PRESET=1, OUTPUT=os.path.join(gl, "labels.tif"))
    alg("Glacier: phase-one tiles (50 px, stride 25, rotations)", "fjord:maketiles",
        INPUT=paths["image"], LABELS=gl_labels["OUTPUT"], MODE=0, AUGMENT=1, NOISE=10,
        OUTPUT=os.path.join(gl, "tiles"))
    alg("Glacier: train the phase-one CNN (compact, up to 5 epochs)", "fjord:trainphaseone",
        DATASET=os.path.join(gl, "tiles"), ARCHITECTURE=1, EPOCHS=5, LEARNING_RATE=1e-3,
        PATIENCE=0, OUTPUT=os.path.join(gl, "phase1.keras"), REPORT=os.path.join(gl, "phase1-report"))
    csc = alg("Glacier: CSC, phase two a 7 x 7 compact CNN, validated", "fjord:classifycsc",
              INPUT=paths["image"], MODEL=os.path.join(gl, "phase1.keras"), PATCH_SIZE=7,
              SAMPLES_PER_CLASS=5000, MAX_EPOCHS=20, PATIENCE=5, VALIDATION=paths["classes"],
              OUTPUT=os.path.join(gl, "csc.tif"), OUTPUT_PHASE_ONE=os.path.join(gl, "phase1.tif"),
              REPORT=os.path.join(gl, "csc-report"))
    front = alg("Glacier: calving front and valley margins of the CSC map", "fjord:calvingfront",
                INPUT=csc["OUTPUT"], OUTPUT=os.path.join(gl, "front.gpkg"),
                OUTPUT_MARGINS=os.path.join(gl, "margins.gpkg"),
                OUTPUT_RASTER=os.path.join(gl, "csc_front.tif"))
    alg("Glacier: front error against the reference front", "fjord:validatefront",
        INPUT=front["OUTPUT"], REFERENCE=paths["front"], OUTPUT=os.path.join(gl, "front_error.gpkg"),
        REPORT=os.path.join(gl, "front_error.csv"), FIGURE=os.path.join(gl, "front_error.png"))
    alg("Glacier: validate the CSC map against the true classes", "fjord:validateclassification",
        INPUT=csc["OUTPUT"], REFERENCE=paths["classes"], OUTPUT=os.path.join(gl, "scores.csv"),
        OUTPUT_CONFUSION=os.path.join(gl, "confusion.csv"), FIGURE=os.path.join(gl, "confusion.png"))

    print("== Writing the QGIS project and map images", flush=True)
    t = time.monotonic()
    project = write_project(out_dir, [
        ("Glacier: Everest, Landsat 7, 2000-10-30 (real)", [
            ("RGI 6.0 glacier outlines", outlines, "vector", True),
            ("Everest U-Net classes (band 1; bands 2.. class probabilities)", ev_map["OUTPUT"], "raster",
             True),
            ("Outline labels (rasterised)", ev_labels["OUTPUT"], "raster", False),
            ("Held-out test labels", ev_test, "raster", False),
            ("Landsat 7 bands 3 2 1 and 4 with NDVI, NDWI", ev_stack["OUTPUT"], "raster", False),
        ], "everest.png"),
        ("Land cover: Sentinel-2, Havel lakes (real)", [
            ("OpenStreetMap land-use labels", lc_labels["OUTPUT"], "raster", False),
            ("U-Net classes (band 1; bands 2.. class probabilities)", lc_unet["OUTPUT"], "raster", True),
            ("Sentinel-2 B4/B3/B2, 2017-02-16", image, "raster", True),
        ], "landcover.png"),
        ("Glacier: synthetic fjord", [
            ("Calving front (from CSC)", front["OUTPUT"], "vector", True),
            ("Front error points (m)", os.path.join(gl, "front_error.gpkg"), "vector", True),
            ("Valley margins", front["OUTPUT_MARGINS"], "vector", True),
            ("Reference calving front", paths["front"], "vector", False),
            ("CSC classes (K = 7)", csc["OUTPUT"], "raster", True),
            ("Phase-one classes", csc["OUTPUT_PHASE_ONE"], "raster", False),
            ("Training labels (rasterised)", gl_labels["OUTPUT"], "raster", False),
            ("True classes", paths["classes"], "raster", False),
            ("Synthetic Sentinel-2 B4/B3/B2", paths["image"], "raster", False),
        ], "glacier.png"),
    ])
    rows.append(("QGIS project and map images", "PyQGIS", {"OUTPUT": project}, time.monotonic() - t))

    print()
    width = max(len(title) for title, *_ in rows)
    print(f"{'step':<{width}} {'result':<44} {'s':>6}")
    for title, _, results, seconds in rows:
        if "LABELLED_PIXELS" in results:
            what = f"{results['CLASS_COUNT']} classes, {results['LABELLED_PIXELS']:,} px labelled"
        elif "BAND_NAMES" in results:
            what = results["BAND_NAMES"].replace(",", " ")
        elif "LENGTH_M" in results:
            what = f"front {results['LENGTH_M'] / 1000:.1f} km, {results['MARGIN_COUNT']} margins"
        elif "MEDIAN_M" in results:
            what = (f"median {results['MEDIAN_M']:.0f} m, mean {results['MEAN_M']:.0f} m, "
                    f"{100 * results['SHARE_UNDER_100M']:.0f} % < 100 m")
        elif "KAPPA" in results:
            what = (f"accuracy {results['OVERALL_ACCURACY']:.3f}, kappa {results['KAPPA']:.3f}, "
                    f"macro F1 {results['MACRO_F1']:.3f}")
        elif results.get("CSC_WEIGHTED_F1") is not None:
            what = (f"weighted F1 {results['PHASE_ONE_WEIGHTED_F1']:.3f} -> "
                    f"{results['CSC_WEIGHTED_F1']:.3f}")
        elif "VALIDATION_MEAN_IOU" in results:
            what = (f"validation accuracy {results['VALIDATION_ACCURACY']:.3f}, mean IoU "
                    f"{results['VALIDATION_MEAN_IOU']:.3f}")
        elif "VALIDATION_ACCURACY" in results:
            what = f"validation accuracy {results['VALIDATION_ACCURACY']:.3f}"
        elif "PIXELS_PER_SECOND" in results:
            what = f"{results['PIXELS_PER_SECOND']:,.0f} px/s"
        elif "TRAIN_COUNT" in results:
            what = f"{results['TRAIN_COUNT']:,} train / {results['VALIDATION_COUNT']:,} validation"
        else:
            what = os.path.basename(results.get("OUTPUT", ""))
        print(f"{title:<{width}} {what:<44} {seconds:6.1f}")
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s. Open {project} in QGIS;")
    print("map images: " + ", ".join(os.path.join(out_dir, png)
                                     for png in ("everest.png", "landcover.png", "glacier.png")))
    print(f"dataset previews: {os.path.join(gl, 'tiles', 'preview.png')}, "
          f"{os.path.join(lc, 'windows', 'preview.png')}")
    print(f"training reports: {os.path.join(ev, 'unet-report')}, {os.path.join(gl, 'phase1-report')}, "
          f"{os.path.join(lc, 'unet-report')}; "
          f"CSC figure: {csc['FIGURE']}")


def write_project(out_dir, groups):
    """A .qgz with one group per demo, every layer styled; a PNG of each group's visible layers."""
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import (
        QgsApplication,
        QgsFillSymbol,
        QgsLineSymbol,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsProject,
        QgsRasterLayer,
        QgsRectangle,
        QgsSingleSymbolRenderer,
        QgsVectorLayer,
        QgsWkbTypes,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    app = QgsApplication([], False)
    QgsApplication.setPrefixPath("/usr", True)
    app.initQgis()
    project = QgsProject.instance()
    project.clear()
    root = project.layerTreeRoot()
    for title, layers, png in groups:
        group = root.addGroup(title)
        loaded = []
        for name, path, kind, visible in layers:
            layer = QgsRasterLayer(path, name) if kind == "raster" else QgsVectorLayer(path, name, "ogr")
            if not layer.isValid():
                raise SystemExit(f"cannot open {path}")
            if kind == "vector" and not os.path.isfile(os.path.splitext(path)[0] + ".qml"):
                # Fjord's outputs carry their style; the reference front and outlines do not.
                if layer.geometryType() == QgsWkbTypes.PolygonGeometry:
                    symbol = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": "#e31a1c",
                                                         "outline_width": "0.35"})
                else:
                    symbol = QgsLineSymbol.createSimple({"line_color": "#1f1f1f", "line_width": "0.6",
                                                         "line_style": "dash"})
                layer.setRenderer(QgsSingleSymbolRenderer(symbol))
            project.addMapLayer(layer, False)
            group.addLayer(layer).setItemVisibilityChecked(visible)
            if visible:
                loaded.append(layer)
        settings = QgsMapSettings()
        settings.setLayers(loaded)
        settings.setDestinationCrs(loaded[-1].crs())
        extent = QgsRectangle(loaded[-1].extent())
        settings.setOutputSize(QSize(1200, int(1200 * extent.height() / extent.width())))
        settings.setExtent(extent)
        settings.setBackgroundColor(QColor("white"))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        job.renderedImage().save(os.path.join(out_dir, png))
    path = os.path.join(out_dir, "fjord-demo.qgz")
    project.setCrs(QgsRasterLayer(groups[0][1][-1][1]).crs())
    if not project.write(path):
        raise SystemExit(f"cannot write {path}")
    project.clear()
    return path


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    main(args[0] if args else os.path.join(REPO, "demo-output"), quick="--quick" in sys.argv[1:])
