"""fjord:terminuschange — dated calving fronts to a terminus-change record (centreline,
rectilinear box, curvilinear box)."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from ..core.glaciers.terminus import terminus_change_files
from .base import FjordAlgorithm
from .launcher import run_in_worker
from .styling import style_on_load
from .validate_classification import OGR_FORMATS


class TerminusChange(FjordAlgorithm):
    INPUT = "INPUT"
    DATE_FIELD = "DATE_FIELD"
    CENTRELINE = "CENTRELINE"
    DIRECTION = "DIRECTION"
    BOX = "BOX"
    BOX_WIDTH = "BOX_WIDTH"
    OUTPUT = "OUTPUT"
    FIGURE = "FIGURE"
    OUTPUT_POINTS = "OUTPUT_POINTS"
    FRONTS = "FRONTS"
    METHOD = "METHOD"
    DATE_FIELD_USED = "DATE_FIELD_USED"

    def name(self):
        return "terminuschange"

    def displayName(self):
        return self.tr("Terminus change through time")

    def groupId(self):
        return "glaciers"

    def shortHelpString(self):
        return self.tr(
            "Turns dated calving fronts (one front per feature, any CRS: digitised, from products "
            "such as TermPicks or CALFIN, or from 'Extract calving front') into a record of "
            "terminus positions, by three methods:\n"
            "- <b>centreline</b>: where the front crosses CENTRELINE, in metres along it from its "
            "upstream end; a front crossing it several times: the most downstream crossing (the "
            "note says so);\n"
            "- <b>rectilinear box</b> (Moon & Joughin 2008): the area of BOX between its upstream "
            "edge and the front over the box width (its area over its length);\n"
            "- <b>curvilinear box</b> (Lea et al. 2014; MaQiT): the same with a box BOX_WIDTH "
            "metres wide along the centreline, flat ends.\n\n"
            "Positions are metres from a fixed upstream reference (the centreline's upstream end, "
            "the box's upstream edge), so an advance gives larger numbers. DIRECTION says which "
            "end of the centreline is upstream: 0 its first vertex is downstream, in the fjord "
            "(MaQiT's flowlines), 1 its first vertex is on the glacier. The box's upstream edge is "
            "the one the centreline enters it through; without a centreline the box must be a "
            "four-cornered box whose ends are its shorter sides, read with DIRECTION on its first "
            "vertex.\n\n"
            "DATE_FIELD: a Date field, or text holding a date (2019-02-17, 2019/02/17, 20190217, "
            "or a Sentinel-2/Landsat product or file name); empty: the first field whose values "
            "all are dates.\n\n"
            "OUTPUT (CSV or GeoPackage table), one row per front by date: date, centreline_m, "
            "rectilinear_box_m, curvilinear_box_m, change_m (since the first date) and "
            "rate_m_per_year (since the previous front) of the first method with values "
            "(curvilinear box, rectilinear box, centreline), front_width_m (the front's length "
            "inside the box) and a note where a method gives no value (the front does not reach "
            "the box or does not cut it from side to side; no date; empty geometry). A front that "
            "crosses a box more than once is measured: the area upstream is the union of the "
            "pieces it cuts at the box's upstream end, and the note says so. A front that runs "
            "through an end of the box (a box or centreline that ends among the fronts) is "
            "measured from its part inside, with a note. Cells without a value are "
            "empty. FIGURE: positions through time and a map of the fronts coloured by date. "
            "OUTPUT_POINTS: the centreline crossings (date, position_m), styled by date.\n\n"
            "Metres are true metres in any CRS: every layer is projected into an azimuthal "
            "equidistant projection centred on the centreline (or the box), where distances and "
            "areas over tens of kilometres are true to better than 1e-5 — polar stereographic "
            "EPSG:3413, say, is 1.7 % off at 76° N.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Calving fronts (one per feature, dated)"), [QgsProcessing.TypeVectorLine]))
        self.addParameter(QgsProcessingParameterField(
            self.DATE_FIELD, self.tr("Date field (empty: the first field that holds dates)"),
            parentLayerParameterName=self.INPUT, optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.CENTRELINE, self.tr("Glacier centreline"), [QgsProcessing.TypeVectorLine], optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.DIRECTION, self.tr("Centreline direction"),
            options=[self.tr("First vertex downstream, in the fjord"),
                     self.tr("First vertex on the glacier (upstream)")], defaultValue=0))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.BOX, self.tr("Rectilinear box"), [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.BOX_WIDTH, self.tr("Curvilinear box width along the centreline (m; 0 = none)"),
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Terminus change table"),
            fileFilter=self.tr("CSV files (*.csv);;GeoPackage (*.gpkg)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.FIGURE, self.tr("Terminus position figure"), fileFilter=self.tr("PNG images (*.png)"),
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_POINTS, self.tr("Centreline crossings"), type=QgsProcessing.TypeVectorPoint,
            optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.FRONTS, self.tr("Fronts in the table")))
        self.addOutput(QgsProcessingOutputString(self.METHOD, self.tr("Method of change_m")))
        self.addOutput(QgsProcessingOutputString(self.DATE_FIELD_USED, self.tr("Date field used")))

    def _layer(self, parameters, name, context, feedback, what):
        if not parameters.get(name):
            return None, None
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, name, context, OGR_FORMATS, "gpkg", feedback)
        if not path:
            raise QgsProcessingException(self.tr(f"The {what} could not be loaded."))
        return path, layer or None

    def processAlgorithm(self, parameters, context, feedback):
        fronts, fronts_layer = self._layer(parameters, self.INPUT, context, feedback, "fronts")
        centreline, centreline_layer = self._layer(parameters, self.CENTRELINE, context, feedback,
                                                   "centreline")
        box, box_layer = self._layer(parameters, self.BOX, context, feedback, "box")
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        figure = self.parameterAsFileOutput(parameters, self.FIGURE, context) or None
        points = (self.parameterAsOutputLayer(parameters, self.OUTPUT_POINTS, context)
                  if parameters.get(self.OUTPUT_POINTS) else None)
        kwargs = dict(input=fronts, output=output, input_layer=fronts_layer,
                      date_field=self.parameterAsString(parameters, self.DATE_FIELD, context) or None,
                      centreline=centreline, centreline_layer=centreline_layer,
                      direction=self.parameterAsEnum(parameters, self.DIRECTION, context),
                      box=box, box_layer=box_layer,
                      box_width=self.parameterAsDouble(parameters, self.BOX_WIDTH, context),
                      figure_path=figure, output_points=points)
        result = run_in_worker(terminus_change_files, kwargs, feedback,
                         outputs=[p for p in (output, figure, points) if p])
        if points:
            style_on_load(context, points, os.path.splitext(points)[0] + ".qml")
        return {self.OUTPUT: output, self.FIGURE: figure, self.OUTPUT_POINTS: points,
                self.FRONTS: result["rows"], self.METHOD: result["method"],
                self.DATE_FIELD_USED: result["date_field"]}
