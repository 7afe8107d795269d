"""A restartable sweep of CNN-supervised classifications driven by a job table (CSV).

:func:`batch_csc` is the worker job of ``fjord:batchcsc``. The table has one row per job with
the columns of the published batch tables (Carbonneau et al. 2020; Marochov et al. 2021):

- ``Model``: the phase-one model file;
- ``DataSource``: an image, a folder of images or a glob pattern;
- ``OutFolder``: outputs go to ``<OutFolder>_patch<PatchSize>/``;
- ``ExpShortHand``: the experiment's short name, the prefix of its output files;
- ``Dims``: bands used, the first ``Dims`` of each image (3 = RGB of a 4-band R, G, B, NIR
  stack); the model must take that many;
- ``PatchSize``: 1, 3, 5, 7 or 15; ``TileSize``: must be the model's tile size (a check);
- ``Patience``: phase-two early-stopping patience;
- ``Done``: 0 to run, 1 when finished.

Optional columns: ``Validation`` (a reference class raster, or a folder holding them; else each
image's reference is looked up beside it as ``SCLS_<name>.tif`` or ``<name>_classes.tif``) and
``WholeImage`` (accepted for compatibility; Fjord always predicts in strips). Relative paths are
taken from the table's folder.

Each row whose Done is 0 runs; when all its images are classified, its Done becomes 1 and the
table is rewritten (to a temporary file, then renamed), so an interrupted sweep resumes where
it stopped. A row that fails is reported and the sweep goes on. The summary CSV lists every
job and image with its phase-one and CSC scores.
"""

import csv
import glob
import os
import time

from .errors import Cancelled, FjordError, never_stop, no_progress

REQUIRED = ("Model", "DataSource", "OutFolder", "ExpShortHand", "Dims", "PatchSize", "TileSize",
            "Patience", "Done")
OPTIONAL = ("Validation", "WholeImage")
IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".img", ".vrt")
SUMMARY_COLUMNS = ["ExpShortHand", "Model", "Image", "PatchSize", "TileSize", "Status",
                   "PhaseOne_weighted_F1", "PhaseOne_macro_F1", "CSC_weighted_F1", "CSC_macro_F1",
                   "CSC_accuracy", "Reference_pixels", "Seconds", "Message"]


def read_jobs(path):
    """``(fieldnames, rows)`` of a job table, checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [name.strip() for name in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except OSError as exc:
        raise FjordError(f"Cannot read the job table {path!r}: {exc.strerror}.") from None
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise FjordError(f"The job table lacks the column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}).")
    unknown = [c for c in fields if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise FjordError(f"The job table has unknown column(s) {', '.join(unknown)}; the columns "
                         f"are {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}).")
    if not rows:
        raise FjordError("The job table has no rows.")
    for i, row in enumerate(rows, start=2):
        for col in ("Dims", "PatchSize", "TileSize", "Patience", "Done"):
            try:
                row[col] = str(int(float(row[col])))
            except ValueError:
                raise FjordError(f"Line {i} of the job table: {col} must be a whole number, not "
                                 f"{row[col]!r}.") from None
        if row["Done"] not in ("0", "1"):
            raise FjordError(f"Line {i} of the job table: Done must be 0 or 1.")
    return fields, rows


def write_jobs(path, fields, rows):
    """Rewrite the table safely: a temporary file renamed over the old one."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.partial")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _resolve(path, base):
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.join(base, path)


def is_reference_name(name):
    stem = os.path.splitext(os.path.basename(name))[0]
    return stem.upper().startswith("SCLS_") or stem.lower().endswith("_classes")


def list_images(source):
    """The images of a DataSource: one file, the images of a folder, or a glob pattern."""
    if os.path.isfile(source):
        return [source]
    if os.path.isdir(source):
        found = [os.path.join(source, n) for n in sorted(os.listdir(source))]
    else:
        found = sorted(glob.glob(source))
    images = [p for p in found if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)
              and not is_reference_name(p) and not os.path.basename(p).startswith(".")]
    if not images:
        raise FjordError(f"DataSource {source!r} is not an image, a folder of images or a "
                         "pattern that matches images.")
    return images


def find_reference(image, validation=None):
    """The reference class raster of ``image``: ``validation`` (a file, or a folder to look
    in), else a conventional name beside the image; None when there is none."""
    folder = os.path.dirname(image)
    if validation and os.path.isfile(validation):
        return validation
    if validation and os.path.isdir(validation):
        folder = validation
    from .csc import image_stem

    stem = image_stem(image)
    for name in (f"SCLS_{stem}", f"SCLS_{stem.replace('_', '')}", f"{stem}_classes"):
        for ext in (".tif", ".tiff"):
            path = os.path.join(folder, name + ext)
            if os.path.isfile(path):
                return path
    return None


