"""The desktop widgets (ui/): the training monitor, the environment dialog and the plugin's
menu entries, toolbar button and dock, in a headless QGIS."""

import os
import threading
import time

from helpers import colour_pixels


def _wait(condition, timeout=180):
    from qgis.core import QgsApplication

    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        QgsApplication.processEvents()
        time.sleep(0.02)


def test_training_monitor_draws_the_epochs_published_from_another_thread(qgis_app):
    from fjord.algorithms import training_events
    from fjord.ui.training_monitor import TRAIN_COLOUR, VALIDATION_COLOUR, TrainingMonitor

    monitor = TrainingMonitor()
    monitor.resize(700, 360)
    run = training_events.new_run()

    def train():  # what run_training publishes, from the algorithm's thread
        training_events.publish({"event": "start", "run": run, "title": "Train U-Net", "model": "/x/m.keras"})
        for epoch in range(1, 6):
            training_events.publish({"event": "epoch", "run": run, "row": {
                "epoch": epoch, "epochs": 8, "loss": 1.5 / epoch, "accuracy": 0.5 + epoch / 20,
                "val_loss": 1.6 / epoch, "val_accuracy": 0.45 + epoch / 20}})
        training_events.publish({"event": "end", "run": run, "status": "finished", "curves": "/x/curves.png"})

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    _wait(lambda: (monitor.current_run() or {}).get("status") == "finished", timeout=10)
    entry = monitor.current_run()
    assert [r["epoch"] for r in entry["rows"]] == [1, 2, 3, 4, 5] and entry["epochs"] == 8
    assert "finished, epoch 5/8" in monitor.status.text() and "/x/curves.png" in monitor.status.text()
    assert monitor.chart.rows == entry["rows"]
    image = monitor.chart.grab().toImage()
    with_curves = colour_pixels(image, VALIDATION_COLOUR)
    assert colour_pixels(image, TRAIN_COLOUR) > 50 and with_curves > 50
    # An empty run draws the axes but no curve.
    monitor.chart.set_rows([], 10)
    image = monitor.chart.grab().toImage()
    assert colour_pixels(image, VALIDATION_COLOUR) < with_curves / 3  # the legend swatches only
    monitor.close_monitor()
    training_events.publish({"event": "start", "run": "other", "title": "t", "model": "m"})
    assert "other" not in monitor.runs


def test_environment_dialog_shows_the_worker(qgis_app):
    from fjord.ui.environment_dialog import EnvironmentDialog

    dialog = EnvironmentDialog()
    dialog.check()
    assert dialog.running() and not dialog.check_button.isEnabled()
    _wait(lambda: not dialog.running())
    assert dialog.report is not None and dialog.report["ok"]
    assert dialog.report["backend"] == "tensorflow"
    text = dialog.browser.toPlainText()
    assert "Keras backend: tensorflow" in text and dialog.report["executable"] in text
    assert dialog.progress.value() == 100 and dialog.check_button.isEnabled()
    assert "complete" in dialog.status.text()


def test_environment_dialog_says_why_a_check_failed(qgis_app, monkeypatch, tmp_path):
    from fjord.ui.environment_dialog import EnvironmentDialog

    monkeypatch.setenv("FJORD_PYTHON", str(tmp_path / "no-such-python"))
    dialog = EnvironmentDialog()
    dialog.check()
    _wait(lambda: not dialog.running(), timeout=60)
    assert dialog.report is None and "failed" in dialog.status.text()
    assert "FJORD_PYTHON names" in dialog.log.toPlainText()
    assert dialog.check_button.isEnabled() and dialog.setup_button.isEnabled()


def test_environment_dialog_sets_up_the_environment(qgis_app, tmp_path):
    from qgis.core import QgsApplication

    from fjord.core.environment import venv_python
    from fjord.ui.environment_dialog import EnvironmentDialog

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy<2\n")  # already there through the system site packages
    dialog = EnvironmentDialog(requirements=str(requirements))
    dialog.setup()
    _wait(lambda: not dialog.running(), timeout=300)
    venv = os.path.join(QgsApplication.qgisSettingsDirPath(), "fjord", "venv")
    assert dialog.report is not None, dialog.log.toPlainText()
    assert dialog.report["executable"] == venv_python(venv)
    assert "Installing the requirements" in dialog.log.toPlainText()
    assert dialog.progress.value() == 100


def _iface(with_toolbar):
    """The parts of QgisInterface the plugin uses."""
    from qgis.PyQt.QtCore import QObject, pyqtSignal
    from qgis.PyQt.QtWidgets import QMainWindow, QToolBar

    class Iface(QObject):
        initializationCompleted = pyqtSignal()

        def __init__(self):
            super().__init__()
            self.window = QMainWindow()
            self.processing = None
            if with_toolbar:
                self.add_processing_toolbar()
            self.menu, self.docks, self.plugin_toolbar = [], [], []

        def add_processing_toolbar(self):
            self.processing = QToolBar(self.window)
            self.processing.setObjectName("processingToolbar")

        def mainWindow(self):
            return self.window

        def addPluginToMenu(self, menu, action):
            self.menu.append((menu, action.text()))

        def removePluginMenu(self, menu, action):
            self.menu.remove((menu, action.text()))

        def addDockWidget(self, area, dock):
            self.docks.append(dock)

        def removeDockWidget(self, dock):
            self.docks.remove(dock)

        def addToolBarIcon(self, action):
            self.plugin_toolbar.append(action.text())

        def removeToolBarIcon(self, action):
            self.plugin_toolbar.remove(action.text())

    return Iface()


def test_plugin_adds_the_menu_toolbar_button_and_dock(qgis_app):
    from qgis.PyQt.QtWidgets import QDockWidget

    import fjord

    iface = _iface(with_toolbar=True)
    plugin = fjord.classFactory(iface)
    plugin.initGui()
    assert iface.menu == [("&Fjord", "Fjord environment…"), ("&Fjord", "Fjord training monitor")]
    assert [a.text() for a in iface.processing.actions()] == ["Fjord environment…"]
    assert len(iface.docks) == 1 and isinstance(iface.docks[0], QDockWidget)
    plugin.show_environment()
    assert plugin.dialog.isVisible()
    _wait(lambda: not plugin.dialog.running())
    plugin.unload()
    assert iface.menu == [] and iface.docks == [] and iface.processing.actions() == []


def test_toolbar_button_waits_for_the_processing_toolbox(qgis_app):
    import fjord

    # At start-up Processing may set up its toolbox after Fjord: the button follows it.
    iface = _iface(with_toolbar=False)
    plugin = fjord.classFactory(iface)
    plugin.initGui()
    iface.add_processing_toolbar()
    iface.initializationCompleted.emit()
    assert [a.text() for a in iface.processing.actions()] == ["Fjord environment…"]
    plugin.unload()
    assert iface.processing.actions() == []
    # Without Processing at all, the button goes on QGIS's plugin toolbar.
    iface = _iface(with_toolbar=False)
    plugin = fjord.classFactory(iface)
    plugin.initGui()
    iface.initializationCompleted.emit()
    assert iface.plugin_toolbar == ["Fjord environment…"]
    plugin.unload()
    assert iface.plugin_toolbar == [] and iface.menu == []
