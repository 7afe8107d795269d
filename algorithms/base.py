"""What every Fjord algorithm shares."""

import os

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.errors import FjordError

ICON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "resources", "icons", "fjord.svg")
GROUPS = {"prepare": "Prepare", "train": "Train", "classify": "Classify",
          "glaciers": "Glaciers", "validate": "Validate", "setup": "Setup"}


def progress_to(feedback, start=0.0, end=1.0):
    """A core ``progress(fraction, message)`` callable that drives ``feedback``."""
    def progress(fraction, message=None):
        if fraction is not None:
            feedback.setProgress(100.0 * (start + (end - start) * fraction))
        if message:
            feedback.pushInfo(message)
    return progress


def core_call(func, *args, **kwargs):
    """Call a core function, turning its input errors into QgsProcessingException."""
    try:
        return func(*args, **kwargs)
    except FjordError as exc:
        raise QgsProcessingException(str(exc)) from None


class FjordAlgorithm(QgsProcessingAlgorithm):
    """Base class: translation, grouping, icon, instance creation."""

    def tr(self, text):
        return QCoreApplication.translate("Fjord", text)

    def createInstance(self):
        return type(self)()

    def group(self):
        return self.tr(GROUPS[self.groupId()])

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def raster_file(self, parameters, name, context, what, optional=False):
        """The file behind a raster layer parameter (None when optional and not given)."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if optional and not parameters.get(name):
                return None
            raise QgsProcessingException(self.tr(f"The {what} could not be loaded."))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(self.tr(f"The {what} must be a raster file (GDAL); save it "
                                                 "as a GeoTIFF first."))
        return layer.source()
