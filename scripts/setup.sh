#!/usr/bin/env bash
# Set up everything Fjord needs on a fresh Debian 12 / Ubuntu machine, idempotently:
# the Debian packages (QGIS, GDAL, venv), then .venv with the pinned Python requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

# xvfb: a virtual display for the desktop screenshots (scripts/screenshots.py) and their test.
PACKAGES="qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv python3-pip xvfb"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== Installing Debian packages:$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "Need root to install:$missing (run: apt-get install -y$missing)" >&2; exit 1; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# The venv sees QGIS and GDAL from the system; it holds TensorFlow, Keras and friends.
stamp=.venv/.fjord-requirements
want="$(cat requirements.txt requirements-dev.txt requirements-data.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
  echo "== Creating .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== Installing the Python requirements into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-data.txt
  echo "$want" > "$stamp"
fi
if ! check=$(TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -c "import qgis.core, osgeo.gdal_array, keras, skimage, sklearn" 2>&1); then
  echo "$check" >&2
  echo "The environment does not import; see the messages above." >&2
  exit 1
fi
