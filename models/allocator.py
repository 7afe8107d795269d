"""How a process that runs a network allocates memory.

Training and classifying allocate and free the same large arrays (activations, gradients,
windows) at every step. With the defaults of glibc's malloc and of TensorFlow's CPU allocator,
an array of more than a few megabytes is a fresh ``mmap``, given back with ``munmap`` when it
is freed, so the kernel zero-fills its pages again at the next step: one epoch of the Everest
U-Net took 9.8 million page faults, and a third of the process's CPU time was the kernel's
(``bench/allocator.py`` measures it). Two settings keep that memory in the process:

- ``TF_CPU_ALLOCATOR_USE_BFC=true``: TensorFlow's best-fit-with-coalescing pool (the allocator
  it uses on GPUs) serves CPU tensors, so its buffers are reused, not returned;
- glibc's malloc (Linux): blocks up to 32 MB come from the heap instead of ``mmap``, the heap
  grows 256 MB at a time, and freed memory stays with the process up to 2 GB.

Only the processes that run a network take them (``tune_allocation`` runs before the engine is
imported): the worker started from QGIS, a Dask worker, a script. A value the user set is kept:
``TF_CPU_ALLOCATOR_USE_BFC`` in the environment, or any ``GLIBC_TUNABLES`` (glibc's own way to
set these) leaves malloc as it is.
"""

import ctypes
import os
import platform
import sys

# mallopt parameters (malloc.h) and the values set.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOC = {M_MMAP_THRESHOLD: 32 << 20, M_TOP_PAD: 256 << 20, M_TRIM_THRESHOLD: 2**31 - 1}

_tuned = {}


def tune_allocation():
    """Apply the settings above to this process (once); returns what was applied, e.g.
    ``{"tensorflow": "bfc", "malloc": "tuned"}``, a setting the user made staying as it is."""
    if _tuned:
        return dict(_tuned)
    if "TF_CPU_ALLOCATOR_USE_BFC" in os.environ:
        _tuned["tensorflow"] = "as set (TF_CPU_ALLOCATOR_USE_BFC)"
    elif "tensorflow" in sys.modules:
        _tuned["tensorflow"] = "default (TensorFlow already loaded)"
    else:
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
        _tuned["tensorflow"] = "bfc"
    _tuned["malloc"] = "default"
    if "GLIBC_TUNABLES" in os.environ:
        _tuned["malloc"] = "as set (GLIBC_TUNABLES)"
    elif sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            if all(mallopt(param, value) == 1 for param, value in MALLOC.items()):
                _tuned["malloc"] = "tuned"
        except (OSError, AttributeError):
            pass
    return dict(_tuned)
