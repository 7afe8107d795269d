"""No output of any Fjord algorithm may replace one of its inputs (or another output): every
algorithm, every destination against every input file, as a plain path, through a symlinked
folder and as the GeoPackage behind a ``|layername=`` source."""

import os
import shutil

import numpy as np
import pytest
from helpers import write_raster
from osgeo import ogr, osr

ogr.UseExceptions()
FILE_INPUT_TYPES = ("raster", "vector", "source", "layer", "multilayer", "file")


def _fjord_algorithms():
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("fjord")
    from fjord.algorithms.base import FjordAlgorithm

    return [a for a in provider.algorithms()
            if isinstance(a, FjordAlgorithm) and a.destinationParameterDefinitions()]


def _polygons(path):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("fronts", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("class", "glacier")
    feature.SetGeometry(ogr.CreateGeometryFromWkt(
        "POLYGON ((500010 5799990, 500050 5799990, 500050 5799950, 500010 5799990))"))
    layer.CreateFeature(feature)
    ds = None
    return path


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _inputs(alg, folder):
    """Valid-looking values for every mandatory input (a file of its own for each file input),
    and the names of the file inputs."""
    params, files = {}, []
    for d in alg.parameterDefinitions():
        if d.isDestination():
            continue
        name, kind = d.name(), d.type()
        if kind in FILE_INPUT_TYPES:
            if d.flags() & d.FlagOptional and kind not in ("raster", "vector", "source", "multilayer"):
                continue
            if kind == "file" and d.behavior() == d.Folder:
                continue  # a folder is never an output file
            stem = os.path.join(folder, name.lower())
            if kind in ("vector", "source"):
                path = _polygons(stem + ".gpkg") + "|layername=fronts"
            elif kind == "file":
                path = stem + "." + (d.extension() or "txt")
                with open(path, "w") as f:
                    f.write("x")
            else:
                path = write_raster(stem + ".tif", np.ones((8, 8), np.uint8))
            params[name] = [path] if kind == "multilayer" else path
            files.append(name)
        elif not d.flags() & d.FlagOptional and d.defaultValue() is None:
            params[name] = "x" if kind == "string" else 1
    return params, files


@pytest.fixture()
def algorithms(qgis_app):
    return _fjord_algorithms()


def test_every_output_against_every_input_is_refused(run_alg, algorithms, tmp_path):
    from qgis.core import QgsProcessingException

    checked = []
    for alg in algorithms:
        for output in alg.destinationParameterDefinitions():
            folder = tmp_path / f"{alg.name()}-{output.name()}"
            folder.mkdir()
            params, files = _inputs(alg, str(folder))
            for victim in files:
                value = params[victim][0] if isinstance(params[victim], list) else params[victim]
                path = value.split("|")[0]
                before = _bytes(path)
                with pytest.raises(QgsProcessingException, match=f"{output.name()} would overwrite "
                                                                 f"the input {victim}"):
                    run_alg(alg.name(), dict(params, **{output.name(): path}))
                assert _bytes(path) == before
                checked.append((alg.name(), output.name(), victim))
    names = {a for a, _, _ in checked}
    assert {"terminuschange", "validatefront", "validateclassification", "calvingfront",
            "classifycsc", "stackbands", "rasterizelabels"} <= names
    assert any(a == "terminuschange" and o == "OUTPUT_POINTS" for a, o, _ in checked)


def test_a_symlinked_folder_and_another_output_are_caught(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    real = tmp_path / "real"
    real.mkdir()
    image = write_raster(real / "classes.tif", np.ones((8, 8), np.uint8))
    os.symlink(real, tmp_path / "link")
    with pytest.raises(QgsProcessingException, match="OUTPUT_RASTER would overwrite the input INPUT"):
        run_alg("calvingfront", {"INPUT": image, "OUTPUT": str(tmp_path / "f.gpkg"),
                                 "OUTPUT_RASTER": str(tmp_path / "link" / "classes.tif")})
    fronts = _polygons(str(tmp_path / "fronts.gpkg"))
    with pytest.raises(QgsProcessingException, match="would overwrite the output OUTPUT"):
        run_alg("terminuschange", {"INPUT": fronts + "|layername=fronts", "CENTRELINE": fronts,
                                   "OUTPUT": str(tmp_path / "t.gpkg"),
                                   "OUTPUT_POINTS": str(tmp_path / "t.gpkg")})
    shutil.rmtree(real)


def test_qgis_process_refuses_and_exits_non_zero(qgis_process, tmp_path):
    classes = write_raster(tmp_path / "classes.tif", np.ones((8, 8), np.uint8))
    before = _bytes(classes)
    proc = qgis_process("run", "fjord:validateclassification", "--", f"INPUT={classes}",
                        f"REFERENCE={classes}", f"OUTPUT={classes}", check=False)
    assert proc.returncode != 0
    assert "OUTPUT would overwrite the input INPUT" in proc.stdout + proc.stderr
    assert _bytes(classes) == before
