"""The training monitor: live loss and accuracy curves while a training algorithm runs in the
desktop.

A dock widget that listens to ``algorithms.training_events`` (published from the algorithm's
thread, handed to the GUI thread through a queued signal) and draws, per epoch, the training
and validation loss and accuracy. Every run of the session stays selectable; when a run ends,
the monitor names the PNG of the curves that the training report got.
"""

import html
import math

from qgis.PyQt.QtCore import QPointF, QRectF, Qt, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QColor, QDesktopServices, QFont, QPainter, QPen
from qgis.PyQt.QtWidgets import QComboBox, QDockWidget, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..algorithms import training_events

TRAIN_COLOUR = QColor("#1f77b4")
VALIDATION_COLOUR = QColor("#ff7f0e")
PANELS = (("Loss", "loss", "val_loss"), ("Accuracy", "accuracy", "val_accuracy"))


def _nice_ticks(low, high, count=5):
    """Round tick values covering [low, high]."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-6:
        ticks.append(ticks[-1] + step)
    return [round(t, 10) for t in ticks]


class CurvesChart(QWidget):
    """Two panels (loss, accuracy) of training and validation curves against the epoch."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows, self.epochs = [], 0
        self.setMinimumSize(360, 200)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_rows(self, rows, epochs):
        self.rows, self.epochs = list(rows), int(epochs or 0)
        self.update()

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), Qt.white)
        width = self.width() / len(PANELS)
        for i, (title, train_key, val_key) in enumerate(PANELS):
            self._panel(painter, QRectF(i * width, 0, width, self.height()), title, train_key, val_key)
        painter.end()

    def _panel(self, painter, box, title, train_key, val_key):
        font = QFont(self.font())
        metrics = painter.fontMetrics()
        line = metrics.height()
        plot = box.adjusted(8 + metrics.horizontalAdvance("0.000"), line * 1.6, -10, -line * 3.2)
        painter.setPen(Qt.black)
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(QRectF(box.left(), 2, box.width(), line * 1.4), Qt.AlignCenter, title)
        font.setBold(False)
        painter.setFont(font)
        values = [r[k] for r in self.rows for k in (train_key, val_key)
                  if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        if train_key == "accuracy":
            low, high = 0.0, 1.0
        else:
            low, high = 0.0, max(values) * 1.05 if values else 1.0
        y_ticks = _nice_ticks(low, high)
        low, high = y_ticks[0], y_ticks[-1]
        last = max([self.epochs] + [r["epoch"] for r in self.rows] + [2])
        x_ticks = [t for t in _nice_ticks(1, last, 6) if 1 <= t <= last and t == int(t)] or [1, last]

        def to_xy(epoch, value):
            x = plot.left() + (epoch - 1) / (last - 1) * plot.width()
            y = plot.bottom() - (value - low) / (high - low) * plot.height()
            return QPointF(x, y)

        grid = QPen(QColor("#dddddd"))
        for t in y_ticks:
            y = to_xy(1, t).y()
            painter.setPen(grid)
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(Qt.black)
            painter.drawText(QRectF(box.left(), y - line / 2, plot.left() - box.left() - 4, line),
                             Qt.AlignRight | Qt.AlignVCenter, f"{t:g}")
        for t in x_ticks:
            x = to_xy(t, low).x()
            painter.setPen(grid)
            painter.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
            painter.setPen(Qt.black)
            painter.drawText(QRectF(x - 30, plot.bottom() + 2, 60, line), Qt.AlignCenter, f"{int(t)}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + line, plot.width(), line),
                         Qt.AlignCenter, "epoch")
        painter.setPen(QPen(Qt.black))
        painter.drawRect(plot)
        for key, colour in ((train_key, TRAIN_COLOUR), (val_key, VALIDATION_COLOUR)):
            points = [to_xy(r["epoch"], r[key]) for r in self.rows
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            painter.setPen(QPen(colour, 2))
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            painter.setBrush(colour)
            for p in points:
                painter.drawEllipse(p, 2.5, 2.5)
            painter.setBrush(Qt.NoBrush)
        legend_y = plot.bottom() + line * 2.1
        x = plot.left()
        for colour, name in ((TRAIN_COLOUR, "training"), (VALIDATION_COLOUR, "validation")):
            painter.setPen(QPen(colour, 3))
            painter.drawLine(QPointF(x, legend_y + line / 2), QPointF(x + 18, legend_y + line / 2))
            painter.setPen(Qt.black)
            painter.drawText(QPointF(x + 22, legend_y + metrics.ascent()), name)
            x += 30 + metrics.horizontalAdvance(name)


class TrainingMonitor(QDockWidget):
    """Dock with the live curves of the training runs of this session."""

    event_arrived = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Fjord training monitor"))
        self.setObjectName("FjordTrainingMonitor")
        self.runs = {}  # run id -> {"title", "model", "rows", "epochs", "status", "curves"}
        self.chooser = QComboBox()
        self.chooser.currentIndexChanged.connect(self._show_current)
        self.status = QLabel(self.tr("No training has run in this session. Run 'Train phase-one "
                                     "CNN' or 'Train U-Net' to see its curves here."))
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.RichText)
        self.status.linkActivated.connect(lambda link: QDesktopServices.openUrl(QUrl.fromLocalFile(link)))
        self.chart = CurvesChart()
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.chooser)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.status)
        self.setWidget(body)
        # Events come from the algorithm's thread; the queued signal brings them to this one.
        self.event_arrived.connect(self.handle_event, Qt.QueuedConnection)
        self._listener = self.event_arrived.emit
        training_events.subscribe(self._listener)

    def close_monitor(self):
        """Stop listening (when the plugin unloads)."""
        training_events.unsubscribe(self._listener)

    def handle_event(self, event):
        run = event.get("run")
        if event.get("event") == "start":
            self.runs[run] = {"title": event.get("title", ""), "model": event.get("model", ""),
                              "rows": [], "epochs": 0, "status": "running", "curves": None}
            self.chooser.addItem(f"{event.get('title', '')}: {event.get('model', '')}", run)
            self.chooser.setCurrentIndex(self.chooser.count() - 1)
            self.show()
            self.raise_()
        elif run not in self.runs:
            return
        elif event.get("event") == "epoch":
            entry, row = self.runs[run], event["row"]
            entry["rows"] = [r for r in entry["rows"] if r["epoch"] != row["epoch"]] + [row]
            entry["rows"].sort(key=lambda r: r["epoch"])
            entry["epochs"] = row.get("epochs", entry["epochs"])
        elif event.get("event") == "end":
            self.runs[run].update(status=event.get("status"), curves=event.get("curves"))
        if self.chooser.currentData() == run:
            self._show_current()

    def current_run(self):
        return self.runs.get(self.chooser.currentData())

    def _show_current(self):
        entry = self.current_run()
        if entry is None:
            return
        self.chart.set_rows(entry["rows"], entry["epochs"])
        rows = entry["rows"]
        text = f"<b>{html.escape(entry['title'])}</b>: {entry['status']}"
        if rows:
            last = rows[-1]
            text += (f", epoch {last['epoch']}/{entry['epochs']}: loss {last.get('loss', float('nan')):.4f}, "
                     f"validation accuracy {last.get('val_accuracy', float('nan')):.4f}")
        if entry["curves"]:
            path = html.escape(entry["curves"], quote=True)
            text += f"<br>Curves saved: <a href=\"{path}\">{path}</a>"
        self.status.setText(text)
