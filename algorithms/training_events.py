"""Training runs as a stream of events, for whoever draws them (the desktop's training monitor).

The training algorithms publish; nothing here needs Qt or a display, so the algorithms run the
same under ``qgis_process`` (where nobody listens). Listeners are called in the thread that
runs the algorithm: a listener that touches widgets must hand the event to the GUI thread
(``ui/training_monitor.py`` does it through a queued Qt signal).

Events are dicts with ``event`` and ``run`` (an id per training run):

- ``{"event": "start", "run", "title", "model"}``
- ``{"event": "epoch", "run", "row"}``: ``row`` has ``epoch``, ``epochs`` and the epoch's
  ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``
- ``{"event": "end", "run", "status": "finished" | "cancelled" | "failed", "curves"}``:
  ``curves`` is the PNG of the training curves the report got, or None
"""

import threading
import uuid

_listeners = []
_lock = threading.Lock()


def subscribe(listener):
    """Call ``listener(event)`` for every training event from now on."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def unsubscribe(listener):
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def publish(event):
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a broken listener must never break a training run
            pass


def new_run():
    """An id for one training run."""
    return uuid.uuid4().hex
