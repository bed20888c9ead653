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


# ---------------------------------------------------------------------------------------
# Presentation attack detection (helpers.antispoofing)
# ---------------------------------------------------------------------------------------

_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6)


def _det_axis(values: np.ndarray, floor: float) -> np.ndarray:
    """Rates on the normal-deviate scale, clipped away from 0 and 1 (where it is infinite)."""
    from scipy.stats import norm

    return norm.ppf(np.clip(values, floor, 1 - floor))


def roc_det(results: dict, title: str, threshold: float | None = None):
    """ROC and DET curves of several models side by side, operating points marked.

    Args:
        results: ``{name: (scores, attack)}`` or ``{name: (scores, attack, threshold)}``;
            scores are bona fide scores (``helpers.antispoofing.bona_fide_scores``) and
            ``attack`` is True for attack presentations.
        title: the figure's title.
        threshold: the operating point of every model without its own threshold (e.g. the
            validation-chosen one); None: no point for those.

    Left: the share of bona fide presentations accepted (1 - BPCER) against the share of
    attacks accepted (APCER). Right: the DET curve, BPCER against APCER on normal-deviate
    scales (``scipy.stats.norm.ppf``), ticks labelled in %. The dashed diagonal of the
    DET panel is APCER = BPCER: a curve crosses it at the EER.
    """
    from helpers import antispoofing

    if not results:
        raise ValueError("results is empty: give {name: (scores, attack[, threshold])}.")
    fig, (roc_ax, det_ax) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    smallest = 1.0
    for index, (name, entry) in enumerate(results.items()):
        if len(entry) not in (2, 3):
            raise ValueError(f"results[{name!r}] must be (scores, attack) or with a threshold.")
        scores, attack = np.asarray(entry[0]), np.asarray(entry[1], dtype=bool)
        point = entry[2] if len(entry) == 3 else threshold
        curves = antispoofing.error_curves(scores, attack)
        apcer, bpcer = curves["apcer"].to_numpy(), curves["bpcer"].to_numpy()
        rate, _ = antispoofing.eer(scores, attack)
        floor = 0.5 / max(int(attack.sum()), int((~attack).sum()))
        smallest = min(smallest, floor)
        colour = f"C{index % 10}"
        roc_ax.step(apcer, 1 - bpcer, where="post", color=colour, label=f"{name} (EER {rate:.1%})")
        det_ax.plot(_det_axis(apcer, floor), _det_axis(bpcer, floor), color=colour, label=name)
        if point is not None:
            ap, bp = antispoofing.apcer_bpcer(scores, attack, float(point))
            label = (
                f"{name} at t={float(point):.3g}: APCER {ap['rate']:.1%}, BPCER {bp['rate']:.1%}"
            )
            roc_ax.plot(ap["rate"], 1 - bp["rate"], "o", color=colour, markersize=7, label=label)
            det_ax.plot(
                _det_axis(np.array([ap["rate"]]), floor),
                _det_axis(np.array([bp["rate"]]), floor),
                "o",
                color=colour,
                markersize=7,
            )
    roc_ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    roc_ax.set_xlabel("APCER: attacks accepted as bona fide (false positive rate)")
    roc_ax.set_ylabel("1 - BPCER: bona fide accepted (true positive rate)")
    roc_ax.set_xlim(-0.02, 1.02)
    roc_ax.set_ylim(-0.02, 1.02)
    roc_ax.set_title("ROC (accept when score ≥ threshold)", fontsize=10)
    roc_ax.grid(alpha=0.3)
    roc_ax.legend(loc="lower right", fontsize=7)
    # The DET panel spans from half an error of the largest class up to 60 %: the region
    # where operating points of a useful detector lie.
    ticks = [t for t in _DET_TICKS if smallest * 0.99 <= t <= 0.6]
    positions = _det_axis(np.array(ticks), 1e-12)
    labels = [f"{100 * t:g} %" for t in ticks]
    limits = _det_axis(np.array([smallest, 0.6]), 1e-12)
    det_ax.plot(limits, limits, "--", color="grey", linewidth=1, label="APCER = BPCER (EER)")
    det_ax.set_xticks(positions, labels, fontsize=7)
    det_ax.set_yticks(positions, labels, fontsize=7)
    det_ax.set_xlim(limits[0] - 0.1, limits[1] + 0.05)
    det_ax.set_ylim(limits[0] - 0.1, limits[1] + 0.05)
    det_ax.set_xlabel("APCER (attacks accepted, normal-deviate scale)")
    det_ax.set_ylabel("BPCER (bona fide rejected, normal-deviate scale)")
    det_ax.set_title("DET (0 % is drawn at half an error)", fontsize=10)
    det_ax.grid(alpha=0.3)
    det_ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gradcam_grid(images, heatmaps, titles=None, title: str = "Grad-CAM", alpha: float = 0.4):
    """Each image (top row) above its Grad-CAM overlay (bottom row).

    Args:
        images: (N, H, W, 3) in 0-255.
        heatmaps: (N, H, W) in [0, 1], e.g. ``helpers.antispoofing.grad_cam``'s output.
        titles: one title per image (e.g. the label and the bona fide score).
        title: the figure's title.
        alpha: the heatmap's weight in the overlay.
    """
    from helpers import antispoofing

    images = np.asarray(images)
    heatmaps = np.asarray(heatmaps)
    if images.ndim != 4 or heatmaps.ndim != 3 or len(images) != len(heatmaps):
        raise ValueError(
            f"images must be (N, H, W, 3) and heatmaps (N, H, W); got {images.shape} and "
            f"{heatmaps.shape}."
        )
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images.")
    count = len(images)
    fig, axes = plt.subplots(2, count, figsize=(2.3 * count, 5.0), squeeze=False)
    for index in range(count):
        top, bottom = axes[0, index], axes[1, index]
        top.imshow(np.clip(images[index], 0, 255).astype("uint8"))
        bottom.imshow(antispoofing.overlay(images[index], heatmaps[index], alpha=alpha))
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if titles is not None:
            top.set_title(str(titles[index]), fontsize=8)
        if index == 0:
            top.set_ylabel("image", fontsize=8)
            bottom.set_ylabel("Grad-CAM (red: most evidence)", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rates_with_ci(table: pd.DataFrame, title: str, ax=None):
    """Bar chart of error rates with their confidence intervals as error bars.

    Args:
        table: rows of rates with columns ``rate``, ``ci_low``, ``ci_high`` and optionally
            ``errors``, ``n`` and ``model`` (the ``rates`` table of
            ``helpers.antispoofing.evaluate_pad``, or ``rates_long`` for several models);
            the metric is the ``metric`` column or the index.
        title: the figure's title.

    Each bar is labelled ``errors/N``; a rate without samples is marked "n/a".
    """
    data = table.reset_index() if "metric" not in table.columns else table.copy()
    if "metric" not in data.columns:
        data = data.rename(columns={data.columns[0]: "metric"})
    missing = {"rate", "ci_low", "ci_high"} - set(data.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)}; use evaluate_pad's 'rates'.")
    if "model" not in data.columns:
        data["model"] = ""
    metrics = list(dict.fromkeys(data["metric"]))
    models = list(dict.fromkeys(data["model"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(metrics) * max(1, len(models))), 3.8))
    width = 0.8 / len(models)
    for m_index, model in enumerate(models):
        rows = data[data["model"] == model].set_index("metric").reindex(metrics)
        x = np.arange(len(metrics)) + (m_index - (len(models) - 1) / 2) * width
        rate = rows["rate"].to_numpy(dtype=float)
        low = np.nan_to_num(rate - rows["ci_low"].to_numpy(dtype=float))
        high = np.nan_to_num(rows["ci_high"].to_numpy(dtype=float) - rate)
        bars = ax.bar(
            x,
            np.nan_to_num(rate),
            width,
            yerr=np.vstack([low, high]),
            capsize=3,
            label=model or None,
        )
        for bar, (_, row) in zip(bars, rows.iterrows(), strict=True):
            if not np.isfinite(row["rate"]):
                text = "n/a"
            elif "errors" in rows.columns and "n" in rows.columns:
                text = f"{int(row['errors'])}/{int(row['n'])}"
            else:
                text = f"{row['rate']:.1%}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, 0),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("error rate (95 % CI as error bars)")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if any(models):
        ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


