"""A restartable sweep of classifications driven by a job table (CSV), here or on a Dask
cluster.

:func:`batch_csc` is the worker job of ``fjord:batchcsc``. The table has one row per job with
the columns of the published batch tables (Carbonneau et al. 2020; Marochov et al. 2021):

- ``Model``: the phase-one model file (a U-Net model file for ``Method`` unet);
- ``DataSource``: an image, a folder of images or a glob pattern;
- ``OutFolder``: outputs go to ``<OutFolder>_patch<PatchSize>/`` (``<OutFolder>_unet/``);
- ``ExpShortHand``: the experiment's short name, the prefix of its output files;
- ``Dims``: bands used, the first ``Dims`` of each image (3 = RGB of a 4-band R, G, B, NIR
  stack); the model must take that many;
- ``PatchSize``: 1, 3, 5, 7 or 15; ``TileSize``: must be the model's tile size (a check);
- ``Patience``: phase-two early-stopping patience (these three may be empty for a U-Net job);
- ``Done``: 0 to run, 1 when finished.

Optional columns: ``Validation`` (a reference class raster, or a folder holding them; else each
image's reference is looked up beside it as ``SCLS_<name>.tif`` or ``<name>_classes.tif``),
``WholeImage`` (accepted for compatibility; Fjord always predicts in strips), ``Method``
(``csc``, the default, or ``unet``: classify with a U-Net model), ``Front`` (an output line
layer: the calving front of each classified image, found with the class names of the glacial
schema, with its acquisition date; ``GlacierClasses``, ``OceanClasses`` and ``RockClasses``
give the class values of each role instead, separated by spaces, for a model whose classes are
not named so), and ``Status`` / ``Error``, which the run writes. Relative
paths are taken from the table's folder; commas, semicolons or tabs separate the fields.

Each row whose Done is 0 runs (:func:`run_row`, here or on a Dask worker:
:mod:`fjord.core.run.scheduler`). Only the coordinating process writes the table: after every
finished job, Done, Status and Error, rewritten to a temporary file and renamed, so an
interrupted sweep resumes where it stopped. A row that fails is reported and the sweep goes on.
The summary CSV lists every job and image with its scores; the merged front layer holds the
fronts of every done job, dated, for ``fjord:terminuschange``.
"""

import csv
import glob
import os
import time

from ..errors import Cancelled, FjordError, never_stop, no_progress, span_progress

REQUIRED = ("Model", "DataSource", "OutFolder", "ExpShortHand", "Dims", "PatchSize", "TileSize",
            "Patience", "Done")
ROLE_COLUMNS = {"glacier": "GlacierClasses", "ocean": "OceanClasses", "rock": "RockClasses"}
OPTIONAL = ("Validation", "WholeImage", "Method", "Front", *ROLE_COLUMNS.values(), "Status",
            "Error")
METHODS = ("csc", "unet")
IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".img", ".vrt")
SUMMARY_COLUMNS = ["ExpShortHand", "Method", "Model", "Image", "PatchSize", "TileSize", "Status",
                   "PhaseOne_weighted_F1", "PhaseOne_macro_F1", "CSC_weighted_F1", "CSC_macro_F1",
                   "CSC_accuracy", "UNet_weighted_F1", "UNet_macro_F1", "UNet_accuracy",
                   "Reference_pixels", "Seconds", "Message"]


