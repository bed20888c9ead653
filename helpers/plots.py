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
