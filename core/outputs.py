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