def _delimiter(path):
    """The field separator of a job table: comma, semicolon or tab (what a spreadsheet in a
    locale with a decimal comma writes), read off its header line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = f.readline()
    except OSError as exc:
        raise FjordError(f"Cannot read the job table {path!r}: {exc.strerror}.") from None
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def read_jobs(path):
    """``(fieldnames, rows)`` of a job table, checked. Every row gets ``Method`` (``csc`` when
    the column is absent or empty)."""
    delimiter = _delimiter(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            fields = [name.strip() for name in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except OSError as exc:
        raise FjordError(f"Cannot read the job table {path!r}: {exc.strerror}.") from None
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise FjordError(f"The job table lacks the column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}), separated by "
                         "commas, semicolons or tabs, with the names on its first line.")
    unknown = [c for c in fields if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise FjordError(f"The job table has unknown column(s) {', '.join(unknown)}; the columns "
                         f"are {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}).")
    if not rows:
        raise FjordError("The job table has no rows.")
    for i, row in enumerate(rows, start=2):
        method = (row.get("Method") or "csc").lower()
        if method not in METHODS:
            raise FjordError(f"Line {i} of the job table: Method must be csc or unet, not "
                             f"{row['Method']!r}.")
        row["Method"] = method
        for col in ("Dims", "PatchSize", "TileSize", "Patience", "Done"):
            if method == "unet" and col in ("PatchSize", "TileSize", "Patience") and not row[col]:
                continue  # a U-Net job has no phase two
            try:
                row[col] = str(int(float(row[col])))
            except ValueError:
                raise FjordError(f"Line {i} of the job table: {col} must be a whole number, not "
                                 f"{row[col]!r}.") from None
        if row["Done"] not in ("0", "1"):
            raise FjordError(f"Line {i} of the job table: Done must be 0 or 1.")
    _check_distinct_outputs(rows, os.path.dirname(os.path.abspath(path)))
    return fields, rows


def _check_distinct_outputs(rows, base):
    """Refuse rows that would write the same files (job folder and ExpShortHand): the later
    map would silently replace the earlier."""
    lines = {}
    for i, row in enumerate(rows, start=2):
        key = (os.path.normpath(job_folder(row, base)), row["ExpShortHand"])
        lines.setdefault(key, []).append(i)
    for (folder, name), found in lines.items():
        if len(found) > 1:
            raise FjordError(
                f"Lines {', '.join(map(str, found))} of the job table write the same files "
                f"({name}_<image>.tif in {folder}): each map would replace the one before. Give "
                "each row its own ExpShortHand or OutFolder.")


def table_dialect(path):
    """How the job table at ``path`` is written, to write it back the same way: ``delimiter``,
    ``encoding`` ('utf-8-sig' when it starts with a byte-order mark), ``quoting`` (every field
    quoted when its header is) and ``lineterminator``."""
    with open(path, "rb") as f:
        head = f.read(4096)
    bom = head.startswith(b"\xef\xbb\xbf")
    first = head[3 if bom else 0:].split(b"\n", 1)[0]
    return {"delimiter": _delimiter(path), "encoding": "utf-8-sig" if bom else "utf-8",
            "quoting": csv.QUOTE_ALL if first.startswith(b'"') else csv.QUOTE_MINIMAL,
            "lineterminator": "\r\n" if first.endswith(b"\r") else "\n"}


def write_jobs(path, fields, rows):
    """Rewrite the table safely, in the user's own dialect (separator, byte-order mark,
    quoting, line ends; :func:`table_dialect`): a temporary file renamed over the old one.
    ``Method`` is written only when the table has that column."""
    dialect = table_dialect(path) if os.path.isfile(path) else {
        "delimiter": ",", "encoding": "utf-8", "quoting": csv.QUOTE_MINIMAL, "lineterminator": "\n"}
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.partial")
    with open(tmp, "w", newline="", encoding=dialect.pop("encoding")) as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore", **dialect)
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
    from ..learn.csc import image_stem

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
    from ...models import PATCH_SIZES
    from ...models.modelfile import read_metadata

    model = _resolve(row["Model"], base)
    meta = read_metadata(model)
    dims = int(row["Dims"])
    if row["Method"] == "unet":
        if meta["task"] != "segmentation":
            raise FjordError(f"Method is unet but {os.path.basename(model)} is not a U-Net model "
                             "(trainunet).")
    else:
        k, tile = int(row["PatchSize"]), int(row["TileSize"])
        if k not in PATCH_SIZES:
            raise FjordError(f"PatchSize {k} is not one of {', '.join(map(str, PATCH_SIZES))}.")
        if meta["task"] not in ("tiles", "segmentation"):
            raise FjordError(f"{os.path.basename(model)} is not a phase-one model (a tile "
                             "classifier or a U-Net).")
        if tile != int(meta["tile_size"]):
            raise FjordError(f"TileSize is {tile} but the model {os.path.basename(model)} was "
                             f"trained on {meta['tile_size']} px "
                             + ("tiles." if meta["task"] == "tiles" else "windows."))
    if dims != int(meta["bands"]):
        raise FjordError(f"Dims is {dims} but the model {os.path.basename(model)} takes "
                         f"{meta['bands']} bands.")
    if row.get("Front") and not row["Front"].lower().endswith(".gpkg"):
        raise FjordError(f"Front {row['Front']!r} must be a GeoPackage path (.gpkg).")
    return model, meta


def front_roles(row, meta):
    """The glacier, ocean and rock class values of a job with a ``Front`` (keyword arguments of
    :func:`~fjord.core.glaciers.front.calving_fronts`), from its role columns or the model's
    class names; checked before anything is classified, so that a job whose fronts cannot be
    found fails at once (and fails again at once on a re-run, until its row is mended)."""
    import re

    from ..glaciers.front import resolve_classes

    roles = {}
    for role, column in ROLE_COLUMNS.items():
        given = [int(v) for v in re.findall(r"\d+", row.get(column) or "")]
        roles[f"{role}_classes"] = resolve_classes(meta["schema"], given, role,
                                                   f"the job table's {column} column", "model")
    return roles


def _scores_row(row, image, status, result=None, seconds=None, message=""):
    out = {"ExpShortHand": row["ExpShortHand"], "Method": row["Method"], "Model": row["Model"],
           "Image": image, "PatchSize": row["PatchSize"], "TileSize": row["TileSize"],
           "Status": status, "Seconds": f"{seconds:.1f}" if seconds is not None else "",
           "Message": message}
    scores = (result or {}).get("scores") or {}
    if scores.get("phase_one"):
        one = scores["phase_one"]
        out.update({"PhaseOne_weighted_F1": f"{one['weighted']['f1']:.4f}",
                    "PhaseOne_macro_F1": f"{one['macro']['f1']:.4f}"})
    final = scores.get("csc") or scores.get("unet")
    if final:
        prefix = "CSC" if scores.get("csc") else "UNet"
        out.update({f"{prefix}_weighted_F1": f"{final['weighted']['f1']:.4f}",
                    f"{prefix}_macro_F1": f"{final['macro']['f1']:.4f}",
                    f"{prefix}_accuracy": f"{final['accuracy']:.4f}",
                    "Reference_pixels": final["total"]})
        for cls in final["classes"]:
            out[f"{prefix}_F1_{cls['name']}"] = f"{cls['f1']:.4f}"
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
    """``<OutFolder>_patch<PatchSize>`` of a CSC job, ``<OutFolder>_unet`` of a U-Net job."""
    suffix = "unet" if row["Method"] == "unet" else f"patch{int(row['PatchSize'])}"
    return _resolve(f"{row['OutFolder'].rstrip('/')}_{suffix}", base)


def output_names(row, image):
    """The file names of one image's outputs within the job folder (and its report name)."""
    from ..learn.csc import image_stem

    name = f"{row['ExpShortHand']}_{image_stem(image)}"
    return {"classes": name + ".tif", "phase_one": name + "_phase_one.tif", "report_name": name}


