"""The shipped modeler workflows (``resources/models/*.model3``) as Fjord algorithms.

Each file is an ordinary QGIS model (open it in the graphical modeler to see or change it);
the provider registers it under a short id — ``fjord:glaciercscchain``,
``fjord:landcoverunetchain`` — with the model's name as its title.
"""

import glob
import os

from qgis.core import QgsProcessingModelAlgorithm
from qgis.PyQt.QtGui import QIcon

from .base import ICON

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources", "models")


class Workflow(QgsProcessingModelAlgorithm):
    """A model read from ``path``; its child algorithms are looked up when an instance is made
    to run, once every Fjord algorithm is registered."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        if not self.fromFile(path):
            raise ValueError(f"cannot read the workflow {path}")
        self.title = QgsProcessingModelAlgorithm.name(self)  # the model's own name
        self._id = "".join(ch for ch in self.title.lower() if ch.isalnum())

    def name(self):
        return self._id

    def displayName(self):
        return self.title

    def group(self):
        return "Workflows"

    def groupId(self):
        return "workflows"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def createInstance(self):
        return Workflow(self.path)


def workflows():
    """One algorithm per ``.model3`` file shipped with the plugin."""
    return [Workflow(path) for path in sorted(glob.glob(os.path.join(MODELS, "*.model3")))]
