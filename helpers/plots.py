"""Figures of the course: each function draws one figure with a title, labels and units."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy.stats import norm


def _finish(ax, title: str, xlabel="", ylabel="", grid=None, legend="best", fontsize=8):
    """Title, axis labels, a light grid (``"x"``, ``"y"``, ``"both"``), the legend if any."""
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if grid:
        ax.grid(axis=grid, alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc=legend, fontsize=fontsize)
    ax.figure.tight_layout()
    return ax


def _bars(ax, labels, values, texts, horizontal: bool = False, **style):
    """One bar per label with its text (past its error bar, if any); top-down if horizontal."""
    at = np.arange(len(values))
    bars = (ax.barh if horizontal else ax.bar)(at, values, **style)
    ax.bar_label(bars, labels=texts, fontsize=7, padding=2)
    (ax.set_yticks if horizontal else ax.set_xticks)(at, [str(label) for label in labels])
    if horizontal:  # Top-down, with room for the texts.
        ax.invert_yaxis()
        ax.margins(x=0.1)
    else:
        ax.margins(y=0.1)
    return bars


def _grid(images, columns: int, titles=None, row_labels=(), size: float = 2.2, title=None):
    """Images (0-255, row by row) in a grid; ``titles`` per image, ``row_labels`` on the left."""
    rows, titles = max(1, -(-len(images) // columns)), [] if titles is None else list(titles)
    figsize = (columns * size, rows * size + 0.4)
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.set(xticks=[], yticks=[])
        if index >= len(images):
            ax.set_axis_off()
            continue
        ax.imshow(np.clip(np.asarray(images[index]), 0, 255).astype("uint8"))
        if index < len(titles) and titles[index] is not None:
            ax.set_title(str(titles[index]), fontsize=8)
    for ax, label in zip(axes[:, 0], row_labels, strict=False):
        ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(images: Sequence[np.ndarray], titles=None, columns=6, size=2.2, suptitle=None):
    """A grid of RGB images (uint8 or float 0-255) with optional titles."""
    return _grid(images, columns, titles, size=size, title=suptitle)


def augmentation_grid(
    images, augmentation, draws: int = 5, title="The same images under random augmentation draws"
):
    """Rows: images (N, H, W, 3) in 0-255; columns: the original and ``draws`` augmentations."""
    import keras

    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) in 0-255; got shape {batch.shape}.")
    if draws < 1:
        raise ValueError(f"draws={draws} must be at least 1.")
    drawn = [augmentation(batch, training=True) for _ in range(draws)]
    outputs = [batch, *(keras.ops.convert_to_numpy(d) for d in drawn)]
    cells = [out[row] for row in range(len(batch)) for out in outputs]
    titles = ["original"] + [f"draw {d}" for d in range(1, draws + 1)]
    h, w = batch.shape[1:3]
    labels = [f"image {row + 1}\n{h}x{w} px" for row in range(len(batch))]
    return _grid(cells, draws + 1, titles, labels, size=1.9, title=title)


def gradcam_grid(images, heatmaps, titles=None, title: str = "Grad-CAM", alpha: float = 0.4):
    """Each image (N, H, W, 3 in 0-255; top row) above its Grad-CAM overlay (heatmaps N, H, W
    in [0, 1]); ``titles``: one per image (e.g. the label and the bona fide score)."""
    from helpers.antispoofing import overlay

    images, heatmaps = np.asarray(images), np.asarray(heatmaps)
    if images.ndim != 4 or heatmaps.ndim != 3 or len(images) != len(heatmaps):
        shapes = f"{images.shape} and {heatmaps.shape}"
        raise ValueError(f"images must be (N, H, W, 3) and heatmaps (N, H, W); got {shapes}.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images.")
    blended = [overlay(i, h, alpha=alpha) for i, h in zip(images, heatmaps, strict=True)]
    labels = ["image", "Grad-CAM (red: most evidence)"]
    return _grid([*images, *blended], len(images), titles, labels, size=2.3, title=title)


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
    """Log magnitude of the centred 2-D Fourier transform of an image's luminance (to show)."""
    gray = np.asarray(image, dtype=np.float32).mean(axis=-1)
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))))


def bar_counts(table: pd.DataFrame, title: str, ylabel: str = "images", stacked=False, ax=None):
    """Bar chart of a small count table (index on the x axis, one bar per column)."""
    ax = table.plot.bar(ax=ax, stacked=stacked, rot=0, figsize=None if ax else (6, 3.2))
    for container in ax.containers:
        ax.bar_label(container, fontsize=7, label_type="center" if stacked else "edge")
    return _finish(ax, title, table.index.name or "", ylabel)


