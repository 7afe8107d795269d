"""`make demo`'s script, run as the README's command runs it, into a temporary folder; then
`make screenshots`'s script on its output (the QGIS desktop under Xvfb)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from helpers import colour_pixels

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/qgis_process.bin"),
                                reason="qgis_process not installed")


@pytest.mark.slow
def test_demo_writes_styled_outputs_and_a_project(tmp_path, qgis_app):
    env = dict(os.environ, FJORD_PYTHON=sys.executable)
    # --quick: the same chain and outputs with fewer U-Net epochs (the full demo is `make demo`).
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), str(tmp_path), "--quick"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Demo finished" in proc.stdout
    for path in ("landcover/osm_labels.tif", "landcover/osm_labels.qml", "glacier/labels.tif",
                 "glacier/scene/image.tif", "glacier/scene/front.gpkg", "landcover.png",
                 "glacier.png", "fjord-demo.qgz", "glacier/phase1.keras",
                 "glacier/phase1-report/curves.png", "glacier/phase1-report/confusion_matrix.png",
                 "glacier/csc.tif", "glacier/csc-report/CSC_image.png", "glacier/front.gpkg",
                 "glacier/front_error.gpkg", "glacier/front_error.csv", "glacier/scores.csv",
                 "glacier/confusion.png", "landcover/unet.keras", "landcover/unet.tif",
                 "landcover/unet.qml", "landcover/unet-report/validation_scores.csv",
                 "landcover/unet_scores.csv", "everest/stack.tif", "everest/outlines.tif",
                 "everest/labels_train.tif", "everest/labels_test.tif", "everest/unet.keras",
                 "everest/unet.tif", "everest/scores.csv", "everest.png"):
        assert (tmp_path / path).is_file(), path
    from qgis.core import QgsProject
    project = QgsProject()
    assert project.read(str(tmp_path / "fjord-demo.qgz"))
    layers = {layer.name(): layer for layer in project.mapLayers().values()}
    assert len(layers) == 17 and all(layer.isValid() for layer in layers.values())
    for name in ("OpenStreetMap land-use labels", "Training labels (rasterised)", "CSC classes (K = 7)",
                 "Everest U-Net classes (band 1; bands 2.. class probabilities)", "Outline labels (rasterised)",
                 "U-Net classes (band 1; bands 2.. class probabilities)"):
        assert layers[name].renderer().type() == "paletted"
    assert layers["Calving front (from CSC)"].renderer().symbol().color().name() == "#ff0000"
    assert layers["RGI 6.0 glacier outlines"].renderer().symbol().symbolLayer(0).strokeColor().name() == "#e31a1c"
    assert layers["Front error points (m)"].renderer().type() == "graduatedSymbol"
    assert "weighted F1" in proc.stdout and "median" in proc.stdout

    # The README's screenshots, made from this demo in the QGIS desktop under Xvfb.
    shots = tmp_path / "shots"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "screenshots.py"), str(tmp_path),
                           str(shots)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from qgis.PyQt.QtGui import QColor, QImage

    images = {name: QImage(str(shots / name)) for name in (
        "toolbox.png", "classifycsc.png", "map.png", "landcover.png", "everest.png", "environment.png",
        "training-monitor.png")}
    assert all(not image.isNull() for image in images.values())
    assert (images["toolbox.png"].width(), images["toolbox.png"].height()) == (1600, 1000)
    # The map: the red calving front over the CSC classes (iceberg water, glacier ice).
    glacial = {c["name"]: c["color"]
               for c in json.loads((tmp_path / "glacier" / "labels.schema.json").read_text())["classes"]}
    assert colour_pixels(images["map.png"], QColor("#ff0000")) > 100
    assert colour_pixels(images["map.png"], QColor(glacial["iceberg water"]), 10) > 1000
    assert colour_pixels(images["map.png"], QColor(glacial["glacier ice"]), 10) > 1000
    # The real glacier: the U-Net's glacier class and the red RGI outlines.
    outline = {c["name"]: c["color"]
               for c in json.loads((tmp_path / "everest" / "outlines.schema.json").read_text())["classes"]}
    assert colour_pixels(images["everest.png"], QColor("#e31a1c"), 10) > 100
    assert colour_pixels(images["everest.png"], QColor(outline["not glacier"]), 10) > 1000
    # The training monitor drew curves (its blue and orange) from a real run in the desktop.
    assert colour_pixels(images["training-monitor.png"], QColor("#1f77b4")) > 100
    assert colour_pixels(images["training-monitor.png"], QColor("#ff7f0e")) > 100
