"""Class schemas: the value, name and colour of every class of a class raster.

A class schema is a plain dict::

    {"name": "glacial", "title": "...", "classes": [{"value": 1, "name": "open water",
     "color": "#03719c"}, ...]}

Value 0 is reserved for *unlabelled* and never appears in ``classes``. Schemas are read from
JSON or CSV files (columns ``value,name,color``), from the presets shipped in
``resources/schemas``, or made up from the values found in a class field. They travel with
every class raster (GeoTIFF metadata item ``FJORD_CLASS_SCHEMA`` and a ``.schema.json``
sidecar) and every model file, and they style outputs (GDAL colour table, QGIS ``.qml``).
"""

import csv
import json
import os
import re
from xml.sax.saxutils import quoteattr

from ..environment import PLUGIN_DIR
from ..errors import FjordError

SCHEMA_DIR = os.path.join(PLUGIN_DIR, "resources", "schemas")
METADATA_KEY = "FJORD_CLASS_SCHEMA"

#: Built-in presets, in the order the Processing enum shows them.
PRESETS = ("glacial", "glacier_debris", "corine", "glacier_outlines")

# Colours for schemas made up from data: distinct, readable on light and dark maps.
_PALETTE = (
    "#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#b2df8a",
    "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#17becf", "#7f7f7f", "#bcbd22", "#8c564b",
    "#e377c2", "#2ca02c", "#9edae5", "#c49c94",
)
# Conventional colours for common class names, so that made-up schemas look as expected.
_NAMED = {
    "water": "#1f78b4", "open water": "#03719c", "sea": "#1f78b4", "lake": "#1f78b4",
    "river": "#1f78b4", "forest": "#1b7837", "wood": "#1b7837", "trees": "#1b7837",
    "scrub": "#8c9c3c", "shrub": "#8c9c3c", "grass": "#7fc97f", "grassland": "#7fc97f",
    "meadow": "#b8e186", "pasture": "#c2d96a", "farm": "#f6d55c", "farmland": "#f6d55c",
    "cropland": "#f6d55c", "arable": "#f6d55c", "wetland": "#6fa8a0", "marsh": "#6fa8a0",
    "residential": "#d6604d", "urban": "#d6604d", "built-up": "#d6604d", "industrial": "#a05195",
    "sand": "#f2e0a9", "bare soil": "#c8a27a", "sediment": "#c8a27a", "vegetation": "#33a02c",
    "snow": "#f5fffa", "ice": "#b9ebee", "glacier": "#b9ebee", "rock": "#775b5a",
    "cloud": "#ffffff", "shadow": "#4d4d4d",
}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_CSS_NAMES = {"black": "#000000", "white": "#ffffff", "red": "#ff0000", "mintcream": "#f5fffa"}


class SchemaError(FjordError, ValueError):
    """A class schema that cannot be used, with a message saying why."""


def palette_color(index):
    """Colour for the ``index``-th class of a schema made up from data."""
    return _PALETTE[index % len(_PALETTE)]


def _normalise_color(color, where):
    color = str(color).strip()
    color = _CSS_NAMES.get(color.lower(), color)
    match = _HEX.match(color)
    if not match:
        raise SchemaError(f"{where}: colour {color!r} is not a hex colour such as #03719c.")
    return "#" + match.group(1).lower()


