"""What the benchmark scripts share: importing the checkout as ``fjord``, child processes that
report their own peak memory."""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_plugin():
    """Make this checkout importable as the package ``fjord`` (a symlink in a temporary folder,
    whatever the checkout's folder is called); returns that folder for children's PYTHONPATH."""
    plugins = tempfile.mkdtemp(prefix="fjord-bench-")
    os.symlink(REPO, os.path.join(plugins, "fjord"))
    sys.path.insert(0, plugins)
    return plugins


def child_env(plugins):
    """The environment of a benchmark child: GDAL's cache bounded as in the QGIS worker."""
    return dict(os.environ, PYTHONPATH=plugins, GDAL_CACHEMAX="256", TF_CPP_MIN_LOG_LEVEL="3")


def peak_rss_mb():
    """This process's peak resident memory since its exec (VmHWM; ru_maxrss would include the
    parent's memory at fork time)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def run_child(script, env, *args):
    """Run ``script --child ARGS`` and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, script, "--child", *map(str, args)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
