"""Benchmark: Fjord's classifyunet against Deepness's tile walk, same ONNX U-Net, same scene.

    .venv/bin/python bench/deepness_tiling.py [--size 10980] [--work DIR]

Needs the peer's code in ../shared/peers/deepness/src (run unchanged) and OpenCV, which it
imports (requirements-dev.txt).

One U-Net (Fjord's layout, depth 4, 8 base filters, 4 bands, 5 classes; random weights: speed
does not depend on them) is exported with ``fjord:exportmodel`` to an ONNX file with Deepness's
metadata, and that ONNX file is what both sides run, on ONNX Runtime:

- Deepness: its ``MapProcessorSegmentation`` driven as its tests drive it (a QgsRasterLayer of
  the scene, the peer's ``Segmentor`` on the ONNX file, ``SegmentationParameters`` for the
  entire layer at the scene's resolution, tiles of 256 px overlapping by 25 %, batches of 16,
  no post-processing), in a child process with a headless QGIS; its last step, turning the
  class map into polygon layers, is left out (Fjord writes the class raster only);
- Fjord: the same ONNX file imported with ``fjord:importmodel`` and ``classify_unet`` (windows
  of 256 px overlapping by 64 px, cosine blend; the class band), in a child process.

The scene: ``--size`` x ``--size`` x 4 bytes (a 1,098 px 8-bit scene of the synthetic fjord
repeated through a VRT mosaic; a Sentinel-2 tile by default). Printed per side: seconds, peak
resident memory of the child, and the seam step of its class map: along every column (and
row) boundary, the share of neighbouring pixels whose class differs; the boundaries are grouped
by their position modulo the tile stride (192 px), and the step is the largest group's share
over the median group's. A map without seams has a step near 1; hard stitching at tile edges
shows as a larger step at the stitch positions. Also the share of pixels where the two maps
agree.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from common import REPO, child_env, import_plugin, peak_rss_mb, run_child

DEEPNESS = os.path.join(os.path.dirname(REPO), "shared", "peers", "deepness", "src")
TILE, OVERLAP_PERCENT, BATCH = 256, 25, 16
STRIDE = TILE - int(TILE * OVERLAP_PERCENT / 100 * 2) // 2


def make_scene(folder, size):
    """An 8-bit 4-band scene of ``size`` px: the synthetic fjord (1,098 px) in a VRT mosaic."""
    import numpy as np
    from osgeo import gdal

    from fjord.core.prepare.synthetic import write_synthetic_scene

    base = os.path.join(folder, "base.tif")
    if not os.path.exists(base):
        scene = write_synthetic_scene(os.path.join(folder, "fjord"), shape=(1098, 1098), seed=2)
        src = gdal.Open(scene["image"])
        data = src.ReadAsArray().astype(np.float32)
        top = np.percentile(data, 99.5)
        out = gdal.GetDriverByName("GTiff").Create(base, 1098, 1098, 4, gdal.GDT_Byte,
                                                   options=["TILED=YES"])
        out.SetGeoTransform(src.GetGeoTransform())
        out.SetProjection(src.GetProjection())
        for b in range(4):
            out.GetRasterBand(b + 1).WriteArray(np.clip(data[b] / top * 255, 0, 255)
                                                .astype(np.uint8))
        out = src = None
    path = os.path.join(folder, f"scene_{size}.vrt")
    if not os.path.exists(path):
        gt = gdal.Open(base).GetGeoTransform()
        n = -(-size // 1098)
        pieces = []
        for i in range(n):
            for j in range(n):
                piece = os.path.join(folder, f"piece_{i}_{j}.vrt")
                gdal.Translate(piece, base, format="VRT", outputBounds=[
                    gt[0] + j * 1098 * gt[1], gt[3] + i * 1098 * gt[5],
                    gt[0] + (j + 1) * 1098 * gt[1], gt[3] + (i + 1) * 1098 * gt[5]])
                pieces.append(piece)
        mosaic = os.path.join(folder, "mosaic.vrt")
        gdal.BuildVRT(mosaic, pieces).FlushCache()
        gdal.Translate(path, mosaic, format="VRT", srcWin=[0, 0, size, size]).FlushCache()
    return path


def make_models(folder):
    """The Fjord U-Net as a model file, its ONNX export, and that ONNX file imported."""
    from fjord.core.data import schema as schemas
    from fjord.core.learn.exported import export_model
    from fjord.core.learn.imported import import_model
    from fjord.models.modelfile import save_model
    from fjord.models.unet import build_unet

    keras_file = os.path.join(folder, "unet.keras")
    onnx_file = os.path.join(folder, "unet.onnx")
    imported = os.path.join(folder, "unet_onnx.keras")
    if not os.path.exists(imported):
        schema = schemas.preset_schema("glacier_debris")
        values = [c["value"] for c in schema["classes"]]
        model = build_unet(4, len(values), depth=4, filters=8)
        save_model(model, keras_file, {
            "task": "segmentation", "architecture": "unet", "bands": 4,
            "band_names": ["R", "G", "B", "NIR"], "tile_size": TILE,
            "scaling": {"rule": "divide", "divisor": 255.0},
            "statistics": {"mean": [0.4] * 4, "std": [0.25] * 4}, "schema": schema,
            "outputs": values, "downsampling": 16})
        export_model(keras_file, onnx_file)
        import_model(onnx_file, imported, bands="R,G,B,NIR")
    return onnx_file, imported


def fjord_child(scene, model, output):
    from fjord.core.learn.unet import classify_unet

    t0 = time.perf_counter()
    classify_unet(scene, model, output, window=TILE, overlap=TILE - STRIDE, blend="cosine",
                  probabilities="none")
    return {"seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb()}


def deepness_child(scene, onnx_file, output):
    """Deepness's map processor on the scene, as its tests drive it; the class map saved."""
    import numpy as np
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, DEEPNESS)
    from deepness.common.channels_mapping import ChannelsMapping, ImageChannelStandaloneBand
    from deepness.common.processing_overlap import ProcessingOverlap, ProcessingOverlapOptions
    from deepness.common.processing_parameters.map_processing_parameters import ProcessedAreaType
    from deepness.common.processing_parameters.segmentation_parameters import (
        SegmentationParameters,
    )
    from deepness.processing.map_processor.map_processor_segmentation import (
        MapProcessorSegmentation,
    )
    from deepness.processing.models.segmentor import Segmentor

    rlayer = QgsRasterLayer(scene, "scene")
    QgsProject.instance().addMapLayer(rlayer)
    model = Segmentor(onnx_file)
    mapping = ChannelsMapping()
    mapping.set_image_channels([ImageChannelStandaloneBand(b + 1, f"band {b + 1}")
                                for b in range(4)])
    mapping.set_number_of_model_inputs(4)
    mapping.set_number_of_model_output_channels(model.get_number_of_output_channels()[0])
    params = SegmentationParameters(
        resolution_cm_per_px=rlayer.rasterUnitsPerPixelX() * 100, tile_size_px=TILE,
        batch_size=BATCH, local_cache=False, processed_area_type=ProcessedAreaType.ENTIRE_LAYER,
        mask_layer_id=None, input_layer_id=rlayer.id(), input_channels_mapping=mapping,
        postprocessing_dilate_erode_size=0, model=model,
        pixel_classification__probability_threshold=0.0,
        processing_overlap=ProcessingOverlap(ProcessingOverlapOptions.OVERLAP_IN_PERCENT,
                                             percentage=OVERLAP_PERCENT))
    # Deepness then turns the class map into polygon layers (cv2.findContours and a QGIS
    # feature per contour), which Fjord does not do: left out of its time (on a 10980 px map
    # of an untrained network's classes it ran for over 20 minutes).
    MapProcessorSegmentation._create_vlayer_from_mask_for_base_extent = \
        lambda self, mask_img: (lambda: None)
    t0 = time.perf_counter()
    processor = MapProcessorSegmentation(rlayer=rlayer, vlayer_mask=None, map_canvas=None,
                                         params=params)
    processor.run()
    seconds = time.perf_counter() - t0
    result = processor.get_result_img()
    np.save(output, np.asarray(result[0]))
    return {"seconds": seconds, "peak_mb": peak_rss_mb()}


