"""QGIS plugin object: registers the Fjord Processing provider."""

from qgis.core import QgsApplication


class FjordPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is None:
            from .algorithms.provider import FjordProvider

            provider = FjordProvider()
            # The registry takes ownership; it refuses (and deletes) a second "fjord" provider.
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider
                # The shipped workflows find their steps (and so their outputs) only once the
                # provider is in the registry: load the algorithms once more now that it is.
                provider.refreshAlgorithms()

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