def _score_map(path, reference, meta, should_stop):
    """Scores of a class raster against a reference class raster (the model's schema)."""
    from ..data.rasters import open_raster
    from ..evaluate.metrics import class_scores
    from ..learn.csc import score_maps

    names = {int(c["value"]): c["name"] for c in meta["schema"]["classes"]}
    ref_ds, map_ds = open_raster(reference, "reference class raster"), open_raster(path)
    if (ref_ds.RasterXSize, ref_ds.RasterYSize) != (map_ds.RasterXSize, map_ds.RasterYSize):
        raise FjordError(f"The reference {os.path.basename(reference)} is not on the grid of "
                         f"{os.path.basename(path)}.")
    (confusion,) = score_maps(ref_ds, [map_ds], max(names), should_stop)
    return class_scores(confusion.matrix, names)


def run_row(item, progress=None, should_stop=None):
    """One job of the table (``item``: ``index``, ``row``, ``base``, ``settings``): classify each
    of its images, score them, extract its fronts; here or on a Dask worker.

    Never raises for a failing job (but for a cancel): returns ``index``, ``status`` ('ok' or
    'failed'), ``error``, ``entries`` (summary rows), ``seconds``, ``front`` (path and count)
    and ``loads`` (model loads, cache hits, seconds spent loading, engine import seconds)."""
    from ...models import modelfile

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    t0 = time.perf_counter()
    engine = _engine_import_seconds()
    before = dict(modelfile.load_stats)
    entries, front, error = [], None, ""
    try:
        front = _run_job(item["row"], item["base"], item["settings"], entries, progress,
                         should_stop)
        status = "ok"
    except Cancelled:
        raise
    except Exception as exc:  # a failing job is reported; the others go on
        status = "failed"
        error = str(exc) if isinstance(exc, FjordError) else f"{type(exc).__name__}: {exc}"
    finally:
        _clear_session()
    after = modelfile.load_stats
    return {"index": item["index"], "status": status, "error": error, "entries": entries,
            "front": front, "seconds": time.perf_counter() - t0, "peak_mb": peak_memory_mb(),
            "loads": {"loads": after["loads"] - before["loads"],
                      "hits": after["hits"] - before["hits"],
                      "load_seconds": after["seconds"] - before["seconds"],
                      "engine_seconds": engine}}


