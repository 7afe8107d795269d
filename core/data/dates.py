"""Acquisition dates: from date fields, text, product and file names, and image metadata."""

import datetime
import os
import re

_SEPARATED = re.compile(r"(?<!\d)(\d{4})[-/.:](\d{1,2})[-/.:](\d{1,2})(?!\d)")
_COMPACT = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
_COMPACT_T = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})T\d{4,6}")


def make_date(y, m, d):
    """The date, or None when it does not exist (or lies outside 1900-2200)."""
    try:
        day = datetime.date(int(y), int(m), int(d))
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2200 else None


def parse_date(value):
    """A :class:`datetime.date` from a date, a datetime or text, or None.

    Text: ISO 8601 (``2019-02-17``, with or without a time), ``2019/02/17``, ``20190217``, or
    such a date inside a longer text (a product or file name): the first valid one.
    """
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    text = str(value).strip()
    if not text:
        return None
    found = []
    for pattern in (_SEPARATED, _COMPACT_T, _COMPACT):
        for match in pattern.finditer(text):
            day = make_date(*match.groups())
            if day is not None:
                found.append((match.start(), day))
                break
    return min(found)[1] if found else None


# Metadata items that hold the acquisition date (GDAL's drivers and common producers), in
# order; TIFFTAG_DATETIME, often the file's creation time, is the last resort after the name.
ACQUISITION_KEYS = ("ACQUISITIONDATE", "ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME",
                    "SENSING_DATE", "DATATAKE_1_DATATAKE_SENSING_START", "PRODUCT_START_TIME",
                    "START_TIME", "DATE")


def image_date(ds, path=None):
    """The acquisition date of a GDAL dataset, or None: from its metadata
    (:data:`ACQUISITION_KEYS`), else from its file name (a Sentinel-2 or Landsat product name,
    ``YYYYMMDD``, ``YYYY-MM-DD``), else from ``TIFFTAG_DATETIME``."""
    meta = {k.upper(): v for k, v in (ds.GetMetadata() or {}).items()}
    for key in ACQUISITION_KEYS:
        day = parse_date(meta.get(key))
        if day is not None:
            return day
    name = os.path.basename(path or ds.GetDescription() or "")
    day = parse_date(name)
    if day is not None:
        return day
    return parse_date(meta.get("TIFFTAG_DATETIME"))
