"""Figures of the course: each function draws one figure with a title, labels and units."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def show_images(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    columns: int = 6,
    size: float = 2.2,
    suptitle: str | None = None,
):
    """A grid of RGB images (uint8 or float 0-255) with optional titles."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size + 0.4))
    for index, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if index < len(images):
            image = np.asarray(images[index])
            ax.imshow(np.clip(image, 0, 255).astype("uint8"))
            if titles is not None:
                ax.set_title(titles[index], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def bar_counts(
    table: pd.DataFrame,
    title: str,
    ylabel: str = "images",
    stacked: bool = False,
    ax=None,
):
    """Bar chart of a small count table (index on the x axis, one bar per column)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    table.plot.bar(ax=ax, stacked=stacked, rot=0)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(table.index.name or "")
    for container in ax.containers:
        ax.bar_label(container, fontsize=7, label_type="center" if stacked else "edge")
    ax.figure.tight_layout()
    return ax


def compare_bars(
    values: pd.Series,
    title: str,
    xlabel: str,
    reference: float | None = None,
    reference_label: str = "",
    ax=None,
):
    """Horizontal bars of one figure per row, with an optional reference line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.35 * len(values) + 1.2))
    sns.barplot(x=values.values, y=[str(i) for i in values.index], ax=ax, color="#4C72B0")
    if reference is not None:
        ax.axvline(reference, color="#C44E52", linestyle="--", label=reference_label)
        ax.legend(loc="best", fontsize=8)
    ax.bar_label(ax.containers[0], fmt="%.3g", fontsize=7, padding=2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.figure.tight_layout()
    return ax


def feature_maps(maps: np.ndarray, title: str, count: int = 8, ax_row=None):
    """The first ``count`` channels of one feature map (H, W, C), each normalised."""
    if ax_row is None:
        _, ax_row = plt.subplots(1, count, figsize=(count * 1.4, 1.8))
    for channel, ax in enumerate(ax_row):
        fmap = maps[..., channel]
        span = float(fmap.max() - fmap.min()) or 1.0
        ax.imshow((fmap - fmap.min()) / span, cmap="magma")
        ax.axis("off")
    ax_row[0].set_title(title, fontsize=8, loc="left")
    return ax_row


def spectrum(image: np.ndarray) -> np.ndarray:
    """Log magnitude of the centred 2-D Fourier transform of an image's luminance."""
    gray = np.asarray(image, dtype=np.float32).mean(axis=-1)
    gray = gray - gray.mean()
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(gray))))


def _metric_curves(history: dict, metric: str) -> tuple[list[float], list[float]]:
    """Training and validation lists of ``metric`` (empty when absent)."""

    def values(key: str) -> list[float]:
        data = history.get(key)
        return [float(v) for v in data] if isinstance(data, (list, tuple, np.ndarray)) else []

    return values(metric), values(f"val_{metric}")


