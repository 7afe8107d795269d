"""fjord:checkenvironment: the report, and creating the dedicated environment."""

import json
import os
import sys

import pytest


def test_report_as_json_and_html(run_alg, tmp_path):
    res = run_alg("checkenvironment", {"OUTPUT": str(tmp_path / "env.json")})
    rep = json.loads((tmp_path / "env.json").read_text())
    assert res["PYTHON"] == sys.executable == rep["executable"]
    assert rep["libraries"]["osgeo"] and rep["libraries"]["numpy"].startswith("1.")
    assert res["BACKEND"] == rep["backend"] == "tensorflow"
    assert res["OK"] is True and res["GPU_COUNT"] == 0
    run_alg("checkenvironment", {"OUTPUT": str(tmp_path / "env.html")})
    html = (tmp_path / "env.html").read_text()
    assert "<h1>Fjord environment</h1>" in html and "keras" in html


def test_install_creates_the_environment_in_the_profile(run_alg, tmp_path):
    from qgis.core import QgsApplication

    from fjord.core.environment import venv_python

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy<2\n")  # already there through the system site packages
    res = run_alg("checkenvironment", {"INSTALL": True, "REQUIREMENTS": str(requirements),
                                       "OUTPUT": str(tmp_path / "env.json")})
    venv = os.path.join(QgsApplication.qgisSettingsDirPath(), "fjord", "venv")
    assert res["PYTHON"] == venv_python(venv) and os.path.isfile(res["PYTHON"])
    rep = json.loads((tmp_path / "env.json").read_text())
    assert rep["executable"] == venv_python(venv) and rep["libraries"]["osgeo"]


def test_a_failed_install_says_what_to_run(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this is not a requirement ((\n")
    with pytest.raises(QgsProcessingException) as err:
        run_alg("checkenvironment", {"INSTALL": True, "REQUIREMENTS": str(requirements)})
    assert "pip could not install" in str(err.value) and "-m pip install -r" in str(err.value)


@pytest.mark.parametrize("install", [False, True])
def test_a_requirements_file_that_does_not_exist_is_refused(run_alg, tmp_path, install):
    from qgis.core import QgsProcessingException

    missing = tmp_path / "no-such-requirements.txt"
    with pytest.raises(QgsProcessingException, match="no-such-requirements.txt.*does not exist"):
        run_alg("checkenvironment", {"INSTALL": install, "REQUIREMENTS": str(missing),
                                     "OUTPUT": str(tmp_path / "env.json")})
    assert not os.path.exists(tmp_path / "env.json")
