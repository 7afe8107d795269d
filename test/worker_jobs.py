"""Jobs for the worker tests: they run in the child process, imported by module name."""

import ctypes
import os
import signal
import sys
import time

from fjord.core.errors import FjordError
from fjord.core.outputs import partial_path


def steps(n, delay=0.0, progress=None, should_stop=None):
    for i in range(n):
        progress((i + 1) / n, f"step {i + 1} of {n}")
        print("noise a library printed on stdout")  # must not break the protocol
        time.sleep(delay)
    return {"steps": n, "pid": os.getpid()}


def bad_input(progress=None, should_stop=None):
    raise FjordError("The image has 3 bands but the model needs 4: stack the NIR band first.")


def bug(progress=None, should_stop=None):
    print("about to divide", file=sys.stderr)
    return 1 / 0


def killed(progress=None, should_stop=None):
    print("allocating a very large tensor", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(progress=None, should_stop=None):
    print("calling into native code", file=sys.stderr, flush=True)
    ctypes.string_at(0)


def stubborn_writer(path, progress=None, should_stop=None):
    """Writes a partial output, then ignores stop requests (like a long native call)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(partial_path(path), "w") as f:
        f.write("half")
    progress(0.1, "writing")
    while True:
        time.sleep(0.05)


def fill_disk(path, progress=None, should_stop=None):
    """Write a 1000 x 1000 Float32 GeoTIFF of noise (4 MB, hardly compressible) to ``path``."""
    import numpy as np
    from osgeo import gdal

    from fjord.core.data.rasters import create_gtiff
    from fjord.core.outputs import AtomicOutputs

    gdal.UseExceptions()
    with AtomicOutputs() as out:
        ds = create_gtiff(out.add(path), 1000, 1000, 1, gdal.GDT_Float32)
        ds.GetRasterBand(1).WriteArray(np.random.default_rng(0).random((1000, 1000), np.float32))
        ds.FlushCache()  # GDAL reports write errors here; on closing they are only printed
        ds = None
    return {"written": path}


def fill_disk_with_numpy(path, progress=None, should_stop=None):
    """Save 4 MB of numbers to ``path`` (no raster: the system's own 'No space left')."""
    import numpy as np

    from fjord.core.outputs import AtomicOutputs

    with AtomicOutputs() as out:
        np.save(out.add(path), np.zeros(2**20, np.float32))
    return {"written": path}
