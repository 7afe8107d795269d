"""What every Fjord algorithm shares."""

import os
import re

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProperty,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.errors import FjordError
from ..core.outputs import disk_full_message, expected_sizes

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
    expected_sizes.clear()  # sizes of this call's outputs only
    try:
        return func(*args, **kwargs)
    except FjordError as exc:
        message = str(exc)
    except Exception as exc:
        message = disk_full_message(exc)
        if not message:
            raise
    # Raised here, out of the handler, so that the error's frames (and the files they hold
    # open: a half-written GeoTIFF on a full disk) are let go.
    raise QgsProcessingException(message)


def file_of(value):
    """The real path of the file a parameter value names (a path, a layer source such as
    ``fronts.gpkg|layername=fronts``, an ``ogr:dbname='...'`` URI), or None (a temporary or
    memory output, a virtual path)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        value = value.staticValue()
    text = str(value or "").strip()
    match = re.match(r"^ogr:dbname='([^']*)'", text)
    text = (match.group(1) if match else text).split("|", 1)[0]
    if not text or text == "TEMPORARY_OUTPUT" or text.startswith(("memory:", "/vsi")):
        return None
    return os.path.realpath(text)


def same_file(a, b):
    """Whether two real paths are one file: equal, or hard links of one file."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class FjordAlgorithm(QgsProcessingAlgorithm):
    """Base class: translation, grouping, icon, instance creation, and the guard that no
    output overwrites an input (:meth:`prepareAlgorithm`)."""

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

    def checkParameterValues(self, parameters, context):
        clash = self.overwritten(parameters, context)
        if clash:
            return False, clash
        return super().checkParameterValues(parameters, context)

    def prepareAlgorithm(self, parameters, context, feedback):
        clash = self.overwritten(parameters, context)  # again: models skip the check above
        if clash:
            raise QgsProcessingException(clash)
        return True

    def overwritten(self, parameters, context):
        """What would be lost if the run went on, or None: an output that would replace one of
        the input files or another output, the paths compared as real files (through symlinked
        folders, hard links, and the GeoPackage behind a ``|layername=`` source)."""
        inputs = self._input_files(parameters, context)
        outputs = []
        for definition in self.destinationParameterDefinitions():
            path = file_of(parameters.get(definition.name()))
            if path is None:
                continue
            for name, source in inputs + outputs:
                if same_file(path, source):
                    what = "input" if (name, source) in inputs else "output"
                    return self.tr(f"{definition.name()} would overwrite the {what} {name} "
                                   f"({source}); choose another output path.")
            outputs.append((definition.name(), path))
        return None

    def _input_files(self, parameters, context):
        """``(parameter name, real path)`` of every existing file the inputs read."""
        found = []
        for definition in self.parameterDefinitions():
            name = definition.name()
            if definition.isDestination() or parameters.get(name) in (None, ""):
                continue
            for value in self._input_values(definition, parameters, context):
                path = file_of(value)
                if path and os.path.isfile(path):
                    found.append((name, path))
        return found

    def _input_values(self, definition, parameters, context):
        kind, name = definition.type(), definition.name()
        if kind in ("raster", "vector", "source", "layer", "mesh"):
            layer = self.parameterAsLayer(parameters, name, context)
            return [layer.source() if layer is not None else parameters.get(name)]
        if kind == "multilayer":
            return ([layer.source() for layer in self.parameterAsLayerList(parameters, name, context)]
                    or self.parameterAsFileList(parameters, name, context))
        if kind == "file":
            return [self.parameterAsFile(parameters, name, context)]
        return []