def _run_job(row, base, settings, entries, progress, should_stop):
    """Classify and score every image of the job (appending to ``entries``), then extract its
    fronts; returns the front summary (None without a front layer)."""
    import tempfile

    from ..outputs import remove_partials

    model, meta = _check_row(row, base)
    roles = front_roles(row, meta) if row.get("Front") else {}
    images = list_images(_resolve(row["DataSource"], base))
    folder = job_folder(row, base)
    os.makedirs(folder, exist_ok=True)
    validation = _resolve(row["Validation"], base) if row.get("Validation") else None
    front_path = _resolve(row["Front"], base) if row.get("Front") else None
    steps = len(images) + (1 if front_path else 0)
    maps = []
    with tempfile.TemporaryDirectory(prefix=".fjord-batch-", dir=folder) as work:
        for j, image in enumerate(images):
            names = output_names(row, image)
            output = os.path.join(folder, names["classes"])
            remove_partials(output)  # left by a worker killed in an earlier try
            reference = find_reference(image, validation)
            t1 = time.perf_counter()
            span = span_progress(progress, j / steps, (j + 1) / steps)
            try:
                subset = _band_subset(image, int(row["Dims"]), work)
                result = _classify_image(row, subset, model, meta, output, reference, names,
                                         folder, settings, span, should_stop)
            except RuntimeError as exc:  # GDAL's: the file cannot be read
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise FjordError(f"The image {image} cannot be read ({detail}); the file may be "
                                 "damaged or incomplete: replace it, or take it out of the "
                                 "DataSource.") from None
            entries.append(_scores_row(row, image, "ok", result, time.perf_counter() - t1,
                                       "" if reference else "no reference classes found"))
            maps.append(output)
    if not front_path:
        return None
    from ..glaciers.front import calving_fronts

    remove_partials(front_path)
    found = calving_fronts(maps, front_path, **roles, should_stop=should_stop,
                           progress=span_progress(progress, len(images) / steps, 1.0))
    return {"path": front_path, "fronts": found["fronts"],
            "missing": [s["image"] for s in found["scenes"] if not s["found"]]}


def _classify_image(row, image, model, meta, output, reference, names, folder, settings,
                    progress, should_stop):
    """One image of a job, by the job's method (CSC or U-Net), scored against ``reference``."""
    if row["Method"] == "unet":
        from ..learn.unet import classify_unet

        result = classify_unet(
            image, model, output, probabilities="none", device=settings["device"],
            ignore_scale_mismatch=settings["ignore_scale_mismatch"], progress=progress,
            should_stop=should_stop)
        if reference:
            result["scores"] = {"unet": _score_map(output, reference, meta, should_stop)}
        return result
    from ..learn.csc import classify_csc

    return classify_csc(
        image, model, output, patch_size=int(row["PatchSize"]), patience=int(row["Patience"]),
        samples_per_class=settings["samples_per_class"], max_epochs=settings["max_epochs"],
        smoothing=settings["smoothing"], recognition_threshold=settings["recognition_threshold"],
        boundary_margin=settings["boundary_margin"],
        validation=reference, output_phase_one=os.path.join(folder, names["phase_one"]),
        report=folder, report_name=names["report_name"], device=settings["device"],
        seed=settings["seed"], ignore_scale_mismatch=settings["ignore_scale_mismatch"],
        should_stop=should_stop, progress=progress)


