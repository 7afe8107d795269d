"""Write the shipped modeler workflows (``resources/models/*.model3``) with the PyQGIS model API.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_workflows.py

The files are committed; run this again after changing a workflow here. The provider
registers every ``.model3`` in ``resources/models`` (``algorithms/workflows.py``).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "resources", "models")


def _build(name, group, help_text, parameters, steps, outputs):
    """A model: ``parameters`` [(parameter, x, y)], ``steps`` [(child id, algorithm id,
    description, {param: source})], ``outputs`` {(child id, child output): (name, description)}.
    A source is ('param', name), ('child', child id, output) or ('value', value)."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source
    from qgis.PyQt.QtCore import QPointF

    model = QgsProcessingModelAlgorithm(name, group, group.lower())
    model.setHelpContent({"ALG_DESC": help_text, "ALG_CREATOR": "Fjord"})
    for i, definition in enumerate(parameters):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120 + 220 * (i % 4), 60 + 60 * (i // 4)))
        model.addModelParameter(definition, component)
    for i, (child_id, alg_id, description, sources) in enumerate(steps):
        child = QgsProcessingModelChildAlgorithm(alg_id)
        child.setChildId(child_id)
        child.setDescription(description)
        child.setPosition(QPointF(300, 200 + 110 * i))
        for param, source in sources.items():
            if source[0] == "param":
                value = Source.fromModelParameter(source[1])
            elif source[0] == "child":
                value = Source.fromChildOutput(source[1], source[2])
            else:
                value = Source.fromStaticValue(source[1])
            child.addParameterSources(param, [value])
        mine = {}
        for (cid, child_output), (out_name, out_description) in outputs.items():
            if cid == child_id:
                out = QgsProcessingModelOutput(out_name, out_description)
                out.setChildId(child_id)
                out.setChildOutputName(child_output)
                out.setDescription(out_description)
                out.setPosition(QPointF(600, 200 + 110 * i))
                mine[out_name] = out
        child.setModelOutputs(mine)
        model.addChildAlgorithm(child)
    model.updateDestinationParameters()  # the outputs become the model's destination parameters
    return model


def glacier_chain():
    from qgis.core import (
        QgsProcessing,
        QgsProcessingParameterField,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterVectorLayer,
    )

    num = QgsProcessingParameterNumber
    parameters = [
        QgsProcessingParameterRasterLayer("IMAGE", "Image"),
        QgsProcessingParameterVectorLayer("POLYGONS", "Training polygons (glacial classes)",
                                          [QgsProcessing.TypeVectorPolygon]),
        QgsProcessingParameterField("FIELD", "Class field (names or values of the glacial schema)",
                                    parentLayerParameterName="POLYGONS"),
        num("EPOCHS", "Phase-one most epochs", num.Integer, defaultValue=30, minValue=1),
        num("PATCH_SIZE", "Phase-two patch size (1, 3, 5, 7, 15)", num.Integer, defaultValue=7,
            minValue=1, maxValue=15),
        num("SAMPLES_PER_CLASS", "Phase-two training pixels per class", num.Integer,
            defaultValue=100000, minValue=50),
    ]
    steps = [
        ("rasterize", "fjord:rasterizelabels", "Rasterize the training polygons",
         {"INPUT": ("param", "POLYGONS"), "FIELD": ("param", "FIELD"),
          "REFERENCE": ("param", "IMAGE"), "PRESET": ("value", 1)}),
        ("tiles", "fjord:maketiles", "Make phase-one tiles",
         {"INPUT": ("param", "IMAGE"), "LABELS": ("child", "rasterize", "OUTPUT"),
          "MODE": ("value", 0), "AUGMENT": ("value", 1)}),
        ("train", "fjord:trainphaseone", "Train the phase-one CNN (compact)",
         {"DATASET": ("child", "tiles", "OUTPUT"), "ARCHITECTURE": ("value", 1),
          "EPOCHS": ("param", "EPOCHS"), "LEARNING_RATE": ("value", 1e-3)}),
        ("csc", "fjord:classifycsc", "Classify with CSC",
         {"INPUT": ("param", "IMAGE"), "MODEL": ("child", "train", "OUTPUT"),
          "PATCH_SIZE": ("param", "PATCH_SIZE"),
          "SAMPLES_PER_CLASS": ("param", "SAMPLES_PER_CLASS")}),
        ("front", "fjord:calvingfront", "Extract the calving front",
         {"INPUT": ("child", "csc", "OUTPUT")}),
    ]
    outputs = {("train", "OUTPUT"): ("MODEL", "Phase-one model"),
               ("train", "REPORT"): ("TRAINING_REPORT", "Training report"),
               ("csc", "OUTPUT"): ("CLASSES", "CSC classes"),
               ("csc", "REPORT"): ("REPORT", "CSC report"),
               ("front", "OUTPUT"): ("FRONT", "Calving front"),
               ("front", "OUTPUT_MARGINS"): ("MARGINS", "Valley margins")}
    return _build("Glacier CSC chain", "Workflows",
                  "Training polygons and an image to classes, calving front and reports: rasterize "
                  "the polygons with the glacial class schema, make phase-one tiles, train the "
                  "compact phase-one CNN, classify the image with CSC and extract the calving "
                  "front and valley margins.", parameters, steps, outputs)


def landcover_chain():
    from qgis.core import (
        QgsProcessing,
        QgsProcessingParameterField,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterVectorLayer,
    )

    num = QgsProcessingParameterNumber
    parameters = [
        QgsProcessingParameterRasterLayer("IMAGE", "Image"),
        QgsProcessingParameterVectorLayer("POLYGONS", "Training polygons",
                                          [QgsProcessing.TypeVectorPolygon]),
        QgsProcessingParameterField("FIELD", "Class field", parentLayerParameterName="POLYGONS"),
        num("WINDOW", "Window size in pixels (a multiple of 16)", num.Integer, defaultValue=128,
            minValue=16),
        num("EPOCHS", "U-Net most epochs", num.Integer, defaultValue=30, minValue=1),
    ]
    steps = [
        ("rasterize", "fjord:rasterizelabels", "Rasterize the training polygons",
         {"INPUT": ("param", "POLYGONS"), "FIELD": ("param", "FIELD"),
          "REFERENCE": ("param", "IMAGE")}),
        ("windows", "fjord:maketiles", "Make segmentation windows (spatial split)",
         {"INPUT": ("param", "IMAGE"), "LABELS": ("child", "rasterize", "OUTPUT"),
          "MODE": ("value", 1), "TILE_SIZE": ("param", "WINDOW"), "SPLIT": ("value", 1)}),
        ("train", "fjord:trainunet", "Train the U-Net (depth 4, 16 filters)",
         {"DATASET": ("child", "windows", "OUTPUT"), "DEPTH": ("value", 4),
          "FILTERS": ("value", 16), "EPOCHS": ("param", "EPOCHS"), "CLASS_WEIGHTS": ("value", 1)}),
        ("classify", "fjord:classifyunet", "Classify with the U-Net (blended windows)",
         {"INPUT": ("param", "IMAGE"), "MODEL": ("child", "train", "OUTPUT")}),
        ("validate", "fjord:validateclassification", "Validate against the training labels",
         {"INPUT": ("child", "classify", "OUTPUT"), "REFERENCE": ("child", "rasterize", "OUTPUT")}),
    ]
    outputs = {("train", "OUTPUT"): ("MODEL", "U-Net model"),
               ("train", "REPORT"): ("TRAINING_REPORT", "Training report"),
               ("classify", "OUTPUT"): ("CLASSES", "U-Net classes and probabilities"),
               ("validate", "OUTPUT"): ("SCORES", "Scores (CSV)")}
    return _build("Land cover U-Net chain", "Workflows",
                  "Training polygons and an image to a U-Net land-cover map: rasterize the "
                  "polygons, make segmentation windows with a spatial split, train a U-Net, "
                  "classify the image over blended windows and score the map against the "
                  "rasterized labels (training area included).", parameters, steps, outputs)


def terminus_chain():
    from qgis.core import (
        QgsProcessing,
        QgsProcessingParameterEnum,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterNumber,
        QgsProcessingParameterVectorLayer,
    )

    parameters = [
        QgsProcessingParameterMultipleLayers("CLASS_RASTERS", "Class rasters (one per date)",
                                             QgsProcessing.TypeRaster),
        QgsProcessingParameterVectorLayer("CENTRELINE", "Glacier centreline",
                                          [QgsProcessing.TypeVectorLine], optional=True),
        QgsProcessingParameterEnum("DIRECTION", "Centreline direction",
                                   options=["First vertex downstream, in the fjord",
                                            "First vertex on the glacier (upstream)"],
                                   defaultValue=0),
        QgsProcessingParameterVectorLayer("BOX", "Rectilinear box",
                                          [QgsProcessing.TypeVectorPolygon], optional=True),
        QgsProcessingParameterNumber("BOX_WIDTH", "Curvilinear box width (m; 0 = none)",
                                     QgsProcessingParameterNumber.Double, defaultValue=0.0,
                                     minValue=0.0),
    ]
    steps = [
        ("fronts", "fjord:calvingfronts", "Extract the calving front of every scene (dated)",
         {"INPUT": ("param", "CLASS_RASTERS")}),
        ("change", "fjord:terminuschange", "Terminus change through time",
         {"INPUT": ("child", "fronts", "OUTPUT"), "CENTRELINE": ("param", "CENTRELINE"),
          "DIRECTION": ("param", "DIRECTION"), "BOX": ("param", "BOX"),
          "BOX_WIDTH": ("param", "BOX_WIDTH")}),
    ]
    outputs = {("fronts", "OUTPUT"): ("FRONTS", "Calving fronts (dated)"),
               ("change", "OUTPUT"): ("TABLE", "Terminus change table"),
               ("change", "FIGURE"): ("FIGURE", "Terminus position figure")}
    return _build("Terminus change from class rasters", "Workflows",
                  "Class rasters of different dates to a terminus-change record in one run: the "
                  "calving front of every scene, dated from the raster's metadata or name and "
                  "merged into one layer, then the positions by the centreline, rectilinear-box "
                  "and curvilinear-box methods.", parameters, steps, outputs)


def main():
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    QgsApplication.setPrefixPath("/usr", True)
    app.initQgis()
    # The child algorithms must resolve, so that the models' outputs get their types.
    plugins = os.path.join(REPO, ".plugins")
    os.makedirs(plugins, exist_ok=True)
    if not os.path.islink(os.path.join(plugins, "fjord")):
        os.symlink(REPO, os.path.join(plugins, "fjord"))
    sys.path.insert(0, plugins)
    from fjord.algorithms.provider import FjordProvider

    provider = FjordProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    os.makedirs(OUT, exist_ok=True)
    for stem, build in (("glacier_csc_chain", glacier_chain), ("landcover_unet_chain", landcover_chain),
                        ("terminus_change_chain", terminus_chain)):
        path = os.path.join(OUT, stem + ".model3")
        if not build().toFile(path):
            raise SystemExit(f"cannot write {path}")
        print(path)


if __name__ == "__main__":
    main()
