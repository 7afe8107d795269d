"""Writing outputs safely: to a partial name first, renamed into place only when complete.

A failed or cancelled job leaves no half-written output: partial files carry the name
``.<stem>.partial<ext>`` beside the final file, so whoever ran the job (the worker launcher
after killing a child, for one) can find and remove them with :func:`remove_partials`.
"""

import glob
import os
import shutil

from .errors import FjordError


def partial_path(path):
    """The partial name under which ``path`` is written before it is renamed into place."""
    folder, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(folder, f".{stem}.partial{ext}")


def remove_partials(path):
    """Remove the partial files of ``path`` (and of its sidecars) left by an interrupted job.

    For a folder (a dataset, say), every partial file below it.
    """
    if os.path.isdir(path):
        for leftover in glob.glob(os.path.join(glob.escape(path), "**", ".*.partial*"), recursive=True):
            try:
                os.remove(leftover)
            except OSError:
                pass
        return
    folder, base = os.path.split(os.path.abspath(path))
    stem = os.path.splitext(base)[0]
    for leftover in glob.glob(os.path.join(glob.escape(folder), glob.escape(f".{stem}.partial") + "*")):
        try:
            if os.path.isdir(leftover):  # a job's scratch folder (see work_dir)
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.remove(leftover)
        except OSError:
            pass


def work_dir(path):
    """A fresh scratch folder beside ``path`` for a job's intermediate files, named so that
    :func:`remove_partials` of ``path`` removes it too (after a killed job, say)."""
    folder = partial_path(path) + "-work"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def same_file(a, b):
    """Whether two paths name the same file (also through links or different spellings)."""
    if not a or not b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def check_writable(path, what="output", inputs=()):
    """Make the folder of ``path`` if needed and fail clearly when it cannot be written or when
    it is one of the ``inputs`` (``(path, name)`` pairs), which are never overwritten."""
    for source, name in inputs:
        if same_file(path, source):
            raise FjordError(f"The {what} {path!r} is also the {name}: an input is never "
                             f"overwritten. Choose another path for the {what}.")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise FjordError(f"Cannot create the folder {folder!r} for the {what}: {exc.strerror}. "
                         "Choose another output path.") from None
    if not os.access(folder, os.W_OK):
        raise FjordError(f"The folder {folder!r} of the {what} is not writable. "
                         "Choose another output path.")
    if os.path.isdir(path):
        raise FjordError(f"The {what} {path!r} is a folder; give a file name.")


#: The figure formats Fjord writes (matplotlib picks the format from the extension).
FIGURE_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_figure(path, what="figure"):
    """:func:`check_writable`, and the name must end in an image format of
    :data:`FIGURE_FORMATS`."""
    extension = os.path.splitext(str(path))[1].lower()
    if extension not in FIGURE_FORMATS:
        raise FjordError(f"The {what} {str(path)!r} must be an image: end its name in "
                         f"{', '.join(FIGURE_FORMATS[:-2])} or .jpg, not "
                         f"{extension or 'no extension'}.")
    check_writable(path, what)


class AtomicOutputs:
    """Context manager: hand out partial names, rename them all into place on success.

    >>> with AtomicOutputs() as out:
    ...     tmp = out.add("result.tif")      # write to tmp
    On an exception every partial file is removed and the final files are untouched.
    """

    def __init__(self):
        self._pairs = []

    def add(self, path):
        tmp = partial_path(path)
        if os.path.exists(tmp):
            os.remove(tmp)
        self._pairs.append((tmp, os.path.abspath(path)))
        return tmp

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for tmp, final in self._pairs:
                if os.path.exists(tmp):
                    os.replace(tmp, final)
                # GDAL keeps what a format cannot hold (category names...) in a .aux.xml sidecar.
                if os.path.exists(tmp + ".aux.xml"):
                    os.replace(tmp + ".aux.xml", final + ".aux.xml")
                elif os.path.exists(final + ".aux.xml"):
                    os.remove(final + ".aux.xml")
        else:
            for _, final in self._pairs:
                remove_partials(final)
        return False


# --- a full disk ----------------------------------------------------------------------------

#: The size each raster output being written will take uncompressed (bytes), by path, so that
#: a job that fails on a full disk can say what it needed (see :func:`disk_full_message`).
expected_sizes = {}


def expect_size(path, nbytes, detail=""):
    """Record that ``path`` will take about ``nbytes`` (uncompressed; ``detail`` says why), and
    the space free for it now, before it is written."""
    expected_sizes[os.path.abspath(path)] = (int(nbytes), detail, _free_bytes(path))


def _final_name(path):
    """The output a partial name (:func:`partial_path`) stands for."""
    folder, base = os.path.split(path)
    if base.startswith(".") and ".partial" in base:
        stem, _, ext = base[1:].partition(".partial")
        return os.path.join(folder, stem + ext)
    return path


def _megabytes(nbytes):
    return f"{nbytes / 2**20:,.1f} MB"


def _no_space(exc):
    """Whether the error (or one it came from) is the system's 'No space left on device', or
    numpy's short write ('4194304 requested and 65504 written')."""
    import errno
    import re

    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc) or re.search(r"\d+ requested and \d+ written",
                                                              str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_message(exc, outputs=()):
    """The message for a job that failed with ``exc`` because a disk is full, else None.

    A disk is full when the system says so, or when the error is a write error and an output
    being written (see :func:`expect_size`) needs more than is free in its folder: GDAL's own
    write errors ("TIFFAppendToStrip: write error") do not say why. The message names the
    output, the space it needs and the space free there."""
    no_space = _no_space(exc)
    if not no_space and "write" not in str(exc).lower():
        return None
    short = [(path, need, detail, free) for path, (need, detail, free) in expected_sizes.items()
             if free is not None and free < need]
    if short:
        path, need, detail, free = short[-1]
        return (f"The disk is full: {_final_name(path)} needs about {_megabytes(need)} "
                f"({detail}, before compression) and {_megabytes(free)} was free in "
                f"{os.path.dirname(path)} when it was started. Free some space or write it to "
                "another disk; nothing was left behind.")
    if not no_space:
        return None
    folders = sorted({os.path.dirname(os.path.abspath(p)) for p in outputs}) or [os.getcwd()]
    free = ", ".join(f"{_megabytes(_free_bytes(f) or 0)} in {f}" for f in folders)
    names = ", ".join(str(p) for p in outputs) or "the outputs"
    return (f"The disk is full (no space left on device) while writing {names}: free now "
            f"{free}. Free some space or write to another disk; nothing was left behind.")


def _free_bytes(path):
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None
