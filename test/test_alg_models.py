"""fjord:importmodel and fjord:exportmodel inside a real headless QGIS: their interfaces, an
import and an export in the worker, and a refusal that leaves nothing behind."""

import pytest

pytest.importorskip("tf_keras")
import legacy_models  # noqa: E402 (after the skip: it needs tf_keras)


def test_algorithm_interface(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("fjord:importmodel")
    assert alg.group() == "Setup"
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == ["INPUT", "KIND", "BANDS", "TILE_SIZE", "SCALING", "MEAN", "STD", "CLASSES",
                     "PRESET", "OUTPUT"]
    assert [o.split(" ")[0] for o in alg.parameterDefinition("KIND").options()] == ["tile",
                                                                                    "segmentation"]
    assert alg.parameterDefinition("SCALING").options() == ["none", "÷255", "÷10000",
                                                            "per band (MEAN and STD)"]
    rasterize = QgsApplication.processingRegistry().algorithmById("fjord:rasterizelabels")
    assert alg.parameterDefinition("PRESET").options() == \
        rasterize.parameterDefinition("PRESET").options()


def test_import_then_classify_with_unet(run_alg, tmp_path):
    import numpy as np
    from helpers import write_raster

    legacy_models.small_unet(tmp_path / "unet.h5", window=None, bands=3, classes=4)
    res = run_alg("importmodel", {"INPUT": str(tmp_path / "unet.h5"), "KIND": 1,
                                  "BANDS": "R,G,B", "TILE_SIZE": 32, "SCALING": 1,
                                  "CLASSES": "1:water,2:ice:#e6f5ff,3:rock,4:snow",
                                  "OUTPUT": str(tmp_path / "unet.keras")})
    assert res["PARAMETERS"] > 0
    image = write_raster(tmp_path / "image.tif",
                         [np.random.default_rng(b).integers(0, 255, (40, 70), np.uint8)
                          for b in range(3)])
    out = run_alg("classifyunet", {"INPUT": image, "MODEL": res["OUTPUT"],
                                   "OUTPUT": str(tmp_path / "classes.tif")})
    assert (tmp_path / "classes.qml").is_file() and out["PIXELS_PER_SECOND"] > 0


def test_a_refusal_writes_nothing(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    legacy_models.lambda_model(tmp_path / "lambda.h5")
    with pytest.raises(QgsProcessingException, match="holds a Lambda layer"):
        run_alg("importmodel", {"INPUT": str(tmp_path / "lambda.h5"), "BANDS": "r,g,b",
                                "CLASSES": "1:a,2:b", "OUTPUT": str(tmp_path / "out.keras")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lambda.h5"]


def test_export_interface_and_run(qgis_app, run_alg, tmp_path):
    pytest.importorskip("onnxruntime")
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("fjord:exportmodel")
    assert alg.group() == "Setup"
    assert [p.name() for p in alg.parameterDefinitions()] == ["INPUT", "FORMAT", "OUTPUT"]
    assert alg.parameterDefinition("FORMAT").options() == ["ONNX (Deepness)"]
    legacy_models.small_unet(tmp_path / "unet.h5", window=32, bands=3, classes=2)
    model = run_alg("importmodel", {"INPUT": str(tmp_path / "unet.h5"), "KIND": 1,
                                    "BANDS": "R,G,B", "SCALING": 1, "CLASSES": "1:water,2:ice",
                                    "OUTPUT": str(tmp_path / "unet.keras")})["OUTPUT"]
    res = run_alg("exportmodel", {"INPUT": model, "OUTPUT": str(tmp_path / "unet.onnx")})
    assert res["MAX_DIFFERENCE"] <= 1e-4 and (tmp_path / "unet.onnx").stat().st_size > 0