def seam_step(classes, period=STRIDE, scene=1098):
    """The largest share of class changes between neighbouring pixels at one position modulo
    ``period`` over the median share, along columns and rows together. The boundaries of the
    mosaic's pieces (every ``scene`` px, where the scene itself jumps) are left out."""
    import numpy as np

    shares = np.zeros(period)
    counts = np.zeros(period)
    for axis in (0, 1):
        diff = np.diff(classes, axis=axis) != 0
        per_line = diff.mean(axis=1 - axis)  # share of changes across each boundary
        lines = np.arange(len(per_line))
        keep = np.abs((lines + 1) % scene - 0.5) > 3  # not within 3 px of a piece boundary
        keep &= np.abs((lines + 1) % scene - scene) > 3
        per_line, positions = per_line[keep], lines[keep] % period
        np.add.at(shares, positions, per_line)
        np.add.at(counts, positions, 1)
    shares /= np.maximum(counts, 1)
    return float(shares.max() / max(np.median(shares), 1e-12)), int(shares.argmax())


def read_fjord(path):
    from osgeo import gdal

    ds = gdal.Open(path)
    return ds.GetRasterBand(1).ReadAsArray()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--work", default=None)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    plugins = import_plugin()
    if args.child:
        side, *rest = args.child
        result = fjord_child(*rest) if side == "fjord" else deepness_child(*rest)
        print(json.dumps(result))
        return 0
    if not os.path.isdir(os.path.join(DEEPNESS, "deepness")):
        raise SystemExit(f"The peer's code is not at {DEEPNESS}.")
    import numpy as np

    work = args.work or tempfile.mkdtemp(prefix="fjord-deepness-")
    os.makedirs(work, exist_ok=True)
    scene = make_scene(work, args.size)
    onnx_file, imported = make_models(work)
    env = child_env(plugins)
    deepness = run_child(__file__, env, "deepness", scene, onnx_file,
                         os.path.join(work, "deepness.npy"))
    fjord = run_child(__file__, env, "fjord", scene, imported, os.path.join(work, "fjord.tif"))
    from fjord.models.modelfile import read_metadata

    fjord_map = read_fjord(os.path.join(work, "fjord.tif"))  # class values: output index + 1
    lookup = np.zeros(max(int(fjord_map.max()), 255) + 1, np.int64)
    values = read_metadata(imported)["outputs"]
    lookup[values] = np.arange(len(values))
    maps = {"Deepness": np.load(os.path.join(work, "deepness.npy")).astype(np.int64) - 1,
            "Fjord": lookup[fjord_map]}  # both: the output index
    agree = float((maps["Fjord"] == maps["Deepness"]).mean())
    print(f"Scene {args.size} x {args.size} x 4 (uint8), ONNX U-Net (depth 4, 8 filters), tiles "
          f"{TILE} px, stride {STRIDE} px, ONNX Runtime on {os.cpu_count()} cores")
    print(f"{'side':10s} {'seconds':>9s} {'peak RSS MB':>12s} {'seam step':>10s} {'at':>5s}")
    for side, result in (("Deepness", deepness), ("Fjord", fjord)):
        step, where = seam_step(maps[side])
        print(f"{side:10s} {result['seconds']:9.1f} {result['peak_mb']:12.0f} {step:10.2f} "
              f"{where:5d}")
    print(f"Fjord / Deepness time {fjord['seconds'] / deepness['seconds']:.2f}, peak RSS "
          f"{fjord['peak_mb'] / deepness['peak_mb']:.2f}; the maps agree on {agree:.1%} of the "
          "pixels")


if __name__ == "__main__":
    sys.exit(main())
