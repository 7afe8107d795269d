"""The shipped modeler workflows: registered by the provider, open in the modeler's format, run
by id through qgis_process."""

import json
import os

import pytest
from conftest import REPO
from osgeo import gdal

DEMO = os.path.join(REPO, "resources", "demo")


def test_workflows_are_registered_with_their_steps(qgis_app):
    from qgis.core import QgsApplication, QgsProcessingModelAlgorithm

    registry = QgsApplication.processingRegistry()
    for alg_id, title, steps in (
            ("fjord:glaciercscchain", "Glacier CSC chain",
             ["fjord:rasterizelabels", "fjord:maketiles", "fjord:trainphaseone", "fjord:classifycsc",
              "fjord:calvingfront"]),
            ("fjord:landcoverunetchain", "Land cover U-Net chain",
             ["fjord:rasterizelabels", "fjord:maketiles", "fjord:trainunet", "fjord:classifyunet",
              "fjord:validateclassification"]),
            ("fjord:terminuschangefromclassrasters", "Terminus change from class rasters",
             ["fjord:calvingfronts", "fjord:terminuschange"])):
        alg = registry.createAlgorithmById(alg_id)
        assert alg is not None and alg.displayName() == title and alg.group() == "Workflows"
        assert isinstance(alg, QgsProcessingModelAlgorithm)
        children = alg.childAlgorithms().values()
        assert sorted(c.algorithmId() for c in children) == sorted(steps)
        assert all(c.algorithm() is not None for c in children)
        # A plain QGIS model file: the graphical modeler opens it as it is.
        model = QgsProcessingModelAlgorithm()
        assert model.fromFile(alg.path) and len(model.childAlgorithms()) == len(steps)


@pytest.mark.slow
def test_glacier_chain_runs_by_id(qgis_process, glacier, tmp_path):
    proc = qgis_process("--json", "run", "fjord:glaciercscchain", "--", f"IMAGE={glacier['image']}",
                        f"POLYGONS={glacier['labels']}", "FIELD=name", "EPOCHS=3", "PATCH_SIZE=3",
                        "SAMPLES_PER_CLASS=2000", f"csc:CLASSES={tmp_path / 'classes.tif'}",
                        f"front:FRONT={tmp_path / 'front.gpkg'}",
                        f"front:MARGINS={tmp_path / 'margins.gpkg'}",
                        f"train:MODEL={tmp_path / 'phase1.keras'}",
                        f"csc:REPORT={tmp_path / 'report'}",
                        f"train:TRAINING_REPORT={tmp_path / 'training'}")
    results = json.loads(proc.stdout)["results"]
    assert results["csc:CLASSES"] == str(tmp_path / "classes.tif")
    for name in ("classes.tif", "classes.qml", "front.gpkg", "phase1.keras", "training/curves.png"):
        assert (tmp_path / name).exists(), name
    assert gdal.Open(str(tmp_path / "classes.tif")).RasterXSize == 512


@pytest.mark.slow
def test_landcover_chain_runs_by_id(qgis_process, tmp_path):
    image = os.path.join(DEMO, "S2L1C_T33UUU_20170216_B4B3B2B8.tif")
    polygons = os.path.join(DEMO, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    proc = qgis_process("--json", "run", "fjord:landcoverunetchain", "--", f"IMAGE={image}",
                        f"POLYGONS={polygons}", "FIELD=fclass", "WINDOW=64", "EPOCHS=2",
                        f"classify:CLASSES={tmp_path / 'unet.tif'}",
                        f"validate:SCORES={tmp_path / 'scores.csv'}",
                        f"train:MODEL={tmp_path / 'unet.keras'}",
                        f"train:TRAINING_REPORT={tmp_path / 'training'}")
    results = json.loads(proc.stdout)["results"]
    assert results["classify:CLASSES"] == str(tmp_path / "unet.tif")
    ds = gdal.Open(str(tmp_path / "unet.tif"))
    assert ds.RasterCount == 9 and ds.GetRasterBand(1).GetDescription() == "class"
    assert "accuracy" in (tmp_path / "scores.csv").read_text()
    assert (tmp_path / "unet.keras").is_file()
