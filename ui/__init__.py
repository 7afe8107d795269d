"""Desktop widgets: the environment dialog and the training monitor. The algorithms never need
them; the plugin adds them to the QGIS window in ``initGui``."""
