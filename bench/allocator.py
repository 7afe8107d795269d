"""Benchmark: the memory-allocation settings of a process that runs a network (models.allocator).

    .venv/bin/python bench/allocator.py [--keep DIR] [--repeats 1]

On the bundled Landsat 7 Everest scene (stacked with NDVI and NDWI, the RGI outlines as labels,
as the demo does), four jobs each run as ``python -m fjord.core ...`` in a child process, as
the QGIS worker runs them:

- train a U-Net: 128 px windows every 32 px, the defaults, 2 epochs;
- classify the scene with that U-Net (blended windows);
- train the phase-one CNN: 32 px tiles, compact, 2 epochs;
- CSC K = 7 with that model (20,000 samples per class, 3 phase-two epochs at most).

Each job runs twice in turn: first with the system's allocators (the baseline:
``TF_CPU_ALLOCATOR_USE_BFC=false`` and an empty ``GLIBC_TUNABLES``, which Fjord leaves as set),
then with Fjord's settings (nothing set). The table gives each run's wall, user and system
seconds, minor page faults and peak resident memory (``wait4``), and the time and memory
ratios of Fjord's settings to the baseline.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import child_env, import_plugin

BASELINE = {"TF_CPU_ALLOCATOR_USE_BFC": "false", "GLIBC_TUNABLES": ""}


def run(cmd, env):
    """Run ``cmd``; (wall s, user s, system s, minor faults, peak MB) of that child alone."""
    # stderr goes to a file, not a pipe: a child that filled a pipe nobody reads until it
    # exits would wait forever.
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if status != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd)} failed:\n{tail}")
    return wall, usage.ru_utime, usage.ru_stime, usage.ru_minflt, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each job and setting")
    args = parser.parse_args()
    plugins = import_plugin()
    from everest_glacier import DATA, prepare

    from fjord.core.prepare.tiles import build_dataset

    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="fjord-alloc-")
    os.makedirs(work, exist_ok=True)
    paths, _, _ = prepare(DATA, work)
    windows, tiles = os.path.join(work, "windows"), os.path.join(work, "tiles")
    if not os.path.isfile(os.path.join(windows, "dataset.json")):
        build_dataset(paths["image"], paths["train_labels"], windows, mode="segmentation",
                      tile_size=128, stride=32, split="spatial")
    if not os.path.isfile(os.path.join(tiles, "dataset.json")):
        build_dataset(paths["image"], paths["train_labels"], tiles, mode="tiles", tile_size=32,
                      stride=8, augment="rotations+flips", split="spatial", max_per_class=2000)
    core = [sys.executable, "-m", "fjord.core"]
    unet, phase_one = os.path.join(work, "unet.keras"), os.path.join(work, "phase1.keras")
    jobs = [
        ("train a U-Net (2 epochs)", core + ["trainunet", windows, unet, "--epochs", "2"]),
        ("classify with the U-Net", core + ["unet", paths["image"], unet,
                                            os.path.join(work, "unet.tif")]),
        ("train phase one (2 epochs)", core + ["train", tiles, phase_one, "--architecture",
                                               "compact", "--epochs", "2"]),
        ("CSC K = 7", core + ["csc", paths["image"], phase_one, os.path.join(work, "csc.tif"),
                              "--samples-per-class", "20000", "--max-epochs", "3"]),
    ]
    env = child_env(plugins)
    for name in BASELINE:
        env.pop(name, None)
    rows = []
    for title, cmd in jobs:
        runs = {}
        for _ in range(args.repeats):
            for setting, extra in (("system", BASELINE), ("Fjord", {})):
                result = run(cmd, dict(env, **extra))
                print(f"{title}, {setting}: {result[0]:.1f} s", flush=True)
                runs.setdefault(setting, []).append(result)
        best = {k: min(v) for k, v in runs.items()}  # the fastest run of each setting
        for setting in ("system", "Fjord"):
            wall, user, system, faults, peak = best[setting]
            ratio = best["system"][0] / wall
            memory = peak / best["system"][4]
            rows.append(f"| {title} | {setting} | {wall:.1f} | {user:.1f} | {system:.1f} | "
                        f"{faults / 1e6:.2f} | {peak:,.0f} | {ratio:.2f}x | {memory:.2f} |")
    print("\n| job | allocators | wall s | user s | system s | minor faults (M) | peak MB | "
          "speed vs system | memory vs system |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
