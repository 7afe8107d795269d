"""Preview figure of a training dataset: sample tiles per class, true-colour stretch."""

import os

import numpy as np

from ..data.npyio import open_npy

_RGB_NAMES = (("B4", "B04", "red"), ("B3", "B03", "green"), ("B2", "B02", "blue"))


def rgb_bands(band_names):
    """Indices of the red, green and blue bands (by name; else the first three bands)."""
    lower = [n.lower() for n in band_names]
    found = []
    for names in _RGB_NAMES:
        hit = next((lower.index(n.lower()) for n in names if n.lower() in lower), None)
        found.append(hit)
    if None in found:
        return [0, 0, 0] if len(band_names) < 3 else [0, 1, 2]
    return found


def stretch(tile, bands, low, high):
    """2-98 % stretch of three bands to [0, 1] with the dataset's training percentiles."""
    rgb = tile[..., bands].astype(np.float32)
    lo, hi = np.asarray(low)[bands], np.asarray(high)[bands]
    return np.clip((rgb - lo) / np.maximum(hi - lo, 1e-9), 0, 1)


def write_preview(folder, meta, path, per_class=8, seed=0):
    """Write a PNG grid: one row per class (tiles), or image/mask pairs (segmentation)."""
    from matplotlib.colors import ListedColormap

    from ..data.plotting import pyplot

    plt = pyplot()

    rng = np.random.default_rng(seed)
    scale = meta["scaling"]["divisor"]
    low = np.array(meta["statistics"]["p2"]) * scale
    high = np.array(meta["statistics"]["p98"]) * scale
    bands = rgb_bands(meta["band_names"])
    classes = meta["schema"]["classes"]
    shards = [(open_npy(os.path.join(folder, s["images"])), open_npy(os.path.join(folder, s["labels"])))
              for s in meta["shards"]["train"]]
    if meta["mode"] == "tiles":
        rows = [c for c in classes if any((lab[:] == c["value"]).any() for _, lab in shards)]
        fig, axes = plt.subplots(len(rows), per_class, figsize=(1.3 * per_class + 1.6, 1.35 * len(rows)),
                                 squeeze=False)
        for r, cls in enumerate(rows):
            picks = [(img, i) for img, lab in shards for i in np.flatnonzero(lab[:] == cls["value"])]
            chosen = rng.choice(len(picks), min(per_class, len(picks)), replace=False) if picks else []
            for j in range(per_class):
                ax = axes[r, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(chosen):
                    img, i = picks[chosen[j]]
                    ax.imshow(stretch(np.asarray(img[i]), bands, low, high), interpolation="nearest")
                else:
                    ax.axis("off")
                for spine in ax.spines.values():
                    spine.set_color(cls["color"])
                    spine.set_linewidth(3)
            axes[r, 0].set_ylabel(cls["name"], rotation=0, ha="right", va="center", fontsize=9)
        title = f"{meta['tile_size']} px tiles per class (training split, true-colour 2-98 % stretch)"
    else:
        n = min(per_class, sum(len(img) for img, _ in shards))
        picks = [(img, lab, i) for img, lab in shards for i in range(len(img))]
        chosen = rng.choice(len(picks), n, replace=False)
        colours = ["#000000"] * (max(c["value"] for c in classes) + 1)
        for c in classes:
            colours[c["value"]] = c["color"]
        cmap = ListedColormap(colours)
        fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
        for j, k in enumerate(chosen):
            img, lab, i = picks[k]
            axes[0, j].imshow(stretch(np.asarray(img[i]), bands, low, high), interpolation="nearest")
            axes[1, j].imshow(np.asarray(lab[i]), cmap=cmap, vmin=0, vmax=len(colours) - 1,
                              interpolation="nearest")
            for ax in axes[:, j]:
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0, 0].set_ylabel("image")
        axes[1, 0].set_ylabel("mask (black: unlabelled)")
        from matplotlib.patches import Patch
        fig.legend(handles=[Patch(facecolor=c["color"], edgecolor="0.3", label=c["name"]) for c in classes],
                   loc="lower center", ncol=min(len(classes), 7), fontsize=8, frameon=False)
        fig.subplots_adjust(bottom=0.16)
        title = f"{meta['tile_size']} px windows and masks (training split)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if meta["mode"] != "tiles" else 0, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
