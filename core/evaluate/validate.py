"""Accuracy of a class raster against reference classes: per-class scores with confidence
intervals, overall accuracy, Cohen's kappa, averages, the confusion matrix and its figure.

:func:`validate_classification` is the core of ``fjord:validateclassification``. Only pixels
whose reference is labelled (above 0) count; a prediction of 0 or nodata there is an error
(nodata pixels of the prediction are counted and reported). The 95 % confidence intervals come
from a multinomial bootstrap of the confusion matrix (1,000 draws): they describe the sampling
of independent pixels and are optimistic for spatially correlated errors.
"""

import csv
import json
import os
import shutil

import numpy as np

from ..data import schema as schemas
from ..data.rasters import check_class_bands, open_raster, read_classes, same_grid
from ..errors import Cancelled, FjordError, never_stop, no_progress
from ..outputs import AtomicOutputs, check_figure, check_writable, work_dir
from .metrics import Confusion, class_scores

BOOTSTRAP = 1000
SCORES = ("precision", "recall", "f1")


def kappa(matrix):
    """Cohen's kappa of a confusion matrix (rows: reference, columns: predicted)."""
    m = np.asarray(matrix, np.float64)
    n = m.sum()
    if n == 0:
        return 0.0
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) * m.sum(axis=0)).sum()) / n ** 2
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def bootstrap_intervals(matrix, values, draws=BOOTSTRAP, seed=0, level=0.95):
    """95 % intervals of every score by a multinomial bootstrap of the confusion matrix."""
    m = np.asarray(matrix, np.int64)
    total = int(m.sum())
    if total == 0:
        return {}
    rng = np.random.default_rng(seed)
    samples = rng.multinomial(total, (m / total).ravel(), size=draws).reshape((draws,) + m.shape)
    support = samples.sum(axis=2)
    predicted = samples.sum(axis=1)
    idx = np.asarray(values)
    tp = samples[:, idx, idx]
    precision = np.divide(tp, predicted[:, idx], out=np.zeros(tp.shape), where=predicted[:, idx] > 0)
    recall = np.divide(tp, support[:, idx], out=np.zeros(tp.shape), where=support[:, idx] > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(tp.shape), where=denom > 0)
    weights = support[:, idx].astype(np.float64)
    diag = np.trace(samples[:, 1:, 1:], axis1=1, axis2=2)
    po = diag / total
    pe = (support * predicted).sum(axis=1) / float(total) ** 2
    kap = np.where(pe < 1, (samples.trace(axis1=1, axis2=2) / total - pe) / np.where(pe < 1, 1 - pe, 1), 1.0)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def ci(a, axis=0):
        return np.percentile(a, [lo, hi], axis=axis)

    out = {"accuracy": ci(po).tolist(), "kappa": ci(kap).tolist()}
    for name, arr in (("precision", precision), ("recall", recall), ("f1", f1)):
        bounds = ci(arr)
        out[name] = {int(v): [float(bounds[0][i]), float(bounds[1][i])] for i, v in enumerate(values)}
        macro = arr.mean(axis=1)
        weighted = np.divide((arr * weights).sum(axis=1), weights.sum(axis=1),
                             out=np.zeros(draws), where=weights.sum(axis=1) > 0)
        out["macro_" + name] = ci(macro).tolist()
        out["weighted_" + name] = ci(weighted).tolist()
    return out


def _reference_from_vector(vector, field, layer, like_path, schema, work, progress, should_stop):
    from ..prepare.rasterize import rasterize_labels

    path = os.path.join(work, "reference.tif")
    result = rasterize_labels(vector, field, like_path, path, layer=layer, schema=schema,
                              should_stop=should_stop)
    for warning in result["warnings"]:
        progress(None, warning)
    return path


def validate_classification(input, output, *, reference=None, reference_vector=None, field=None,
                            layer=None, output_confusion=None, figure=None, seed=0,
                            progress=None, should_stop=None):
    """Score the class raster ``input`` against a reference class raster (on its grid) or
    reference polygons (``reference_vector`` with its class ``field``).

    Writes ``output`` (CSV: per class precision, recall, F1 with 95 % intervals and support;
    then overall accuracy, kappa, macro and weighted averages), optionally ``output_confusion``
    (CSV) and ``figure`` (PNG). Returns the numbers.
    """
    progress = progress or no_progress
    should_stop = should_stop or never_stop
    if bool(reference) == bool(reference_vector):
        raise FjordError("Give either a reference class raster (REFERENCE) or reference polygons "
                         "(REFERENCE_VECTOR with FIELD), not both or neither.")
    if reference_vector and not field:
        raise FjordError("Reference polygons need FIELD, the field that holds their class.")
    ds = open_raster(input, "class raster")
    check_class_bands(ds)
    schema = schemas.read_raster_schema(input)
    for path in (output, output_confusion):
        if path:
            check_writable(path)
    if figure:
        check_figure(figure)
    work = work_dir(output)
    try:
        if reference_vector:
            progress(0.0, "Rasterising the reference polygons onto the class raster's grid")
            reference = _reference_from_vector(reference_vector, field, layer, input, schema, work,
                                               progress, should_stop)
        matrix, missing = _confusion_matrix(ds, reference, schema, progress, should_stop)
    finally:
        ds = None
        shutil.rmtree(work, ignore_errors=True)
    names = {int(c["value"]): c["name"] for c in schema["classes"]} if schema else {}
    scores = class_scores(matrix, names)
    values = [r["value"] for r in scores["classes"]]
    intervals = bootstrap_intervals(matrix, values, seed=seed)
    scores["kappa"] = kappa(matrix)
    if missing:
        progress(None, f"{missing:,} labelled reference pixels are nodata in the class raster; "
                       "they count as errors.")
    progress(0.8, f"Overall accuracy {scores['accuracy']:.4f}, kappa {scores['kappa']:.4f}, macro F1 "
                  f"{scores['macro']['f1']:.4f}, weighted F1 {scores['weighted']['f1']:.4f} over "
                  f"{scores['total']:,} reference pixels.")
    with AtomicOutputs() as out:
        _write_scores(out.add(output), scores, intervals)
        if output_confusion:
            _write_confusion(out.add(output_confusion), matrix, values, names)
        if figure:
            _write_figure(out.add(figure), matrix, values, names, scores)
    progress(1.0, None)
    return {"accuracy": scores["accuracy"], "kappa": scores["kappa"],
            "macro_f1": scores["macro"]["f1"], "weighted_f1": scores["weighted"]["f1"],
            "total": scores["total"], "nodata_pixels": missing, "classes": scores["classes"],
            "intervals": json.loads(json.dumps(intervals))}