def peak_memory_mb():
    """This process's peak resident memory in MB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return None


def _engine_import_seconds():
    """Seconds spent importing the deep-learning engine now: 0 once this process has it."""
    import sys

    if "keras" in sys.modules:
        return 0.0
    t0 = time.perf_counter()
    from ...models.engine import keras

    del keras  # loaded: that is the cost measured

    return time.perf_counter() - t0


def batch_csc(jobs, summary, *, fronts=None, scheduler="", samples_per_class=500_000,
              max_epochs=300, smoothing=4, recognition_threshold=0.0, boundary_margin=0,
              device="auto", seed=0,
              ignore_scale_mismatch=False, progress=None, should_stop=None):
    """Run every job of the table whose Done is 0, here or on a Dask cluster (``scheduler``:
    see :mod:`fjord.core.run.scheduler`); returns the summary rows and counts.

    Only this process writes the job table (after every finished job: Done, Status, Error),
    the summary and ``fronts`` (every job's fronts in one dated layer, done-earlier jobs
    included)."""
    from ..outputs import check_writable
    from .scheduler import open_pool

    progress = progress or no_progress
    should_stop = should_stop or never_stop
    fields, rows = read_jobs(jobs)
    for column in ("Status", "Error"):
        if column not in fields:
            fields.append(column)
    base = os.path.dirname(os.path.abspath(jobs))
    _check_writable_before_work(jobs, summary)
    if fronts:
        if not str(fronts).lower().endswith(".gpkg"):
            raise FjordError("Write the merged fronts as a GeoPackage (.gpkg).")
        check_writable(fronts, "front layer")
    settings = {"samples_per_class": int(samples_per_class), "max_epochs": int(max_epochs),
                "smoothing": int(smoothing), "recognition_threshold": float(recognition_threshold),
                "boundary_margin": int(boundary_margin),
                "device": device, "seed": int(seed),
                "ignore_scale_mismatch": bool(ignore_scale_mismatch)}
    todo = [i for i, r in enumerate(rows) if r["Done"] == "0"]
    entries = {i: _earlier_entries(r, base) for i, r in enumerate(rows) if r["Done"] == "1"}
    failed, ran, t_start, outcomes_seen = 0, 0, time.perf_counter(), []
    loads = {"loads": 0, "hits": 0, "load_seconds": 0.0, "engine_seconds": 0.0}
    pool = open_pool(scheduler, progress)
    progress(0.0, f"{len(rows)} jobs in the table, {len(todo)} to run, {pool.description}.")
    items = [{"index": i, "row": rows[i], "base": base, "settings": settings} for i in todo]
    with pool:
        if getattr(pool, "workers", None):
            progress(None, f"Dask cluster: {pool.workers()} worker(s).")
        outcomes = pool.run(run_row, items, progress, should_stop) if items else []
        for finished, (item, outcome, exc) in enumerate(outcomes, start=1):
            i, row = item["index"], rows[item["index"]]
            if exc is not None:
                outcome = {"index": i, "status": "failed", "entries": [], "front": None,
                           "seconds": 0.0, "worker": "",
                           "error": f"Dask could not run the job: {type(exc).__name__}: {exc}"}
            entries[i] = _record_outcome(row, outcome)
            ran, failed = ran + (outcome["status"] == "ok"), failed + (outcome["status"] != "ok")
            for key in loads:
                loads[key] += (outcome.get("loads") or {}).get(key, 0)
            outcomes_seen.append({k: outcome.get(k) for k in ("index", "status", "seconds",
                                                               "worker", "peak_mb", "loads")})
            write_jobs(jobs, fields, rows)
            progress(finished / len(items), _outcome_message(row, outcome, finished, len(items)))
    merged = _merge_fronts(fronts, rows, base) if fronts else None
    summary_rows = [e for i in sorted(entries) for e in entries[i]]
    _write_summary(summary, summary_rows)
    seconds = time.perf_counter() - t_start
    last = (f"{ran} jobs run, {failed} FAILED, {len(rows) - len(todo)} done earlier"
            f" ({seconds:.0f} s)." if failed else
            f"{ran} jobs run, none failed, {len(rows) - len(todo)} done earlier ({seconds:.0f} s).")
    progress(1.0, last)
    return {"summary": os.path.abspath(summary), "ran": ran, "failed": failed,
            "done_earlier": len(rows) - len(todo), "rows": summary_rows, "seconds": seconds,
            "fronts": merged, "loads": loads, "jobs": outcomes_seen}


def _check_writable_before_work(jobs, summary):
    """The job table (rewritten after every job) and the summary must be writable before any
    job runs, not found read-only at the end."""
    from ..outputs import check_writable

    check_writable(summary, "summary")
    folder = os.path.dirname(os.path.abspath(jobs))
    if not (os.access(jobs, os.W_OK) and os.access(folder, os.W_OK)):
        raise FjordError(f"The job table {jobs!r} cannot be rewritten (it or its folder is "
                         "read-only), and Fjord records every finished job in it. Make it "
                         "writable, or copy the table and its files to a writable folder.")


def _record_outcome(row, outcome):
    """Mark the job's row done or failed; returns its summary rows (a failed job gets one)."""
    entries = list(outcome["entries"])
    if outcome["status"] == "ok":
        row.update(Done="1", Status="ok", Error="")
    else:
        entries.append(_scores_row(row, row["DataSource"], "failed", message=outcome["error"]))
        row.update(Done="0", Status="failed", Error=outcome["error"])
    return entries