def _band_subset(image, dims, work):
    """``image`` itself, or a VRT of its first ``dims`` bands."""
    from osgeo import gdal

    ds = gdal.Open(image)
    bands = ds.RasterCount
    ds = None
    if bands == dims:
        return image
    if bands < dims:
        raise FjordError(f"Dims is {dims} but {os.path.basename(image)} has {bands} bands.")
    vrt = os.path.join(work, os.path.splitext(os.path.basename(image))[0] + f"_{dims}bands.vrt")
    gdal.Translate(vrt, image, format="VRT", bandList=list(range(1, dims + 1)))
    return vrt


def _check_row(row, base):
    from ..models import PATCH_SIZES
    from ..models.modelfile import read_metadata

    model = _resolve(row["Model"], base)
    meta = read_metadata(model)
    k, tile, dims = int(row["PatchSize"]), int(row["TileSize"]), int(row["Dims"])
    if k not in PATCH_SIZES:
        raise FjordError(f"PatchSize {k} is not one of {', '.join(map(str, PATCH_SIZES))}.")
    if meta["task"] != "tiles":
        raise FjordError(f"{os.path.basename(model)} is not a phase-one model.")
    if tile != int(meta["tile_size"]):
        raise FjordError(f"TileSize is {tile} but the model {os.path.basename(model)} was trained "
                         f"on {meta['tile_size']} px tiles.")
    if dims != int(meta["bands"]):
        raise FjordError(f"Dims is {dims} but the model {os.path.basename(model)} takes "
                         f"{meta['bands']} bands.")
    return model


def _scores_row(row, image, status, result=None, seconds=None, message=""):
    out = {"ExpShortHand": row["ExpShortHand"], "Model": row["Model"], "Image": image,
           "PatchSize": row["PatchSize"], "TileSize": row["TileSize"], "Status": status,
           "Seconds": f"{seconds:.1f}" if seconds is not None else "", "Message": message}
    scores = (result or {}).get("scores") or {}
    if scores:
        one, csc = scores["phase_one"], scores["csc"]
        out.update({"PhaseOne_weighted_F1": f"{one['weighted']['f1']:.4f}",
                    "PhaseOne_macro_F1": f"{one['macro']['f1']:.4f}",
                    "CSC_weighted_F1": f"{csc['weighted']['f1']:.4f}",
                    "CSC_macro_F1": f"{csc['macro']['f1']:.4f}",
                    "CSC_accuracy": f"{csc['accuracy']:.4f}", "Reference_pixels": csc["total"]})
        for cls in csc["classes"]:
            out[f"CSC_F1_{cls['name']}"] = f"{cls['f1']:.4f}"
    return out


def _earlier_scores(folder, name):
    """Weighted and macro F1 read back from the CSVs of a job done in an earlier run."""
    found = {}
    for prefix in ("CNN", "CSC"):
        path = os.path.join(folder, f"{prefix}_{name}.csv")
        if not os.path.isfile(path):
            return None
        with open(path, newline="", encoding="utf-8") as f:
            rows = {r["Class"]: r for r in csv.DictReader(f)}
        found[prefix] = rows
    return {"PhaseOne_weighted_F1": found["CNN"]["weighted avg"]["F1_score"],
            "PhaseOne_macro_F1": found["CNN"]["macro avg"]["F1_score"],
            "CSC_weighted_F1": found["CSC"]["weighted avg"]["F1_score"],
            "CSC_macro_F1": found["CSC"]["macro avg"]["F1_score"],
            "CSC_accuracy": found["CSC"]["accuracy"]["F1_score"],
            "Reference_pixels": found["CSC"]["accuracy"]["Support"]}


def job_folder(row, base):
    return _resolve(f"{row['OutFolder'].rstrip('/')}_patch{int(row['PatchSize'])}", base)


def output_names(row, image):
    """The file names of one image's outputs within the job folder (and its report name)."""
    from .csc import image_stem

    name = f"{row['ExpShortHand']}_{image_stem(image)}"
    return {"classes": name + ".tif", "phase_one": name + "_phase_one.tif", "report_name": name}


