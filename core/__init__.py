"""Fjord's core: plain Python, GDAL and numpy, never QGIS, grouped by the stage it serves
(``data``, ``prepare``, ``glaciers``, ``evaluate``, ``learn``, ``run``). The map of the packages,
the job protocol between QGIS and the worker, and where to add an algorithm are in
``docs/ARCHITECTURE.md``."""