def _outcome_message(row, outcome, finished, total):
    where = f" on {outcome['worker']}" if outcome.get("worker") else ""
    scored = [e[k] for e in outcome["entries"] for k in ("CSC_weighted_F1", "UNet_weighted_F1")
              if e.get(k)]
    if outcome["status"] != "ok":
        detail = f"FAILED: {outcome['error']}"
    else:
        detail = ("ok" + (f", weighted F1 {', '.join(scored)}" if scored else "")
                  + (f", {outcome['front']['fronts']} front(s)" if outcome.get("front") else ""))
    return (f"Job {row['ExpShortHand']} ({finished}/{total}): {row['DataSource']}{where}, "
            f"{outcome['seconds']:.1f} s, {detail}")


def _earlier_entries(row, base):
    """Summary rows of a job done in an earlier run, with the scores its reports hold."""
    folder, out = job_folder(row, base), []
    for image in _safe_images(row, base):
        entry = _scores_row(row, image, "done earlier")
        entry.update(_earlier_scores(folder, output_names(row, image)["report_name"]) or {})
        out.append(entry)
    return out


def _merge_fronts(path, rows, base):
    """Every done job's front layer in one dated layer (``path``); returns the front count."""
    from osgeo import osr

    from ..glaciers.front import read_dated_fronts, write_dated_fronts

    target, features = None, []
    for row in rows:
        if row["Done"] != "1" or not row.get("Front"):
            continue
        layer = _resolve(row["Front"], base)
        if not os.path.isfile(layer):
            continue
        srs, found = read_dated_fronts(layer)
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if target is None and srs is not None:
            target = srs
        for geom, values in found:
            if srs is not None and target is not None and not srs.IsSame(target):
                geom.Transform(osr.CoordinateTransformation(srs, target))
            features.append((geom, dict(values, job=row["ExpShortHand"])))
    write_dated_fronts(path, features, target, text_fields=("job",))
    return len(features)


def _safe_images(row, base):
    try:
        return list_images(_resolve(row["DataSource"], base))
    except FjordError:
        return [row["DataSource"]]


def _clear_session():
    from ...models.engine import keras

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
