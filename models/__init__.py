"""Keras 3 networks and the Fjord model file (no QGIS, no TensorFlow-only code)."""
