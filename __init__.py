"""Fjord: deep-learning classification of satellite imagery as QGIS Processing algorithms.

Importing this package must not import QGIS: the worker process imports ``fjord.core``
through it in a plain Python interpreter.
"""


def classFactory(iface):
    """Entry point QGIS calls; ``iface`` is None under ``qgis_process``."""
    from .plugin import FjordPlugin

    return FjordPlugin(iface)
