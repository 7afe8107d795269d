"""Accuracy of a classification against reference classes, accumulated strip by strip.

A :class:`Confusion` counts (reference, predicted) pairs of class values over the pixels whose
reference is labelled (value above 0); a prediction of 0 (unlabelled, no class) is simply
wrong. :func:`class_scores` turns it into the per-class precision, recall, F1 and support,
the overall accuracy and the macro and weighted averages -- the numbers scikit-learn's
``precision_recall_fscore_support`` gives on the same pixels with ``labels`` set to the classes
that occur in the reference or the prediction.
"""

import csv

import numpy as np


class Confusion:
    """A confusion matrix over class values 0 .. ``top`` (rows: reference, columns: predicted)."""

    def __init__(self, top):
        self.top = int(top)
        self.matrix = np.zeros((self.top + 1, self.top + 1), np.int64)

    def add(self, reference, predicted, valid=None):
        """Count the pixels of one strip; ``valid`` (optional mask) limits them further."""
        reference = np.asarray(reference).astype(np.int64, copy=False)
        predicted = np.asarray(predicted).astype(np.int64, copy=False)
        keep = reference > 0
        if valid is not None:
            keep &= valid
        r, p = reference[keep], predicted[keep]
        inside = (r <= self.top) & (p <= self.top) & (p >= 0)
        if not inside.all():
            raise ValueError("class values beyond the schema")
        self.matrix += np.bincount(r * (self.top + 1) + p, minlength=(self.top + 1) ** 2).reshape(
            self.top + 1, self.top + 1)

    def cover(self, top):
        """Make room for class values up to ``top`` (counts kept)."""
        if top > self.top:
            grown = np.zeros((top + 1, top + 1), np.int64)
            grown[:self.top + 1, :self.top + 1] = self.matrix
            self.top, self.matrix = int(top), grown

    @property
    def total(self):
        return int(self.matrix.sum())


def class_scores(matrix, names=None):
    """Scores from a confusion matrix over class values (row/column 0 = unlabelled).

    Returns a dict: ``classes`` (value, name, precision, recall, f1, support for every class in
    the reference or the prediction), ``accuracy``, ``macro`` and ``weighted`` (precision,
    recall, f1) and ``total`` (labelled reference pixels).
    """
    m = np.asarray(matrix, np.float64)
    names = names or {}
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    values = [v for v in range(1, m.shape[0]) if support[v] > 0 or predicted[v] > 0]
    total = float(support.sum())
    rows = []
    for v in values:
        tp = m[v, v]
        precision = tp / predicted[v] if predicted[v] else 0.0
        recall = tp / support[v] if support[v] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"value": v, "name": names.get(v, str(v)), "precision": float(precision),
                     "recall": float(recall), "f1": float(f1), "support": int(support[v])})

    def average(weights):
        w = np.asarray(weights, np.float64)
        if not len(rows) or w.sum() == 0:
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        return {k: float(np.dot(w, [r[k] for r in rows]) / w.sum()) for k in ("precision", "recall", "f1")}

    return {"classes": rows, "total": int(total),
            "accuracy": float(np.trace(m[1:, 1:]) / total) if total else 0.0,
            "macro": average([1.0] * len(rows)), "weighted": average([r["support"] for r in rows])}


def write_scores_csv(path, scores):
    """The published CSV layout: Class, Precision, Recall, F1_score, Support, then the
    accuracy, macro average and weighted average rows."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Class", "Precision", "Recall", "F1_score", "Support"])
        for r in scores["classes"]:
            w.writerow([r["name"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                        r["support"]])
        w.writerow(["accuracy", "", "", f"{scores['accuracy']:.4f}", scores["total"]])
        for key, label in (("macro", "macro avg"), ("weighted", "weighted avg")):
            a = scores[key]
            w.writerow([label, f"{a['precision']:.4f}", f"{a['recall']:.4f}", f"{a['f1']:.4f}",
                        scores["total"]])


def class_boundaries(classes):
    """The boundary pixels of a class array: a pixel whose upper or left neighbour has another
    class, both labelled (> 0). One pixel per change, so a boundary moved by d px lies d px
    from the first."""
    classes = np.asarray(classes)
    edge = np.zeros(classes.shape, bool)
    for axis in (0, 1):
        a = np.swapaxes(classes, 0, axis)
        e = np.swapaxes(edge, 0, axis)
        change = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        e[1:] |= change
    return edge


def boundary_scores(truth, predicted, tolerance=2.0):
    """How well the class boundaries of ``predicted`` follow those of ``truth`` (0 = unlabelled).

    Only the labelled pixels of ``truth`` count: its boundaries are where two labelled pixels of
    different classes meet, and ``predicted``'s boundaries are taken where ``truth`` is labelled.
    Returns ``precision`` (share of predicted boundary pixels within ``tolerance`` px of a true
    one), ``recall`` (share of true boundary pixels within ``tolerance`` of a predicted one),
    ``f1`` and ``mean_distance`` (px): the mean, over both boundaries' pixels, of the distance
    to the nearest pixel of the other boundary (the average symmetric surface distance). All
    are None when ``truth`` has no boundary; with no predicted boundary, the distance is the
    image diagonal.
    """
    from scipy import ndimage

    truth, predicted = np.asarray(truth), np.asarray(predicted)
    labelled = truth > 0
    true_edge = class_boundaries(truth)
    pred_edge = class_boundaries(np.where(labelled, predicted, 0)) & labelled
    n_true, n_pred = int(true_edge.sum()), int(pred_edge.sum())
    if n_true == 0:
        return {"precision": None, "recall": None, "f1": None, "mean_distance": None}
    if n_pred == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                "mean_distance": float(np.hypot(*truth.shape))}
    to_true = ndimage.distance_transform_edt(~true_edge)
    to_pred = ndimage.distance_transform_edt(~pred_edge)
    precision = float((to_true[pred_edge] <= tolerance).mean())
    recall = float((to_pred[true_edge] <= tolerance).mean())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    mean = float((to_true[pred_edge].sum() + to_pred[true_edge].sum()) / (n_pred + n_true))
    return {"precision": precision, "recall": recall, "f1": f1, "mean_distance": mean}