def batch_csc(jobs, summary, *, samples_per_class=500_000, max_epochs=300, smoothing=4,
              recognition_threshold=0.0, device="auto", seed=0, progress=None, should_stop=None):
    """Run every job of the table whose Done is 0; returns the summary rows and counts."""
    import tempfile

    from .csc import classify_csc, span_progress

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    fields, rows = read_jobs(jobs)
    base = os.path.dirname(os.path.abspath(jobs))
    todo = [i for i, r in enumerate(rows) if r["Done"] == "0"]
    progress(0.0, f"{len(rows)} jobs in the table, {len(todo)} to run.")
    summary_rows, failed, ran = [], 0, 0
    for i, row in enumerate(rows):
        folder = job_folder(row, base)
        if row["Done"] == "1":
            for image in _safe_images(row, base):
                names = output_names(row, image)
                earlier = _earlier_scores(folder, names["report_name"])
                entry = _scores_row(row, image, "done earlier")
                entry.update(earlier or {})
                summary_rows.append(entry)
            continue
        if should_stop():
            raise Cancelled("The sweep was cancelled; finished jobs are marked Done in the table.")
        t0 = time.perf_counter()
        done_before = todo.index(i)
        span = (done_before / len(todo), (done_before + 1) / len(todo))
        progress(span[0], f"Job {row['ExpShortHand']} ({done_before + 1}/{len(todo)}): "
                          f"PatchSize {row['PatchSize']}, model {row['Model']}")
        entries = []
        try:
            model = _check_row(row, base)
            images = list_images(_resolve(row["DataSource"], base))
            os.makedirs(folder, exist_ok=True)
            validation = _resolve(row["Validation"], base) if row.get("Validation") else None
            with tempfile.TemporaryDirectory(prefix=".fjord-batch-", dir=folder) as work:
                for j, image in enumerate(images):
                    names = output_names(row, image)
                    reference = find_reference(image, validation)
                    t1 = time.perf_counter()
                    lo = span[0] + (span[1] - span[0]) * j / len(images)
                    hi = span[0] + (span[1] - span[0]) * (j + 1) / len(images)
                    result = classify_csc(
                        _band_subset(image, int(row["Dims"]), work), model,
                        os.path.join(folder, names["classes"]),
                        patch_size=int(row["PatchSize"]), patience=int(row["Patience"]),
                        samples_per_class=samples_per_class, max_epochs=max_epochs,
                        smoothing=smoothing, recognition_threshold=recognition_threshold,
                        validation=reference,
                        output_phase_one=os.path.join(folder, names["phase_one"]),
                        report=folder, report_name=names["report_name"], device=device,
                        seed=seed, should_stop=should_stop,
                        progress=span_progress(progress, lo, hi))
                    entries.append(_scores_row(row, image, "ok", result, time.perf_counter() - t1,
                                               "" if reference else "no reference classes found"))
                    _clear_session()
        except Cancelled:
            raise
        except Exception as exc:  # a failing row is reported and the sweep goes on
            failed += 1
            message = str(exc) if isinstance(exc, FjordError) else f"{type(exc).__name__}: {exc}"
            progress(None, f"Job {row['ExpShortHand']} failed: {message}")
            summary_rows.extend(entries)
            summary_rows.append(_scores_row(row, row["DataSource"], "failed", message=message))
            _clear_session()
            continue
        ran += 1
        row["Done"] = "1"
        write_jobs(jobs, fields, rows)
        summary_rows.extend(entries)
        scored = [e for e in entries if e.get("CSC_weighted_F1")]
        progress(span[1], f"Job {row['ExpShortHand']} done in {time.perf_counter() - t0:.0f} s"
                 + (": CSC weighted F1 " + ", ".join(e["CSC_weighted_F1"] for e in scored)
                    if scored else "."))
    _write_summary(summary, summary_rows)
    progress(1.0, f"{ran} jobs run, {failed} failed, {len(rows) - len(todo)} done earlier.")
    return {"summary": os.path.abspath(summary), "ran": ran, "failed": failed,
            "done_earlier": len(rows) - len(todo), "rows": summary_rows}


def _safe_images(row, base):
    try:
        return list_images(_resolve(row["DataSource"], base))
    except FjordError:
        return [row["DataSource"]]


def _clear_session():
    import keras

    keras.backend.clear_session()


def _write_summary(path, rows):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    extra = sorted({k for r in rows for k in r if k not in SUMMARY_COLUMNS})
    tmp = os.path.join(folder, f".{os.path.basename(path)}.partial")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS[:-1] + extra + ["Message"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
