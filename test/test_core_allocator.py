"""The memory-allocation settings of a process that runs a network (models.allocator)."""

import json
import os
import subprocess
import sys

import pytest

# Loads Keras through fjord.models.engine, then takes three 12 MB arrays and frees them, 20
# times, counting the page faults that cost (each fault is a page the kernel zero-filled anew).
# With glibc's defaults the heap's top is given back after each round (36 MB freed exceeds the
# trim threshold that the first free set), so the pages are faulted in again every round.
CODE = """
import json, os, resource, sys
import numpy as np
from fjord.models.engine import keras
from fjord.models.allocator import tune_allocation
def round():
    arrays = [np.ones(3 << 20, np.float32) for _ in range(3)]
    del arrays
round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tune_allocation(), "faults": faults,
                  "bfc": os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")}))
"""


def run_child(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("TF_CPU_ALLOCATOR_USE_BFC",
                                                             "GLIBC_TUNABLES")}
    base["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env=dict(base, **env), timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_engine_import_tunes_allocation_and_keeps_user_settings():
    tuned = run_child()
    assert tuned["tuned"] == {"tensorflow": "bfc", "malloc": "tuned"}
    assert tuned["bfc"] == "true"  # set before TensorFlow was loaded
    # About 30,000 pages zero-filled again with glibc's defaults, none once the memory stays.
    assert tuned["faults"] < 1000
    system = run_child(TF_CPU_ALLOCATOR_USE_BFC="false", GLIBC_TUNABLES="")
    assert system["tuned"] == {"tensorflow": "as set (TF_CPU_ALLOCATOR_USE_BFC)",
                               "malloc": "as set (GLIBC_TUNABLES)"}
    assert system["bfc"] == "false"
    assert system["faults"] > 10_000
