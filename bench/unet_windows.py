"""Benchmark: U-Net classification over blended windows — seams, memory and throughput.

    .venv/bin/python bench/unet_windows.py [--size 1024] [--big 10980] [--epochs 6] [--work DIR]

One U-Net (depth 4, 8 base filters) is trained once on a synthetic 14-band scene and the same
weights serve every measurement:

(a) Seams. On the ``--size`` scene, small enough to predict whole, the per-class probabilities
    of windowed classification (256 px windows overlapping by 64 px) are compared with the
    whole-image prediction, for BLEND none / linear / cosine: largest and mean absolute
    difference, over the whole image and inside it (64 px from the border, where the whole-image
    network's own zero padding differs from the windows' reflection), and the largest step of
    the difference between neighbouring pixels inside (a seam is such a step).
(b) Memory and speed on a full Sentinel-2 tile: ``--big`` x ``--big`` x 14 (the scene repeated
    through a VRT mosaic), classified in a fresh child process that reports its peak RSS; the
    baseline, in the same way, is the published layout: non-overlapping 256 px windows (no
    blending). Target: peak RSS at most 3 GB.
(c) The lulc preset network (10.7 M parameters) on a 2048 x 2048 crop of the mosaic, for its
    pixels per second on this machine (weights untrained: speed does not depend on them).

The 14 bands: the generator's four (R, G, B, NIR digital numbers) and ten derived bands (the
six normalised differences of the band pairs and four 3 x 3 means), like S2 bands plus indices.
Children run with GDAL_CACHEMAX=256 (MB), as the QGIS worker does.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from common import child_env, import_plugin, peak_rss_mb, run_child

WINDOW, OVERLAP = 256, 64


def make_scene(folder, size, seed=3):
    """The 14-band scene and its true classes (cached)."""
    import numpy as np
    from osgeo import gdal
    from scipy.ndimage import uniform_filter

    from fjord.core.prepare.synthetic import write_synthetic_scene

    image = os.path.join(folder, "scene14.tif")
    if os.path.isfile(image):
        return image, os.path.join(folder, "scene", "classes.tif")
    paths = write_synthetic_scene(os.path.join(folder, "scene"), shape=(size, size), seed=seed)
    src = gdal.Open(paths["image"])
    bands = src.ReadAsArray().astype(np.float32)
    derived = []
    for i in range(4):
        for j in range(i + 1, 4):
            nd = (bands[i] - bands[j]) / np.maximum(bands[i] + bands[j], 1)
            derived.append((nd + 1) * 10000)
    derived += [uniform_filter(b, 3) for b in bands]
    data = np.concatenate([bands, np.stack(derived)]).round().clip(0, 65535).astype(np.uint16)
    ds = gdal.GetDriverByName("GTiff").Create(image, size, size, 14, gdal.GDT_UInt16,
                                              options=["TILED=YES"])
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    for b in range(14):
        ds.GetRasterBand(b + 1).WriteArray(data[b])
    ds = None
    return image, paths["classes"]


def mosaic_vrt(image, path, size):
    """A ``size`` x ``size`` VRT that repeats ``image`` (bands, type, pixel size kept)."""
    from xml.sax.saxutils import escape

    from osgeo import gdal

    src = gdal.Open(image)
    w, h, n = src.RasterXSize, src.RasterYSize, src.RasterCount
    gt = src.GetGeoTransform()
    kind = gdal.GetDataTypeName(src.GetRasterBand(1).DataType)
    parts = [f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">',
             f"<SRS>{escape(src.GetProjection())}</SRS>",
             f"<GeoTransform>{', '.join(map(str, gt))}</GeoTransform>"]
    for b in range(1, n + 1):
        parts.append(f'<VRTRasterBand dataType="{kind}" band="{b}">')
        for y in range(0, size, h):
            for x in range(0, size, w):
                cw, ch = min(w, size - x), min(h, size - y)
                parts.append(
                    f'<SimpleSource><SourceFilename relativeToVRT="0">{os.path.abspath(image)}'
                    f'</SourceFilename><SourceBand>{b}</SourceBand>'
                    f'<SrcRect xOff="0" yOff="0" xSize="{cw}" ySize="{ch}"/>'
                    f'<DstRect xOff="{x}" yOff="{y}" xSize="{cw}" ySize="{ch}"/></SimpleSource>')
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def train_model(folder, image, classes, epochs):
    from fjord.core.learn.unet import train_unet
    from fjord.core.prepare.tiles import build_dataset

    model = os.path.join(folder, "unet14.keras")
    if os.path.isfile(model):
        return model
    dataset = os.path.join(folder, "dataset14")
    if not os.path.isdir(dataset):
        build_dataset(image, classes, dataset, mode="segmentation", tile_size=WINDOW, stride=WINDOW // 2,
                      min_labelled=0.05, seed=0)
    result = train_unet(dataset, model, depth=4, filters=8, epochs=epochs, batch_size=4,
                        learning_rate=3e-3, patience=0, augment="rotations+flips", seed=0)
    print(f"trained: {result['parameters']:,} parameters, validation accuracy "
          f"{result['accuracy']:.3f}, mean IoU {result['mean_iou']:.3f}", flush=True)
    return model


def seams(folder, image, model):
    import numpy as np
    from osgeo import gdal

    from fjord.core.learn.unet import classify_unet

    whole = os.path.join(folder, "whole.tif")
    size = gdal.Open(image).RasterXSize
    classify_unet(image, model, whole, window=size, overlap=0)
    ref = gdal.Open(whole).ReadAsArray()[1:]
    rows = []
    for blend in ("none", "linear", "cosine"):
        out = os.path.join(folder, f"windows_{blend}.tif")
        classify_unet(image, model, out, window=WINDOW, overlap=OVERLAP, blend=blend)
        diff = np.abs(gdal.Open(out).ReadAsArray()[1:] - ref)
        inner = diff[:, OVERLAP:-OVERLAP, OVERLAP:-OVERLAP]
        signed = (gdal.Open(out).ReadAsArray()[1:] - ref)[:, OVERLAP:-OVERLAP, OVERLAP:-OVERLAP]
        # A seam is a step in the difference: its largest jump between neighbouring pixels.
        step = max(np.abs(np.diff(signed, axis=1)).max(), np.abs(np.diff(signed, axis=2)).max())
        agree = (gdal.Open(out).ReadAsArray()[0] == ref.argmax(0) + 1).mean()
        rows.append((blend, float(diff.max()), float(diff.mean()), float(inner.max()),
                     float(inner.mean()), float(step), float(agree)))
    return rows


def child(image, model, out, window, overlap, blend, preset):
    if preset == "lulc":  # untrained weights of the lulc network: speed only
        from fjord.models.modelfile import read_metadata, save_model
        from fjord.models.unet import build_unet

        meta = dict(read_metadata(model), preset="lulc",
                    layout={"depth": 4, "filters": 32, "dropout": 0.0, "optimizer": "nadam"})
        net = build_unet(meta["bands"], len(meta["outputs"]), 4, 32)
        model = out + ".lulc.keras"
        save_model(net, model, meta)
    from fjord.core.learn.unet import classify_unet

    t0 = time.perf_counter()
    result = classify_unet(image, model, out, window=int(window), overlap=int(overlap), blend=blend,
                           probabilities="float32")
    seconds = time.perf_counter() - t0
    from osgeo import gdal

    ds = gdal.Open(out)
    n = ds.RasterXSize * ds.RasterYSize
    ds = None
    for path in (out, out + ".lulc.keras"):
        if os.path.exists(path):
            os.remove(path)
    print(json.dumps({"seconds": seconds, "pixels": n, "px_per_s": n / seconds,
                      "peak_rss_mb": peak_rss_mb(), "rate_inside": result["pixels_per_second"]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--big", type=int, default=10980)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "fjord-bench-unet"))
    parser.add_argument("--child", action="store_true")
    args, rest = parser.parse_known_args()
    plugins = import_plugin()
    if args.child:
        return child(*rest)
    os.makedirs(args.work, exist_ok=True)
    env = child_env(plugins)
    image, classes = make_scene(args.work, args.size)
    model = train_model(args.work, image, classes, args.epochs)

    print(f"\n(a) Seams: {args.size} x {args.size} x 14 px, windows {WINDOW} px overlapping by "
          f"{OVERLAP} px, against the whole-image prediction (probabilities 0..1)")
    print(f"{'blend':<8} {'max |diff|':>11} {'mean |diff|':>12} {'inside: max':>12} "
          f"{'inside: mean':>13} {'inside: step':>13} {'class agreement':>16}")
    for blend, mx, mean, imx, imean, step, agree in seams(args.work, image, model):
        print(f"{blend:<8} {mx:>11.4f} {mean:>12.5f} {imx:>12.4f} {imean:>13.5f} {step:>13.4f} "
              f"{100 * agree:>15.3f}%")

    if args.big:
        big = mosaic_vrt(image, os.path.join(args.work, f"mosaic{args.big}.vrt"), args.big)
        out = os.path.join(args.work, "big.tif")
        runs = [("published: no overlap", 0, "none", "unet"),
                (f"fjord: overlap {OVERLAP}, cosine", OVERLAP, "cosine", "unet")]
        results = [(label, run_child(__file__, env, big, model, out, WINDOW, ov, blend, preset))
                   for label, ov, blend, preset in runs]
        base = results[0][1]
        print(f"\n(b) {args.big} x {args.big} x 14 px (the scene repeated), windows of {WINDOW} px, "
              "float32 probabilities, each run in a fresh process")
        print(f"{'run':<28} {'seconds':>9} {'px/s':>11} {'peak RSS MB':>12} {'time x':>7} {'RSS x':>6}")
        for label, r in results:
            print(f"{label:<28} {r['seconds']:>9.1f} {r['px_per_s']:>11,.0f} {r['peak_rss_mb']:>12,.0f} "
                  f"{r['seconds'] / base['seconds']:>7.2f} {r['peak_rss_mb'] / base['peak_rss_mb']:>6.2f}")
        crop = os.path.join(args.work, "crop2048.vrt")
        from osgeo import gdal

        gdal.Translate(crop, big, srcWin=[0, 0, 2048, 2048], format="VRT")
        r = run_child(__file__, env, crop, model, out, WINDOW, OVERLAP, "cosine", "lulc")
        print(f"\n(c) lulc preset network (10,743,309 parameters at 14 bands / 13 classes; here "
              f"7 classes) on 2048 x 2048 x 14 px, overlap {OVERLAP}, cosine: {r['seconds']:.1f} s, "
              f"{r['px_per_s']:,.0f} px/s, peak RSS {r['peak_rss_mb']:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