def _confusion_matrix(ds, reference, schema, progress, should_stop):
    """The confusion matrix of the class raster ``ds`` against the reference raster (rows:
    reference, columns: predicted, nodata as column 0), and the number of labelled reference
    pixels that are nodata in ``ds``."""
    ref = open_raster(reference, "reference raster")
    check_class_bands(ref, "reference raster")
    if not same_grid(ref, ds, lenient_crs=True):
        raise FjordError(
            f"The reference raster ({ref.RasterXSize} x {ref.RasterYSize} px) is not on the grid "
            f"of the class raster ({ds.RasterXSize} x {ds.RasterYSize} px). Rasterise the "
            "reference polygons onto it (or give them as REFERENCE_VECTOR).")
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    conf = Confusion(max((c["value"] for c in schema["classes"]), default=1) if schema else 1)
    missing = 0
    height, width = ds.RasterYSize, ds.RasterXSize
    for y in range(0, height, 512):
        if should_stop():
            raise Cancelled("Validation was cancelled.")
        n = min(512, height - y)
        truth = read_classes(ref, y, n, "reference raster")
        raw = ds.GetRasterBand(1).ReadAsArray(0, y, width, n)
        ds.FlushCache()
        invalid = np.zeros(raw.shape, bool) if nodata is None else raw == nodata
        if np.issubdtype(raw.dtype, np.floating):
            invalid |= ~np.isfinite(raw)
        predicted = read_classes(ds, y, n, "class raster (INPUT)")
        missing += int((invalid & (truth > 0)).sum())
        predicted[invalid] = 0
        conf.cover(max(int(truth.max(initial=0)), int(predicted.max(initial=0))))
        conf.add(truth, predicted)
        progress(0.1 + 0.6 * (y + n) / height)
    if conf.matrix.sum() == 0:
        raise FjordError("The reference labels none of the class raster's pixels (all 0 or "
                         "outside); check that both cover the same area.")
    return conf.matrix, missing


def _write_figure(path, matrix, values, names, scores):
    from .figures import confusion_figure

    cols = values + [0] if matrix[:, 0].any() else values
    confusion_figure(matrix[np.ix_(values, cols)], [names.get(v, str(v)) for v in values], path,
                     title=f"Accuracy {scores['accuracy']:.3f}, kappa {scores['kappa']:.3f}, "
                           f"macro F1 {scores['macro']['f1']:.3f}",
                     col_names=[names.get(v, str(v)) if v else "unlabelled / nodata"
                                for v in cols])


def _fmt(value):
    return f"{value:.4f}"


def _write_scores(path, scores, intervals):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Class", "Value", "Precision", "Precision_low", "Precision_high", "Recall",
                    "Recall_low", "Recall_high", "F1_score", "F1_low", "F1_high", "Support"])
        for r in scores["classes"]:
            row = [r["name"], r["value"]]
            for key in SCORES:
                lo, hi = intervals[key][r["value"]]
                row += [_fmt(r[key]), _fmt(lo), _fmt(hi)]
            w.writerow(row + [r["support"]])
        total = scores["total"]
        for label, key in (("overall accuracy", "accuracy"), ("kappa", "kappa")):
            lo, hi = intervals[key]
            w.writerow([label, "", "", "", "", "", "", "", _fmt(scores[key]), _fmt(lo), _fmt(hi), total])
        for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
            row = [label, ""]
            for name in SCORES:
                lo, hi = intervals[f"{key}_{name}"]
                row += [_fmt(scores[key][name]), _fmt(lo), _fmt(hi)]
            w.writerow(row + [total])


def _write_confusion(path, matrix, values, names):
    cols = [0] + values
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["reference \\ predicted"] + ["unlabelled" if v == 0 else names.get(v, str(v))
                                                  for v in cols])
        for v in values:
            w.writerow([names.get(v, str(v))] + [int(matrix[v, c]) for c in cols])