def size_latency_bars(table: pd.DataFrame, title: str):
    """Two bar charts per model variant: file size (MB) and median latency (ms, p95 bars).

    ``table`` is ``verification.compare_variants``'s table (``size_mb``,
    ``latency_median_ms``, ``latency_p95_ms``) or the deployment bench's (``size_mb``,
    ``median_ms``, ``p95_ms``), one row per variant. Rows without a latency (the Keras
    row when it was not timed) are left out of the latency chart.
    """
    median_col = "latency_median_ms" if "latency_median_ms" in table.columns else "median_ms"
    p95_col = "latency_p95_ms" if "latency_p95_ms" in table.columns else "p95_ms"
    missing = [c for c in ("size_mb", median_col, p95_col) if c not in table.columns]
    if missing:
        raise ValueError(
            f"table lacks columns {missing}; pass verification.compare_variants' table."
        )
    labels = [str(i) for i in table.index]
    fig, (ax_size, ax_time) = plt.subplots(1, 2, figsize=(11, 3.6))
    sizes = table["size_mb"].to_numpy(dtype=float)
    bars = ax_size.bar(labels, sizes, color="tab:blue")
    ax_size.bar_label(bars, labels=[f"{v:.2f}" for v in sizes], fontsize=8)
    ax_size.set_ylabel("file size (MB, 10^6 bytes)")
    ax_size.set_title("Size")
    median = table[median_col].to_numpy(dtype=float)
    p95 = table[p95_col].to_numpy(dtype=float)
    timed = np.isfinite(median)
    upper = np.clip(np.nan_to_num(p95 - median), 0, None)
    bars = ax_time.bar(
        [label for label, keep in zip(labels, timed, strict=True) if keep],
        median[timed],
        yerr=np.vstack([np.zeros(int(timed.sum())), upper[timed]]),
        capsize=4,
        color="tab:orange",
    )
    ax_time.bar_label(
        bars, labels=[f"{v:.2f}" for v in median[timed]], fontsize=8, label_type="center"
    )
    ax_time.set_ylabel("ms per image, batch 1 (median; bar: p95)")
    ax_time.set_title("Latency")
    for ax in (ax_size, ax_time):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_comparison(frame: pd.DataFrame, metric: str | None, path) -> None:
    """One bar per run of a sweep: ``metric`` of the finished runs, the status of the others."""
    from matplotlib.figure import Figure

    values = pd.to_numeric(frame.get(metric, pd.Series(dtype=float)), errors="coerce")
    values = values.reindex(frame.index).fillna(0.0)
    fig = Figure(figsize=(8, 1.2 + 0.4 * max(len(frame), 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(frame)), values, color="tab:blue")
    ax.set_yticks(range(len(frame)), list(frame["run_id"]), fontsize=8)
    ax.invert_yaxis()
    for i, (value, status) in enumerate(zip(values, frame["status"], strict=True)):
        ax.text(value, i, f" {value:.3f}" if status == "finished" else f" {status}", va="center")
    ax.set_xlabel(metric or "no metric")
    ax.set_title(f"{metric or 'runs'} per run of the sweep")
    fig.savefig(path, dpi=110)
