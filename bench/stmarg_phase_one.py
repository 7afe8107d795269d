"""Phase-one tile accuracy on real river photos: St-Marguerite (../shared/data/stmarg).

    .venv/bin/python bench/stmarg_phase_one.py [--architecture compact] [--epochs 30]

Ten RGB photographs (3008 x 1960) with hand-made class rasters (1 water, 2 sediment,
3 vegetation; Carbonneau et al. 2020). The first seven (by number) make the training dataset
(50 px tiles, stride 50, the published purity and unlabelled rules, at most MAX_PER_CLASS tiles
per class and image, 20 % validation), the last three are held out: every tile of theirs that
passes the same rules is classified by the trained model. Prints the validation and held-out
tile accuracy and the held-out per-class precision, recall, F1 and support.
"""

import argparse
import glob
import json
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(REPO))
PKG = os.path.basename(REPO)
DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "stmarg")
SCHEMA = {"name": "river", "classes": [
    {"value": 1, "name": "water", "color": "#1f78b4"},
    {"value": 2, "name": "sediment", "color": "#e6c88c"},
    {"value": 3, "name": "vegetation", "color": "#33a02c"}]}


def _import(name):
    import importlib

    return importlib.import_module(f"{PKG}.{name}")


def pairs(folder):
    out = []
    for image in glob.glob(os.path.join(folder, "StMarg_*.jpg")):
        number = re.search(r"StMarg_(\d+)", image).group(1)
        labels = os.path.join(folder, f"SCLS_StMarg{number}.tif")
        if os.path.isfile(labels):
            out.append((int(number), image, labels))
    return sorted(out)


def byte_labels(source, path):
    """A Byte copy of a Float64 class raster, carrying the river class schema."""
    import numpy as np
    from osgeo import gdal

    schema = _import("core.data.schema")
    src = gdal.Open(source)
    values = src.GetRasterBand(1).ReadAsArray()
    values = np.where(np.isfinite(values), values, 0).round().astype(np.uint8)
    ds = gdal.GetDriverByName("GTiff").Create(path, src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(values)
    ds.SetMetadataItem(schema.METADATA_KEY, json.dumps(SCHEMA))
    ds = src = None
    return path


def say(fraction, message=None):
    if message:
        print(message, flush=True)


def train_model(work, architecture="compact", epochs=30, learning_rate=None, max_per_class=600,
                data=DATA):
    """Tile datasets of the seven training photos (and of the three held out) and the trained
    phase-one model in ``work`` (reused when already there). Returns (model path, training
    result or None, seconds, held-out dataset folder)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    found = pairs(data)
    if len(found) < 10:
        sys.exit(f"Need the ten St-Marguerite photos in {data}")
    train_set, held_out = found[:7], found[7:]
    tiles = _import("core.prepare.tiles")
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    train_dir, held_dir = os.path.join(work, "train"), os.path.join(work, "heldout")
    for folder, group, options in ((train_dir, train_set, dict(max_per_class=max_per_class,
                                                                 validation_fraction=0.2)),
                                   (held_dir, held_out, dict(max_per_class=0, validation_fraction=0.0))):
        if os.path.isfile(os.path.join(folder, "dataset.json")):
            continue
        for i, (number, image, labels) in enumerate(group):
            lab = byte_labels(labels, os.path.join(work, f"labels_{number}.tif"))
            tiles.build_dataset(image, lab, folder, mode="tiles", tile_size=50, stride=50,
                                append=i > 0, seed=number, **options)
    meta = tiles.read_dataset(train_dir)
    held = tiles.read_dataset(held_dir)
    print(f"training images {[n for n, _, _ in train_set]}, held out {[n for n, _, _ in held_out]}")
    print(f"tiles: train {meta['counts']['train']}, validation {meta['counts']['validation']}, "
          f"held out {held['counts']['train']} ({time.perf_counter() - t0:.0f} s)")
    model_path = os.path.join(work, f"stmarg_{architecture}.keras")
    if os.path.isfile(model_path):
        return model_path, None, 0.0, held_dir
    train = _import("core.learn.phase_one")
    lr = learning_rate or (1e-3 if architecture == "compact" else 1e-4)
    t1 = time.perf_counter()
    result = train.train_phase_one(train_dir, model_path, architecture=architecture,
                                   epochs=epochs, batch_size=50, learning_rate=lr,
                                   target_accuracy=0.985, patience=8, augment="rotations+flips",
                                   seed=0, progress=say)
    return model_path, result, time.perf_counter() - t1, held_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="compact", choices=("compact", "vgg16"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--max-per-class", type=int, default=600, help="per class and training image")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--keep", help="folder to keep the datasets and model in")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="fjord-stmarg-")
    model_path, result, seconds, held_dir = train_model(
        work, args.architecture, args.epochs, args.learning_rate, args.max_per_class, args.data)

    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    model, model_meta = _import("models.modelfile").load_model(model_path, task="tiles")
    data = _import("core.learn.sequence").TileDataset(held_dir, "train", batch_size=256, shuffle=False)
    truth, predicted = [], []
    for i in range(len(data)):
        x, y = data[i]
        truth.append(y.argmax(1))
        predicted.append(np.asarray(model(x, training=False)).argmax(1))
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=[0, 1, 2], zero_division=0)
    names = [c["name"] for c in model_meta["schema"]["classes"]]
    if result:  # else the model in --keep was reused
        print(f"\n{args.architecture}: {result['epochs_run']} epochs ({result['stopped']}), "
              f"{seconds / 60:.1f} min on {os.cpu_count()} CPU cores")
        print(f"validation tile accuracy (training images): {result['accuracy']:.4f}")
    print(f"held-out tile accuracy (3 unseen images):  {(truth == predicted).mean():.4f}")
    print(f"\n{'class':12s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'support':>8s}")
    for name, a, b, c, d in zip(names, p, r, f, s):
        print(f"{name:12s} {a:9.3f} {b:7.3f} {c:7.3f} {d:8d}")
    _, _, macro, _ = precision_recall_fscore_support(truth, predicted, average="macro", zero_division=0)
    _, _, weighted, _ = precision_recall_fscore_support(truth, predicted, average="weighted", zero_division=0)
    print(f"{'macro F1':12s} {macro:25.3f}\n{'weighted F1':12s} {weighted:25.3f}")


if __name__ == "__main__":
    main()