def validate_schema(schema, source="class schema"):
    """Check a schema dict and return a normalised copy (classes sorted by value)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("classes"), list):
        raise SchemaError(f"{source}: expected an object with a 'classes' list.")
    unknown = set(schema) - {"name", "title", "description", "classes"}
    if unknown:
        raise SchemaError(f"{source}: unknown keys {sorted(unknown)}; allowed are name, title, "
                          "description, classes.")
    classes, seen_values, seen_names = [], set(), set()
    for i, cls in enumerate(schema["classes"]):
        where = f"{source}, class {i + 1}"
        if not isinstance(cls, dict) or not {"value", "name"} <= set(cls):
            raise SchemaError(f"{where}: each class needs 'value' and 'name'.")
        extra = set(cls) - {"value", "name", "color"}
        if extra:
            raise SchemaError(f"{where}: unknown keys {sorted(extra)}; allowed are value, name, color.")
        try:
            value = int(cls["value"])
        except (TypeError, ValueError):
            raise SchemaError(f"{where}: value {cls['value']!r} is not an integer.") from None
        if value != float(cls["value"]) or not 1 <= value <= 65535:
            raise SchemaError(f"{where}: value {cls['value']!r} must be an integer from 1 to 65535 "
                              "(0 means unlabelled).")
        name = str(cls["name"]).strip()
        if not name:
            raise SchemaError(f"{where}: the name is empty.")
        if value in seen_values:
            raise SchemaError(f"{where}: value {value} appears twice.")
        if name.lower() in seen_names:
            raise SchemaError(f"{where}: name {name!r} appears twice.")
        seen_values.add(value)
        seen_names.add(name.lower())
        color = cls.get("color") or palette_color(len(classes))
        classes.append({"value": value, "name": name, "color": _normalise_color(color, where)})
    if not classes:
        raise SchemaError(f"{source}: the schema has no classes.")
    out = {k: schema[k] for k in ("name", "title", "description") if k in schema}
    out["classes"] = sorted(classes, key=lambda c: c["value"])
    return out


def load_schema(path):
    """Read a class schema from a JSON or CSV (``value,name,color``) file."""
    if not os.path.isfile(path):
        raise SchemaError(f"Class schema file {path!r} does not exist.")
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8-sig", newline="") as f:
        if ext == ".json":
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise SchemaError(f"Class schema {path!r} is not valid JSON: {exc}.") from None
        elif ext in (".csv", ".txt"):
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            if not {"value", "name"} <= set(fields):
                raise SchemaError(f"Class schema {path!r}: the CSV needs the columns value,name "
                                  "and optionally color.")
            rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                    for row in reader]
            data = {"name": os.path.splitext(os.path.basename(path))[0],
                    "classes": [{k: v for k, v in r.items() if k in ("value", "name", "color") and v}
                                for r in rows if any(r.values())]}
        else:
            raise SchemaError(f"Class schema {path!r}: use a .json or .csv file.")
    return validate_schema(data, source=f"Class schema {path!r}")


def preset_schema(name):
    """One of the built-in schemas (:data:`PRESETS`)."""
    if name not in PRESETS:
        raise SchemaError(f"Unknown class schema preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return load_schema(os.path.join(SCHEMA_DIR, name + ".json"))


def schema_from_values(values, name="classes"):
    """Make a schema for integer class values found in data (names ``class <v>``)."""
    classes = [{"value": int(v), "name": f"class {int(v)}", "color": palette_color(i)}
               for i, v in enumerate(sorted(set(int(v) for v in values)))]
    return validate_schema({"name": name, "classes": classes})


def schema_from_names(names, name="classes"):
    """Make a schema for string class labels: sorted labels become classes 1..N.

    Common names (water, forest, farm, snow...) get their conventional colours, the others
    colours of a qualitative palette.
    """
    labels = sorted(set(str(n) for n in names))
    colors = {lab: _NAMED.get(lab.strip().lower()) for lab in labels}
    spare = (c for c in _PALETTE if c not in colors.values())
    classes = [{"value": i + 1, "name": lab, "color": colors[lab] or next(spare, palette_color(i))}
               for i, lab in enumerate(labels)]
    return validate_schema({"name": name, "classes": classes})


def dumps(schema):
    return json.dumps(schema, ensure_ascii=False, indent=2)


def sidecar_paths(raster_path):
    """The ``.schema.json`` and ``.qml`` files that travel beside a class raster."""
    stem = os.path.splitext(raster_path)[0]
    return {"schema": stem + ".schema.json", "qml": stem + ".qml"}


def read_raster_schema(raster_path):
    """The schema stored with a class raster (metadata, else sidecar), or None."""
    from osgeo import gdal

    ds = gdal.Open(raster_path)
    if ds is not None:
        text = ds.GetMetadataItem(METADATA_KEY)
        ds = None
        if text:
            return validate_schema(json.loads(text), source=raster_path)
    side = sidecar_paths(raster_path)["schema"]
    return load_schema(side) if os.path.isfile(side) else None


def _rgb(color):
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def gdal_color_table(schema):
    """A GDAL colour table with the schema's colours (value 0 transparent)."""
    from osgeo import gdal

    table = gdal.ColorTable()
    table.SetColorEntry(0, (0, 0, 0, 0))
    for cls in schema["classes"]:
        table.SetColorEntry(cls["value"], _rgb(cls["color"]) + (255,))
    return table


def category_names(schema):
    """GDAL category names, indexed by class value (0 = 'unlabelled')."""
    top = max(c["value"] for c in schema["classes"])
    names = [""] * (top + 1)
    names[0] = "unlabelled"
    for cls in schema["classes"]:
        names[cls["value"]] = cls["name"]
    return names


def paletted_qml(schema, band=1, opacity=1.0):
    """QGIS layer style (QML) that shows ``band`` as a paletted layer with the class names.

    Value 0 (unlabelled) is left out of the palette, so QGIS draws it transparent.
    """
    entries = "\n".join(
        f'          <paletteEntry value="{c["value"]}" color="{c["color"]}" alpha="255" '
        f'label={quoteattr(c["name"])}/>'
        for c in schema["classes"])
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="{band}" opacity="{opacity}" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
{entries}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation colorizeOn="0" saturation="0" grayscaleMode="0"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""
