"""Screenshots of Fjord in the QGIS desktop, made headless under Xvfb, for the README.

    make screenshots     (or: .venv/bin/python scripts/screenshots.py [DEMO_OUTPUT] [DEST])

Needs the demo's output (``make demo``). Starts the real QGIS desktop on a virtual display
(``xvfb-run``) with a throwaway profile that enables Processing and this checkout of Fjord,
opens the demo project, and runs this same file inside QGIS (``qgis --code``), which takes:

- ``toolbox.png``: the QGIS window with the Processing Toolbox open on Fjord's groups, over the
  glacier demo's map;
- ``classifycsc.png``: the "CNN-supervised classification" dialog, filled in for the demo;
- ``map.png``: the map canvas around the calving front: CSC classes, the front, valley margins
  and the front's per-vertex error points;
- ``landcover.png``: the QGIS window with the land-cover demo's U-Net classes and their legend;
- ``everest.png``: the QGIS window with the real-glacier demo: the U-Net's glacier map of the
  Landsat 7 Everest scene with the RGI outlines over it;
- ``environment.png``: the environment dialog (Plugins > Fjord > Fjord environment…);
- ``training-monitor.png``: the training monitor while a 3-epoch phase-one training of the demo's
  glacier tiles runs in the desktop (a real run).

Each run writes the PNGs under temporary names and renames them when all succeeded.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

# Inside QGIS this file is exec'd without __file__ (and only the desktop part runs there).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(globals().get("__file__", "."))))
SCREEN = (1600, 1000)
NAMES = ("toolbox.png", "classifycsc.png", "map.png", "landcover.png", "everest.png",
         "environment.png", "training-monitor.png")


# --- inside QGIS (qgis --code) -------------------------------------------------------------------

def _desktop_steps(demo, dest):
    """The screenshots, one step at a time; a yielded number waits that many ms, a yielded
    callable is polled until it returns true."""
    import processing
    from qgis.core import (
        QgsApplication,
        QgsProcessingAlgRunnerTask,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProject,
    )
    from qgis.PyQt.QtCore import QModelIndex, Qt
    from qgis.utils import iface, plugins

    window = iface.mainWindow()
    window.setGeometry(0, 0, *SCREEN)
    project = QgsProject.instance()
    yield lambda: project.count() > 0
    root = project.layerTreeRoot()
    def show_group(start):
        for group in root.children():
            shown = group.name().startswith(start)
            group.setItemVisibilityChecked(shown)
            group.setExpanded(shown)

    show_group("Glacier: synthetic")
    layer = {lyr.name(): lyr for lyr in project.mapLayers().values()}
    canvas = iface.mapCanvas()
    # The glacier scene is in another UTM zone than the project (the land cover's): show it in
    # its own.
    classes = layer["CSC classes (K = 7)"]
    canvas.setDestinationCrs(classes.crs())
    iface.setActiveLayer(classes)
    iface.zoomToActiveLayer()
    canvas.refresh()
    yield 1000
    yield lambda: not canvas.isDrawing()

    # The Processing Toolbox, Fjord's groups open, the others closed.
    toolbox = plugins["processing"].toolbox
    toolbox.setVisible(True)
    toolbox.raise_()
    window.resizeDocks([toolbox], [400], Qt.Horizontal)
    tree = toolbox.algorithmTree
    tree.collapseAll()
    model = tree.model()
    for row in range(model.rowCount(QModelIndex())):
        index = model.index(row, 0, QModelIndex())
        if model.data(index) == "Fjord":
            tree.expandRecursively(index)
            break
    else:
        raise RuntimeError("The Processing Toolbox has no Fjord provider.")
    yield 500
    tree.scrollTo(index, tree.PositionAtTop)
    yield 1500
    yield lambda: not canvas.isDrawing()
    window.grab().save(os.path.join(dest, "toolbox.png.partial"), "PNG")

    # The map alone, closer to the front so that its error points show.
    extent = layer["Front error points (m)"].extent()
    extent.scale(1.6)
    canvas.setExtent(extent)
    canvas.refresh()
    yield 1000
    yield lambda: not canvas.isDrawing()
    canvas.grab().save(os.path.join(dest, "map.png.partial"), "PNG")

    # The land-cover demo: the U-Net map over the real scene.
    show_group("Land cover")
    toolbox.setVisible(False)
    unet = next(lyr for name, lyr in layer.items() if name.startswith("U-Net classes"))
    canvas.setDestinationCrs(unet.crs())
    canvas.setExtent(unet.extent())
    canvas.refresh()
    yield 1000
    yield lambda: not canvas.isDrawing()
    window.grab().save(os.path.join(dest, "landcover.png.partial"), "PNG")

    # The real glacier: the Everest U-Net map with the inventory outlines.
    show_group("Glacier: Everest")
    everest = next(lyr for name, lyr in layer.items() if name.startswith("Everest U-Net classes"))
    canvas.setDestinationCrs(everest.crs())
    canvas.setExtent(everest.extent())
    canvas.refresh()
    yield 1000
    yield lambda: not canvas.isDrawing()
    window.grab().save(os.path.join(dest, "everest.png.partial"), "PNG")

    # The classifycsc dialog, filled in as the demo ran it.
    dialog = processing.createAlgorithmDialog("fjord:classifycsc", {
        "INPUT": layer["Synthetic Sentinel-2 B4/B3/B2"].source(),
        "MODEL": os.path.join(demo, "glacier", "phase1.keras")})
    dialog.resize(1000, 800)
    dialog.show()
    yield 1500
    dialog.grab().save(os.path.join(dest, "classifycsc.png.partial"), "PNG")
    dialog.close()

    # The environment dialog, once its check has run.
    fjord = plugins["fjord"]
    fjord.show_environment()
    env = fjord.dialog
    env.resize(700, 800)
    yield lambda: env.report is not None and not env.running()
    yield 500
    env.grab().save(os.path.join(dest, "environment.png.partial"), "PNG")
    env.close()

    # The training monitor during a real (short) phase-one training in the desktop.
    work = os.path.join(dest, "training")  # inside the launcher's temporary folder
    alg = QgsApplication.processingRegistry().createAlgorithmById("fjord:trainphaseone")
    params = {"DATASET": os.path.join(demo, "glacier", "tiles"), "ARCHITECTURE": 1, "EPOCHS": 3,
              "BATCH_SIZE": 32, "TARGET_ACCURACY": 0, "PATIENCE": 0,
              "OUTPUT": os.path.join(work, "phase1.keras"), "REPORT": os.path.join(work, "report")}
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    done = {}
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    task.executed.connect(lambda ok, results: done.update(ok=ok, results=results))
    QgsApplication.taskManager().addTask(task)
    monitor = fjord.monitor
    yield lambda: "ok" in done
    if not done["ok"]:
        raise RuntimeError("The training in the desktop failed.")
    yield lambda: (monitor.current_run() or {}).get("status") == "finished"
    monitor.setFloating(True)
    monitor.resize(760, 420)
    yield 800
    monitor.grab().save(os.path.join(dest, "training-monitor.png.partial"), "PNG")


def _run_in_desktop():
    from qgis.core import QgsApplication, QgsProject
    from qgis.PyQt.QtCore import QTimer

    demo, dest = os.environ["FJORD_SHOTS_DEMO"], os.environ["FJORD_SHOTS_DEST"]
    status = os.path.join(dest, "status.json")
    steps = _desktop_steps(demo, dest)

    def finish(code, message=""):
        with open(status, "w", encoding="utf-8") as f:
            json.dump({"code": code, "message": message}, f)
        QgsProject.instance().setDirty(False)
        QgsApplication.exit(code)

    def advance():
        try:
            wait = next(steps)
        except StopIteration:
            finish(0)
            return
        except Exception:
            finish(1, traceback.format_exc())
            return
        if callable(wait):
            poll(wait)
        else:
            QTimer.singleShot(int(wait), advance)

    def poll(condition):
        try:
            ready = condition()
        except Exception:
            finish(1, traceback.format_exc())
            return
        QTimer.singleShot(0 if ready else 200, advance if ready else lambda: poll(condition))

    QTimer.singleShot(3000, advance)


# --- the launcher ---------------------------------------------------------------------------------

def main(demo, dest, timeout=600):
    project = os.path.join(demo, "fjord-demo.qgz")
    if not os.path.isfile(project):
        raise SystemExit(f"No demo project at {project}: run 'make demo' first.")
    xvfb, qgis = shutil.which("xvfb-run"), shutil.which("qgis")
    if not xvfb or not qgis:
        raise SystemExit("Screenshots need the QGIS desktop and Xvfb: apt-get install qgis xvfb")
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fjord-shots-") as tmp:
        plugins = os.path.join(tmp, "plugins")
        os.makedirs(plugins)
        os.symlink(REPO, os.path.join(plugins, "fjord"))
        ini = os.path.join(tmp, "profiles", "profiles", "default", "QGIS", "QGIS3.ini")
        os.makedirs(os.path.dirname(ini))
        with open(ini, "w", encoding="utf-8") as f:
            f.write("[PythonPlugins]\nprocessing=true\nfjord=true\n\n[qgis]\ncheckVersion=false\n"
                    "showTips318=false\nshowTips322=false\n")
        work = os.path.join(tmp, "out")
        os.makedirs(work)
        env = dict(os.environ, QGIS_PLUGINPATH=plugins, FJORD_SHOTS_DEMO=os.path.abspath(demo),
                   FJORD_SHOTS_DEST=work, FJORD_SHOTS_IN_QGIS="1")
        env.pop("QT_QPA_PLATFORM", None)  # the desktop draws on the virtual display
        env.setdefault("FJORD_PYTHON", os.path.join(REPO, ".venv", "bin", "python"))
        env.setdefault("XDG_RUNTIME_DIR", tmp)
        cmd = [xvfb, "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", qgis, "--nologo",
               "--noversioncheck", "--profiles-path", os.path.join(tmp, "profiles"),
               "--project", os.path.abspath(project), "--code", os.path.abspath(__file__)]
        print("== Starting QGIS on a virtual display", flush=True)
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"QGIS did not finish the screenshots within {timeout} s.") from None
        status = os.path.join(work, "status.json")
        if not os.path.isfile(status):
            raise SystemExit(f"QGIS exited ({proc.returncode}) before the screenshots:\n"
                             + proc.stderr[-3000:])
        with open(status, encoding="utf-8") as f:
            result = json.load(f)
        if result["code"] != 0:
            raise SystemExit("The screenshots failed inside QGIS:\n" + result["message"])
        for name in NAMES:
            shutil.move(os.path.join(work, name + ".partial"), os.path.join(dest, name))
            print(os.path.join(dest, name))


if os.environ.get("FJORD_SHOTS_IN_QGIS") == "1" and "qgis.utils" in sys.modules:
    _run_in_desktop()
elif __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else os.path.join(REPO, "demo-output"),
         args[1] if len(args) > 1 else os.path.join(REPO, "docs", "screenshots"))