def learning_curves(histories: list[tuple[str, dict]], title: str):
    """Loss and accuracy, train and validation, with the phases joined on one epoch axis.

    Args:
        histories: ``[(phase name, history dict), ...]`` in training order, e.g.
            ``[("phase 1: feature extraction", h1), ("phase 2: fine-tuning", h2)]``.
        title: the figure's title.

    Each phase boundary is a vertical dotted line labelled with the next phase's name;
    the epoch early stopping kept (``best_epoch``) is marked with a star.
    """
    if not histories:
        raise ValueError("histories is empty: give [(phase name, history dict), ...].")
    has_accuracy = any(_metric_curves(h, "accuracy")[0] for _, h in histories)
    panels = [("loss", "loss (cross-entropy, nats)")]
    if has_accuracy:
        panels.append(("accuracy", "accuracy (fraction of images)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 3.8), squeeze=False)
    for ax, (metric, ylabel) in zip(axes[0], panels, strict=True):
        train_x, train_y, val_x, val_y = [], [], [], []
        offset = 0
        for index, (name, history) in enumerate(histories):
            train, val = _metric_curves(history, metric)
            epochs = max(len(train), len(val))
            train_x += [offset + i + 1 for i in range(len(train))]
            train_y += train
            val_x += [offset + i + 1 for i in range(len(val))]
            val_y += val
            best = history.get("best_epoch")
            if best and val and metric == "loss" and best <= len(val):
                ax.plot(
                    offset + best,
                    val[best - 1],
                    marker="*",
                    markersize=12,
                    color="#C44E52",
                    linestyle="none",
                    label="kept epoch (lowest val loss)" if index == 0 else None,
                )
            if index > 0:
                ax.axvline(offset + 0.5, color="grey", linestyle=":", linewidth=1.2)
                ax.annotate(
                    name,
                    xy=(offset + 0.5, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -12),
                    textcoords="offset points",
                    fontsize=8,
                    color="dimgrey",
                )
            elif len(histories) > 1:
                ax.annotate(
                    name,
                    xy=(0.0, 1.0),
                    xycoords="axes fraction",
                    xytext=(4, -12),
                    textcoords="offset points",
                    fontsize=8,
                    color="dimgrey",
                )
            offset += epochs
        if train_y:
            ax.plot(train_x, train_y, marker="o", markersize=3, color="#4C72B0", label="train")
        if val_y:
            ax.plot(val_x, val_y, marker="o", markersize=3, color="#DD8452", label="validation")
        ax.set_xlabel("epoch (phases joined)")
        ax.set_ylabel(ylabel)
        ax.set_title(metric.capitalize(), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def compare_curves(
    runs: dict[str, dict],
    metric: str = "val_loss",
    title: str = "Validation loss per experiment",
    ax=None,
):
    """Overlay one metric of several experiments (e.g. fine-tuning right vs wrong)."""
    if not runs:
        raise ValueError("runs is empty: give {experiment name: history dict}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    plotted = 0
    for name, history in runs.items():
        values = history.get(metric)
        if not isinstance(values, (list, tuple, np.ndarray)) or len(values) == 0:
            continue
        ax.plot(
            range(1, len(values) + 1),
            [float(v) for v in values],
            marker="o",
            markersize=3,
            label=name,
        )
        plotted += 1
    if plotted == 0:
        keys = sorted(next(iter(runs.values())))
        raise ValueError(f"No run has a {metric!r} curve; keys of the first run: {keys}.")
    unit = "cross-entropy, nats" if "loss" in metric else "fraction of images"
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} ({unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.figure.tight_layout()
    return ax


def confusion(cm_df: pd.DataFrame, title: str, ax=None):
    """Heatmap of a confusion matrix (true classes as rows, predicted as columns)."""
    if ax is None:
        size = 1.1 * len(cm_df) + 2.2
        _, ax = plt.subplots(figsize=(size + 0.8, size))
    sns.heatmap(
        cm_df, annot=True, fmt="d", cmap="Blues", cbar_kws={"label": "images"}, ax=ax, square=True
    )
    ax.set_xlabel(cm_df.columns.name or "predicted class")
    ax.set_ylabel(cm_df.index.name or "true class")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax


def augmentation_grid(
    images,
    augmentation,
    draws: int = 5,
    title: str = "The same images under random augmentation draws",
):
    """Rows: images; columns: the original and ``draws`` random augmentations of it."""
    import keras

    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) in 0-255; got shape {batch.shape}.")
    if draws < 1:
        raise ValueError(f"draws={draws} must be at least 1.")
    outputs = [batch] + [
        keras.ops.convert_to_numpy(augmentation(batch, training=True)) for _ in range(draws)
    ]
    rows, columns = len(batch), draws + 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(1.9 * columns, 1.9 * rows + 0.5), squeeze=False
    )
    height, width = batch.shape[1:3]
    for row in range(rows):
        for column in range(columns):
            ax = axes[row, column]
            ax.imshow(np.clip(outputs[column][row], 0, 255).astype("uint8"))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if column == 0 else f"draw {column}", fontsize=9)
            if column == 0:
                ax.set_ylabel(f"image {row + 1}\n{height}x{width} px", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