def compare_bars(values: pd.Series, title, xlabel, reference=None, reference_label="", ax=None):
    """Horizontal bars of one figure per row, with an optional reference line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.35 * len(values) + 1.2))
    texts = [f"{v:.3g}" for v in values.to_numpy(dtype=float)]
    _bars(ax, values.index, values.to_numpy(dtype=float), texts, horizontal=True, color="C0")
    if reference is not None:
        ax.axvline(reference, color="C3", linestyle="--", label=reference_label)
    return _finish(ax, title, xlabel)


def _series(history: dict, key: str) -> list[float]:
    """``history[key]`` as a list of floats; [] when absent."""
    values = history.get(key)
    return [float(v) for v in values] if isinstance(values, list | tuple | np.ndarray) else []


def _unit(metric: str) -> str:
    return "cross-entropy, nats" if "loss" in metric else "fraction of images"


def learning_curves(histories: list[tuple[str, dict]], title: str):
    """Loss and accuracy, train and validation, the phases (``[(name, history dict), ...]``
    in training order) joined on one epoch axis: a dotted line labelled with the next phase's
    name at each boundary, a star at the epoch early stopping kept (``best_epoch``)."""
    if not histories:
        raise ValueError("histories is empty: give [(phase name, history dict), ...].")
    accuracy = any(_series(history, "accuracy") for _, history in histories)
    metrics = ["loss", "accuracy"] if accuracy else ["loss"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        curves = {"train": ([], []), "validation": ([], [])}
        offset = 0
        for index, (name, history) in enumerate(histories):
            train, val = _series(history, metric), _series(history, f"val_{metric}")
            for (xs, ys), values in zip(curves.values(), (train, val), strict=True):
                xs += range(offset + 1, offset + len(values) + 1)
                ys += values
            best = history.get("best_epoch")
            if metric == "loss" and best and best <= len(val):
                label = "kept epoch (lowest val loss)" if index == 0 else None
                ax.plot(offset + best, val[best - 1], "*", ms=12, color="C3", label=label)
            if index > 0:
                ax.axvline(offset + 0.5, color="grey", linestyle=":", linewidth=1.2)
            if len(histories) > 1:
                x, transform = offset + (0.5 if index else 1.0), ax.get_xaxis_transform()
                ax.text(x, 0.97, f" {name}", transform=transform, va="top", fontsize=8)
            offset += max(len(train), len(val))
        for split, (xs, ys) in curves.items():
            if ys:
                ax.plot(xs, ys, marker="o", markersize=3, label=split)
        ylabel = f"{metric} ({_unit(metric)})"
        _finish(ax, metric.capitalize(), "epoch (phases joined)", ylabel, grid="both")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def compare_curves(runs: dict, metric="val_loss", title="Validation loss per experiment", ax=None):
    """Overlay one metric of several experiments (e.g. fine-tuning right vs wrong)."""
    if not runs:
        raise ValueError("runs is empty: give {experiment name: history dict}.")
    curves = {name: _series(history, metric) for name, history in runs.items()}
    if not any(curves.values()):
        keys = sorted(next(iter(runs.values())))
        raise ValueError(f"No run has a {metric!r} curve; keys of the first run: {keys}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, values in curves.items():
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    return _finish(ax, title, "epoch", f"{metric} ({_unit(metric)})", grid="both")


def confusion(cm_df: pd.DataFrame, title: str, ax=None):
    """Heatmap of a confusion matrix (true classes as rows, predicted as columns)."""
    if ax is None:
        size = 1.1 * len(cm_df) + 2.2
        _, ax = plt.subplots(figsize=(size + 0.8, size))
    sns.heatmap(cm_df, annot=True, fmt="d", cmap="Blues", cbar_kws={"label": "images"}, ax=ax)
    ax.set_aspect("equal")
    xlabel, ylabel = cm_df.columns.name or "predicted class", cm_df.index.name or "true class"
    return _finish(ax, title, xlabel, ylabel)


# Presentation attack detection (helpers.antispoofing).
_DET_TICKS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6])
_DET_LABELS = ("APCER: attacks accepted", "BPCER: bona fide rejected")


def _probit(rates, floor: float) -> np.ndarray:
    """Rates on the normal-deviate scale, clipped away from 0 and 1 (where it is infinite)."""
    return norm.ppf(np.clip(np.asarray(rates, dtype=float), floor, 1 - floor))


def _det_axes(ax, smallest: float) -> None:
    """DET ticks in %, from half an error of the largest class up to 60 %; the EER diagonal."""
    ticks = _DET_TICKS[(_DET_TICKS >= smallest * 0.99) & (_DET_TICKS <= 0.6)]
    limits = _probit([smallest, 0.6], 1e-12)
    ax.plot(limits, limits, "--", color="grey", linewidth=1, label="APCER = BPCER (EER)")
    labels = [f"{100 * t:g} %" for t in ticks]
    ax.set_xticks(_probit(ticks, 1e-12), labels, fontsize=7)
    ax.set_yticks(_probit(ticks, 1e-12), labels, fontsize=7)
    ax.set(xlim=(limits[0] - 0.1, limits[1] + 0.05), ylim=(limits[0] - 0.1, limits[1] + 0.05))
    xlabel, ylabel = (f"{rate} (normal-deviate scale)" for rate in _DET_LABELS)
    _finish(ax, "DET (0 % is drawn at half an error)", xlabel, ylabel, "both", "upper right", 7)


def roc_det(results: dict, title: str, threshold: float | None = None):
    """ROC and DET curves of several models side by side, operating points marked.

    ``results``: ``{name: (bona fide scores, attack (bool)[, threshold])}``; ``threshold``:
    the operating point of those without their own (None: none). The DET's dashed diagonal
    APCER = BPCER crosses each curve at its EER."""
    from helpers import antispoofing as pad

    if not results:
        raise ValueError("results is empty: give {name: (scores, attack[, threshold])}.")
    fig, (roc_ax, det_ax) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    smallest = 1.0
    for index, (name, entry) in enumerate(results.items()):
        if len(entry) not in (2, 3):
            raise ValueError(f"results[{name!r}] must be (scores, attack) or with a threshold.")
        scores, attack = np.asarray(entry[0]), np.asarray(entry[1], dtype=bool)
        point = entry[2] if len(entry) == 3 else threshold
        curves = pad.error_curves(scores, attack)
        rate, _ = pad.eer(scores, attack)
        floor = 0.5 / max(int(attack.sum()), int((~attack).sum()))
        smallest, colour = min(smallest, floor), f"C{index % 10}"
        apcer, bpcer = curves["apcer"].to_numpy(), curves["bpcer"].to_numpy()
        label = f"{name} (EER {rate:.1%})"
        roc_ax.step(apcer, 1 - bpcer, where="post", color=colour, label=label)
        det_ax.plot(_probit(apcer, floor), _probit(bpcer, floor), color=colour, label=name)
        if point is not None:
            ap, bp = (r["rate"] for r in pad.apcer_bpcer(scores, attack, float(point)))
            label = f"{name} at t={float(point):.3g}: APCER {ap:.1%}, BPCER {bp:.1%}"
            roc_ax.plot(ap, 1 - bp, "o", color=colour, markersize=7, label=label)
            det_ax.plot(_probit(ap, floor), _probit(bp, floor), "o", color=colour, markersize=7)
    roc_ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    roc_ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    xlabel = f"{_DET_LABELS[0]} (false positive rate)"
    ylabel = "1 - BPCER: bona fide accepted (true positive rate)"
    _finish(roc_ax, "ROC (accept when score ≥ threshold)", xlabel, ylabel, "both", "lower right", 7)
    _det_axes(det_ax, smallest)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rates_with_ci(table: pd.DataFrame, title: str, ax=None):
    """Bars of error rates with their confidence intervals; each labelled ``errors/N``.

    ``table``: rows with ``rate``, ``ci_low``, ``ci_high`` (optionally ``errors``, ``n``,
    ``model``), e.g. ``evaluate_pad``'s ``rates`` or ``rates_long``; the metric is the
    ``metric`` column or the index. A rate without samples is marked "n/a"."""
    data = table.copy() if "metric" in table.columns else table.reset_index()
    data = data.rename(columns={data.columns[0]: "metric"}) if "metric" not in data else data
    missing = {"rate", "ci_low", "ci_high"} - set(data.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)}; use evaluate_pad's 'rates'.")
    data["model"] = data["model"] if "model" in data else ""
    metrics, models = list(dict.fromkeys(data["metric"])), list(dict.fromkeys(data["model"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(metrics) * len(models)), 3.8))
    width = 0.8 / len(models)
    for m_index, model in enumerate(models):
        rows = data[data["model"] == model].set_index("metric").reindex(metrics)
        rate = rows["rate"].to_numpy(dtype=float)
        errors = [rate - rows["ci_low"].to_numpy(dtype=float), rows["ci_high"] - rate]
        counts, found = {"errors", "n"} <= set(rows), rows.itertuples()
        texts = [f"{r.errors:.0f}/{r.n:.0f}" if counts else f"{r.rate:.1%}" for r in found]
        texts = [text if np.isfinite(r) else "n/a" for text, r in zip(texts, rate, strict=True)]
        x = np.arange(len(metrics)) + (m_index - (len(models) - 1) / 2) * width
        yerr = np.nan_to_num(np.vstack(errors).astype(float))
        bars = ax.bar(x, np.nan_to_num(rate), width, yerr=yerr, capsize=3, label=model or None)
        ax.bar_label(bars, labels=texts, fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    return _finish(ax, title, "", "error rate (95 % CI as error bars)", grid="y")


def size_latency_bars(table: pd.DataFrame, title: str):
    """File size (MB) and median batch-1 latency (ms, p95 as error bar) per model variant.

    ``table``: ``verification.compare_variants``' (``size_mb``, ``latency_median_ms``,
    ``latency_p95_ms``) or the bench's (``median_ms``, ``p95_ms``); untimed rows left out."""
    median_col = "latency_median_ms" if "latency_median_ms" in table.columns else "median_ms"
    p95_col = "latency_p95_ms" if "latency_p95_ms" in table.columns else "p95_ms"
    missing = [c for c in ("size_mb", median_col, p95_col) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; pass verification.compare_variants'.")
    fig, (ax_size, ax_time) = plt.subplots(1, 2, figsize=(11, 3.6))
    sizes = table["size_mb"].to_numpy(dtype=float)
    _bars(ax_size, table.index, sizes, [f"{v:.2f}" for v in sizes], color="C0")
    median, p95 = (table[c].to_numpy(dtype=float) for c in (median_col, p95_col))
    timed = np.isfinite(median)
    upper = np.clip(np.nan_to_num(p95 - median), 0, None)[timed]
    texts = [f"{v:.2f}" for v in median[timed]]
    yerr = np.vstack([np.zeros_like(upper), upper])
    _bars(ax_time, table.index[timed], median[timed], texts, yerr=yerr, capsize=4, color="C1")
    _finish(ax_size, "Size", "", "file size (MB, 10^6 bytes)", grid="y")
    _finish(ax_time, "Latency", "", "ms per image, batch 1 (median; bar: p95)", grid="y")
    for ax in (ax_size, ax_time):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_comparison(frame: pd.DataFrame, metric: str | None, path) -> None:
    """One bar per run of a sweep, saved to ``path``: ``metric`` of the finished runs, the
    status of the others (a pyplot-free figure, safe in threads)."""
    values = pd.to_numeric(frame.get(metric, pd.Series(dtype=float)), errors="coerce")
    values = values.reindex(frame.index).fillna(0.0)
    fig = Figure(figsize=(8, 1.2 + 0.4 * max(len(frame), 1)), layout="constrained")
    ax = fig.add_subplot()
    pairs = zip(values, frame["status"], strict=True)
    texts = [f" {value:.3f}" if status == "finished" else f" {status}" for value, status in pairs]
    _bars(ax, frame["run_id"], values, texts, horizontal=True, color="C0")
    ax.set(xlabel=metric or "no metric", title=f"{metric or 'runs'} per run of the sweep")
    fig.savefig(path, dpi=110)


def layer_snr(errors: dict[str, pd.DataFrame], worst: pd.DataFrame, title: str):
    """Each quantized model's SNR along the network (``quantization.layer_errors`` tables, by
    name), the ``worst`` rows (the most noise added) marked and named on the axis."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for name, table in errors.items():
        ax.plot(table.index, table["snr_db"], marker=".", linewidth=1, label=name)
    ring = {"s": 80, "facecolors": "none", "edgecolors": "r", "zorder": 3}
    ax.scatter(worst.index, worst["snr_db"], label="most noise added", **ring)
    label = {"fontsize": 7, "rotation": 20, "textcoords": "offset points", "color": "r"}
    for position, row in worst.iterrows():
        ax.annotate(row["layer"], (position, row["snr_db"]), xytext=(4, -12), **label)
    xlabel, ylabel = "op position in the float model (input → output)", "SNR vs float (dB)"
    return _finish(ax, title, xlabel, ylabel, grid="y", legend="lower left")
