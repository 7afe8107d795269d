"""Processing parameters that several algorithms share: one builder each, and the reader of
what it adds. A builder takes the algorithm and names its parameters by the algorithm's
UPPER_CASE class constants (``alg.DEVICE``), which every algorithm that calls it defines."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)


def add_device(alg):
    device = QgsProcessingParameterString(alg.DEVICE, alg.tr("Device (auto, cpu or a GPU index)"),
                                          defaultValue="auto")
    device.setFlags(device.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    alg.addParameter(device)


def add_scale_switch(alg):
    """IGNORE_SCALE_MISMATCH: classify even when the image is not on the scale of the model's
    training statistics (advanced; classifycsc, classifyunet and batchcsc)."""
    switch = QgsProcessingParameterBoolean(
        alg.IGNORE_SCALE_MISMATCH, alg.tr("Classify even when the image is not on the model's "
                                        "training scale"), defaultValue=False)
    switch.setFlags(switch.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    alg.addParameter(switch)


def scale_switch(alg, parameters, context):
    return alg.parameterAsBoolean(parameters, alg.IGNORE_SCALE_MISMATCH, context)


def add_device_and_seed(alg):
    add_device(alg)
    num = QgsProcessingParameterNumber
    alg.addParameter(num(alg.SEED, alg.tr("Random seed"), num.Integer, defaultValue=0))


def add_phase_two_parameters(alg):
    """The phase-two settings that classifycsc and batchcsc share."""
    num = QgsProcessingParameterNumber
    alg.addParameter(num(alg.SAMPLES_PER_CLASS, alg.tr("Phase-two training pixels per class"),
                         num.Integer, defaultValue=500000, minValue=50))
    alg.addParameter(num(alg.MAX_EPOCHS, alg.tr("Phase-two most epochs"), num.Integer,
                         defaultValue=300, minValue=1))
    alg.addParameter(num(alg.RECOGNITION_THRESHOLD, alg.tr("Recognition threshold (phase-one "
                                                         "probability under which a pixel stays "
                                                         "unlabelled; 0 = off)"),
                         num.Double, defaultValue=0.0, minValue=0.0, maxValue=1.0))
    alg.addParameter(num(alg.BOUNDARY_MARGIN, alg.tr("Boundary margin: phase two trains on "
                                                     "phase-one pixels at least this many pixels "
                                                     "from a class change (0 = all)"),
                         num.Integer, defaultValue=0, minValue=0, maxValue=100))
    alg.addParameter(num(alg.SMOOTHING, alg.tr("Modal filter radius in pixels (0 = off)"),
                         num.Integer, defaultValue=4, minValue=0, maxValue=50))


def parse_classes(alg, text, name):
    """Class values from '4' or '1,2,3' (empty: None, the schema's default)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise QgsProcessingException(alg.tr(f"{name} must list class values such as 1,2,3, not "
                                            f"{text!r}.")) from None


def add_front_parameters(alg):
    """The class roles and the active-contour settings, shared with calvingfronts."""
    num = QgsProcessingParameterNumber
    for key, label in ((alg.GLACIER_CLASSES, "Glacier classes (empty: glacier ice)"),
                       (alg.OCEAN_CLASSES, "Ocean classes (empty: open water, iceberg water, mélange)"),
                       (alg.ROCK_CLASSES, "Rock classes (empty: snow on rock, rock)")):
        alg.addParameter(QgsProcessingParameterString(key, alg.tr(label), defaultValue="",
                                                      optional=True))
    advanced = [
        num(alg.ITERATIONS, alg.tr("Active contour iterations"), num.Integer, defaultValue=30, minValue=1),
        num(alg.BALLOON, alg.tr("Active contour balloon force"), num.Double, defaultValue=-0.5),
        num(alg.SMOOTHING, alg.tr("Active contour smoothing"), num.Integer, defaultValue=1, minValue=0),
        num(alg.THRESHOLD, alg.tr("Active contour threshold"), num.Double, defaultValue=0.6, minValue=0),
    ]
    for param in advanced:
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(param)
    alg.addParameter(num(alg.MIN_OCEAN_AREA, alg.tr("Smallest ocean patch (m², also for a raster "
                                                  "in degrees)"),
                         num.Double, defaultValue=1e6, minValue=0))


def front_settings(alg, parameters, context):
    """The core's keyword arguments for the class roles and the active contour."""
    def classes(key):
        return parse_classes(alg, alg.parameterAsString(parameters, key, context), key)
    return dict(glacier_classes=classes(alg.GLACIER_CLASSES), ocean_classes=classes(alg.OCEAN_CLASSES),
                rock_classes=classes(alg.ROCK_CLASSES),
                iterations=alg.parameterAsInt(parameters, alg.ITERATIONS, context),
                balloon=alg.parameterAsDouble(parameters, alg.BALLOON, context),
                smoothing=alg.parameterAsInt(parameters, alg.SMOOTHING, context),
                threshold=alg.parameterAsDouble(parameters, alg.THRESHOLD, context),
                min_ocean_area=alg.parameterAsDouble(parameters, alg.MIN_OCEAN_AREA, context))
