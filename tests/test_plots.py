"""Tests of the course's figures (helpers.plots) not covered by the modules' own tests."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_compare_bars_top_down_with_values_and_reference():
    values = pd.Series({"imagenet": 0.91, "random": 0.55})
    ax = plots.compare_bars(values, "Probe", "accuracy", reference=0.5, reference_label="chance")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["imagenet", "random"]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # The first row is drawn at the top.
    assert _texts(ax) == ["0.91", "0.55"] and ax.get_xlabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["chance"]


def test_bar_counts_labels_every_segment():
    counts = pd.DataFrame({"fake": [30, 6], "real": [28, 5]}, index=["train", "val"])
    ax = plots.bar_counts(counts.rename_axis("split"), "Per split", stacked=True)
    assert sorted(_texts(ax)) == sorted(["30", "6", "28", "5"])
    assert ax.get_xlabel() == "split" and ax.get_ylabel() == "images"


def test_show_images_grid_and_titles():
    images = [np.full((8, 8, 3), v, np.uint8) for v in (0, 100, 200)]
    fig = plots.show_images(images, ["a", "b", "c"], columns=2, suptitle="grid")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 4 and len(shown) == 3
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert not fig.axes[3].axison and fig.get_suptitle() == "grid"


def test_augmentation_grid_rows_are_images_and_columns_draws():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3))
    fig = plots.augmentation_grid(images, lambda x, training: x[:, :, ::-1], draws=2)
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["original", "draw 1", "draw 2"]
    assert "8x8 px" in fig.axes[3].get_ylabel()
    flipped = fig.axes[1].images[0].get_array()
    assert np.array_equal(flipped, np.clip(images[0], 0, 255).astype("uint8")[:, ::-1])
    with pytest.raises(ValueError, match="draws"):
        plots.augmentation_grid(images, lambda x, training: x, draws=0)


def test_gradcam_grid_checks_shapes():
    images = np.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match="heatmaps"):
        plots.gradcam_grid(images, np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="titles"):
        plots.gradcam_grid(images, np.zeros((2, 8, 8)), titles=["one"])


def test_spectrum_peaks_at_the_grating_frequency():
    x = np.arange(64)
    grating = np.repeat((128 + 100 * np.cos(2 * np.pi * x / 8))[None, :, None], 64, axis=0)
    spec = plots.spectrum(np.repeat(grating, 3, axis=2))
    row, col = np.unravel_index(np.argmax(spec), spec.shape)
    assert spec.shape == (64, 64) and row == 32 and abs(col - 32) == 64 // 8


def test_sweep_comparison_writes_values_and_statuses(tmp_path):
    frame = pd.DataFrame(
        {"run_id": ["a", "b"], "status": ["finished", "failed"], "val_accuracy": [0.9, None]}
    )
    path = tmp_path / "comparison.png"
    plots.sweep_comparison(frame, "val_accuracy", path)
    assert path.stat().st_size > 1000
