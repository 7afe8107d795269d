"""The Fjord Processing provider."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.environment import plugin_version
from .base import ICON
from .batch_csc import BatchCsc
from .calving_front import CalvingFront, CalvingFronts
from .check_environment import CheckEnvironment
from .classify_csc import ClassifyCsc
from .classify_unet import ClassifyUnet
from .export_model import ExportModel
from .import_model import ImportModel
from .launcher import SETTING_PYTHON
from .make_tiles import MakeTiles
from .rasterize_labels import RasterizeLabels
from .stack_bands import StackBands
from .terminus_change import TerminusChange
from .train_phase_one import TrainPhaseOne
from .train_unet import TrainUnet
from .validate_classification import ValidateClassification
from .validate_front import ValidateFront
from .workflows import workflows


class FjordProvider(QgsProcessingProvider):
    def id(self):
        return "fjord"

    def name(self):
        return "Fjord"

    def longName(self):
        return f"Fjord {plugin_version()}: deep-learning classification of satellite imagery"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def versionInfo(self):
        return plugin_version()

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self):
        return ["gpkg"]

    def load(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:  # Processing plugin absent: settings are optional
            ProcessingConfig = None
        if ProcessingConfig is not None:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), SETTING_PYTHON,
                "Python interpreter for deep-learning jobs (empty: automatic)", "",
                valuetype=Setting.FILE))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
            ProcessingConfig.removeSetting(SETTING_PYTHON)
        except (ImportError, KeyError):
            pass

    def loadAlgorithms(self):
        for alg in (StackBands(), RasterizeLabels(), MakeTiles(), TrainPhaseOne(), TrainUnet(),
                    ClassifyCsc(), BatchCsc(), ClassifyUnet(), CalvingFront(), CalvingFronts(),
                    ValidateClassification(), ValidateFront(), TerminusChange(), CheckEnvironment(),
                    ImportModel(), ExportModel()):
            self.addAlgorithm(alg)
        # After the algorithms they chain: a workflow looks its steps up when it is read.
        for alg in workflows():
            self.addAlgorithm(alg)
