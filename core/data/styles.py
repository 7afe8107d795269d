"""QGIS layer styles (QML) for Fjord's vector outputs, written as sidecars beside the files
(QGIS applies ``<name>.qml`` when it opens ``<name>.gpkg``). Raster class styles live with the
class schemas (:func:`fjord.core.data.schema.paletted_qml`)."""

from xml.sax.saxutils import quoteattr


def _symbol(kind, layer_class, name, options):
    """One QGIS symbol of one symbol layer with ``options`` (written both ways QGIS reads)."""
    opts = "\n".join(f'          <Option name="{k}" type="QString" value="{v}"/>' for k, v in options.items())
    props = "\n".join(f'          <prop k="{k}" v="{v}"/>' for k, v in options.items())
    return f"""      <symbol type="{kind}" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="{layer_class}" enabled="1" locked="0" pass="0">
          <Option type="Map">
{opts}
          </Option>
{props}
        </layer>
      </symbol>"""


def _document(renderer, geometry_type):
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
{renderer}
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>{geometry_type}</layerGeometryType>
</qgis>
"""


def line_qml(color, width_mm):
    """A single solid line: ``color`` as 'r,g,b,a', ``width_mm`` in millimetres."""
    symbol = _symbol("line", "SimpleLine", "0", {
        "line_color": color, "line_width": width_mm, "line_width_unit": "MM",
        "capstyle": "round", "joinstyle": "round", "line_style": "solid"})
    renderer = f"""  <renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">
    <symbols>
{symbol}
    </symbols>
    <rotation/>
    <sizescale/>
  </renderer-v2>"""
    return _document(renderer, 1)


def graduated_points_qml(field, breaks, size_mm="1.2"):
    """Circles coloured by ``field`` in classes ``breaks``: (lower, upper, label, 'r,g,b,a')."""
    ranges = "\n".join(f'      <range lower="{lo}" upper="{hi}" label={quoteattr(label)} symbol="{i}" '
                       'render="true"/>' for i, (lo, hi, label, _) in enumerate(breaks))
    symbols = "\n".join(_symbol("marker", "SimpleMarker", str(i), {
        "color": color, "name": "circle", "outline_color": "35,35,35,255", "outline_width": "0.1",
        "size": size_mm, "size_unit": "MM"}) for i, (_, _, _, color) in enumerate(breaks))
    renderer = f"""  <renderer-v2 type="graduatedSymbol" attr="{field}" graduatedMethod="GraduatedColor" symbollevels="0" enableorderby="0" forceraster="0">
    <ranges>
{ranges}
    </ranges>
    <symbols>
{symbols}
    </symbols>
    <mode name="manual"/>
    <rotation/>
    <sizescale/>
  </renderer-v2>"""
    return _document(renderer, 0)
