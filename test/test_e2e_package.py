"""The plugin ZIP (`make package`): what it holds, and that it installs and runs from a clean
QGIS profile through qgis_process."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

QGIS_PROCESS = "/usr/bin/qgis_process.bin"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "package.py"), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (path,) = [os.path.join(out, f) for f in os.listdir(out)]
    return path


def test_zip_holds_the_plugin_folder_without_development_files(package):
    assert os.path.basename(package) == "fjord-0.1.0.zip"
    names = zipfile.ZipFile(package).namelist()
    assert all(n.startswith("fjord/") for n in names)
    for needed in ("fjord/__init__.py", "fjord/metadata.txt", "fjord/plugin.py", "fjord/LICENSE",
                   "fjord/requirements.txt", "fjord/algorithms/provider.py", "fjord/core/learn/unet.py",
                   "fjord/models/unet.py", "fjord/resources/icons/fjord.svg", "fjord/ui/training_monitor.py",
                   "fjord/ui/environment_dialog.py",
                   "fjord/resources/schemas/glacial.json", "fjord/resources/models/glacier_csc_chain.model3",
                   "fjord/resources/models/landcover_unet_chain.model3"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("fjord/test/", "fjord/bench/", "fjord/.ci/",
                                                  "fjord/scripts/", "fjord/docs/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "Makefile"))]


@pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process not installed")
def test_zip_installs_into_a_clean_profile_and_runs(package, tmp_path):
    from helpers import box, make_layer, make_raster

    profile = tmp_path / "profile"
    plugins = profile / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(package).extractall(plugins)  # what Install from ZIP does
    # Nothing points at the checkout: the only Fjord QGIS can find is the one unpacked here.
    env = {k: v for k, v in os.environ.items() if k not in ("QGIS_PLUGINPATH", "PYTHONPATH")}
    env.update(QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(profile),
               FJORD_PYTHON=sys.executable)

    def run(*args):
        return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True,
                              timeout=300)

    run("plugins", "enable", "fjord")
    image = make_raster(tmp_path / "image.tif", width=60, height=40)
    polygons = make_layer(tmp_path / "labels.gpkg", [(box(500100, 5799700, 500300, 5799900), 1),
                                                     (box(500350, 5799650, 500550, 5799850), 2)])
    out = tmp_path / "labels.tif"
    proc = run("--json", "run", "fjord:rasterizelabels", "--", f"INPUT={polygons}", "FIELD=cls",
               f"REFERENCE={image}", f"OUTPUT={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["results"]["LABELLED_PIXELS"] == 400 + 400
    assert "front:FRONT" in run("help", "fjord:glaciercscchain").stdout  # the workflows resolve
    # The worker (the deep-learning side) runs the installed copy's core too.
    proc = run("--json", "run", "fjord:checkenvironment", "--", f"OUTPUT={tmp_path / 'env.json'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "env.json").read_text())["libraries"]["keras"]
