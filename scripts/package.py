"""Build the installable plugin ZIP: ``dist/fjord-<version>.zip`` holding the folder ``fjord/``.

    make package        (or: python3 scripts/package.py [OUTPUT_FOLDER])

Takes the files git tracks (so nothing generated or local slips in), without the tests,
benchmarks, CI and development scripts; the ZIP installs through Plugins → Manage and Install
Plugins → Install from ZIP. The version is metadata.txt's. Written under a temporary name and
renamed when complete.
"""

import configparser
import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Left out of the plugin: development only.
EXCLUDED_DIRS = ("test/", "bench/", ".ci/", "scripts/", "docs/")
EXCLUDED_FILES = (".gitignore", "Makefile", "pytest.ini", "pyproject.toml", "requirements-dev.txt")


def plugin_files(repo=REPO):
    """The tracked files that go into the plugin, relative to the repository."""
    listed = subprocess.run(["git", "-C", repo, "ls-files", "-z"], capture_output=True, check=True)
    files = [f for f in listed.stdout.decode().split("\0") if f]
    return sorted(f for f in files if not f.startswith(EXCLUDED_DIRS) and f not in EXCLUDED_FILES
                  and os.path.isfile(os.path.join(repo, f)))


def version(repo=REPO):
    meta = configparser.ConfigParser()
    meta.read(os.path.join(repo, "metadata.txt"), encoding="utf-8")
    return meta["general"]["version"]


def build(out_dir, repo=REPO):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"fjord-{version(repo)}.zip")
    tmp = path + ".partial"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for rel in plugin_files(repo):
                archive.write(os.path.join(repo, rel), f"fjord/{rel}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


if __name__ == "__main__":
    out = build(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "dist"))
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    print(f"{out}: {len(names)} files, {os.path.getsize(out) / 1e6:.1f} MB")
