"""Report figures (PNG): training curves and confusion matrices."""

import numpy as np

from ..data.plotting import pyplot


def training_curves(history, path, loss_name="categorical cross-entropy"):
    """Loss and accuracy per epoch, training and validation, side by side."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", f"Loss ({loss_name})"),
                           (axes[1], "accuracy", "Accuracy")):
        for prefix, name, style in (("", "training", "-"), ("val_", "validation", "--")):
            values = [row.get(prefix + key, np.nan) for row in history]
            ax.plot(epochs, values, style, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def confusion_figure(matrix, names, path, title=None, col_names=None):
    """A confusion matrix (rows: truth, columns: predicted) with counts and row shares.

    ``col_names``: the predicted classes when they differ from the rows (an extra
    'unlabelled' column, say)."""
    plt = pyplot()
    matrix = np.asarray(matrix)
    col_names = col_names or names
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    n, m = len(names), len(col_names)
    size = max(4.5, 0.7 * max(n, m) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(m):
            ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}" if rows[i, 0] else "-",
                    ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(m), col_names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
