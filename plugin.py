"""QGIS plugin object: registers the Fjord Processing provider; in the desktop also the
environment dialog (Plugins > Fjord menu and a button on the Processing Toolbox's toolbar) and
the training monitor dock."""

import os

from qgis.core import QgsApplication

MENU = "&Fjord"


class FjordPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.toolbar = None
        self.monitor = None
        self.dialog = None

    def initProcessing(self):
        if self.provider is None:
            from .algorithms.provider import FjordProvider

            provider = FjordProvider()
            # The registry takes ownership; it refuses (and deletes) a second "fjord" provider.
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider
                # The shipped workflows find their steps (and so their outputs) only once the
                # provider is in the registry: load the algorithms once more now that it is.
                provider.refreshAlgorithms()

    def initGui(self):
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .ui.training_monitor import TrainingMonitor

        window = self.iface.mainWindow()
        icon = QIcon(os.path.join(os.path.dirname(__file__), "resources", "icons", "fjord.svg"))
        environment = QAction(icon, "Fjord environment…", window)
        environment.setObjectName("FjordEnvironmentAction")
        environment.setToolTip("Fjord environment: the worker's Python, Keras backend, versions "
                               "and GPUs; set up the deep-learning environment")
        environment.triggered.connect(self.show_environment)
        self.monitor = TrainingMonitor(window)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.monitor)
        self.monitor.hide()  # it shows itself when a training starts
        monitor = self.monitor.toggleViewAction()
        monitor.setText("Fjord training monitor")
        self.actions = [environment, monitor]
        for action in self.actions:
            self.iface.addPluginToMenu(MENU, action)
        # The button goes on the Processing Toolbox's own toolbar. At QGIS start-up the
        # Processing plugin may set up its toolbox after this plugin: then look again once QGIS
        # has loaded every plugin; without Processing, the button goes on QGIS's plugin toolbar.
        if not self._add_toolbar_button(fallback=False):
            self.iface.initializationCompleted.connect(self._add_toolbar_button)

    def _add_toolbar_button(self, fallback=True):
        from qgis.PyQt.QtWidgets import QToolBar

        if not self.actions or self.toolbar is not None:
            return True
        toolbar = self.iface.mainWindow().findChild(QToolBar, "processingToolbar")
        if toolbar is not None:
            toolbar.addAction(self.actions[0])
            self.toolbar = toolbar
        elif fallback:
            self.iface.addToolBarIcon(self.actions[0])
            self.toolbar = "plugins"
        return self.toolbar is not None

    def show_environment(self):
        from .ui.environment_dialog import EnvironmentDialog

        if self.dialog is None:
            self.dialog = EnvironmentDialog(self.iface.mainWindow())
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    def unload(self):
        if self.iface is not None:
            for action in self.actions:
                self.iface.removePluginMenu(MENU, action)
            if self.toolbar == "plugins":
                self.iface.removeToolBarIcon(self.actions[0])
            elif self.toolbar is not None:
                self.toolbar.removeAction(self.actions[0])
            if self.monitor is not None:
                self.monitor.close_monitor()
                self.iface.removeDockWidget(self.monitor)
                self.monitor.deleteLater()
            if self.dialog is not None:
                self.dialog.deleteLater()
        self.actions, self.toolbar, self.monitor, self.dialog = [], None, None, None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
