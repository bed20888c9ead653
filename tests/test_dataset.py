"""Tests of helpers.dataset: the tf.data pipeline, class counts and the imbalance ratio."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures.images import pattern
from PIL import Image

from helpers import checks, splits
from helpers import dataset as D


def test_imbalance_ratio_and_class_counts():
    assert D.imbalance_ratio({"a": 30, "b": 10}) == 3.0
    assert D.imbalance_ratio({"a": 3, "b": 0}) == float("inf")
    table = pd.DataFrame({"label": ["b", "a", "b", "a"], "status": ["ok", "ok", "ok", "bad"]})
    assert D.class_counts(table) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="'split' column"):
        D.class_counts(table, split="train")


@pytest.fixture(scope="module")
def dark_bright(tmp_path_factory):
    """Class 'dark' images have values <= 60, class 'light' >= 190; a scan of them."""
    base = tmp_path_factory.mktemp("db")
    root = base / "data"
    for label, lo in (("light", 190), ("dark", 0)):
        (root / label).mkdir(parents=True)
        for i in range(6 if label == "dark" else 5):
            arr = np.asarray(pattern(i + lo)) * (60 / 255) + lo
            Image.fromarray(arr.astype(np.uint8)).save(root / label / f"{i}.png")
    return checks.scan(root, cache_dir=base / "cache")


@pytest.mark.parametrize("label_mode", ["binary", "categorical", "int"])
def test_make_dataset_shapes_and_label_order(dark_bright, label_mode):
    result = dark_bright
    assert result.classes == ["dark", "light"]
    ds = D.make_dataset(
        result.good, result.classes, 24, batch_size=4, shuffle=True, seed=1, label_mode=label_mode
    )
    x, y = D.dataset_arrays(ds)
    assert x.shape == (11, 24, 24, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0 and x.max() > 150.0
    index = {
        "binary": y[:, 0] if y.ndim == 2 else y,
        "int": y,
        "categorical": y.argmax(-1) if y.ndim == 2 else y,
    }[label_mode]
    if label_mode == "binary":
        assert y.shape == (11, 1) and y.dtype == np.float32
    elif label_mode == "categorical":
        assert y.shape == (11, 2) and y.dtype == np.float32
    else:
        assert y.shape == (11,) and y.dtype == np.int32
    bright = x.mean(axis=(1, 2, 3)) > 127
    assert (bright == (index == 1)).all()  # "light" is index 1: alphabetical order.
    assert index.sum() == 5


def test_make_dataset_options(dark_bright):
    result = dark_bright
    ds = D.make_dataset(
        result.good,
        result.classes,
        (16, 20),
        batch_size=3,
        cache=False,
        augment=lambda x: 255.0 - x,
    )
    x, _ = D.dataset_arrays(ds)
    assert x.shape == (11, 16, 20, 3)
    assert (x.mean(axis=(1, 2, 3)) > 127).sum() == 6  # Inverted: the dark ones are bright.
    for batch, _ in ds.take(1):
        assert tuple(batch.shape) == (3, 16, 20, 3)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        D.make_dataset(result.good, ["a", "b", "c"], 16)
    with pytest.raises(ValueError, match="not in classes"):
        D.make_dataset(result.good, ["dark", "other"], 16)
    with pytest.raises(ValueError, match="label_mode"):
        D.make_dataset(result.good, result.classes, 16, label_mode="sparse")


def test_make_dataset_runs_keras_layers_in_training_mode(dark_bright):
    import keras

    # Dropout is the identity unless called with training=True.
    ds = D.make_dataset(
        dark_bright.good,
        dark_bright.classes,
        16,
        batch_size=4,
        augment=keras.layers.Dropout(0.5, seed=0),
    )
    x, _ = D.dataset_arrays(ds)
    assert 0.3 < (x == 0).mean() < 0.7


def test_make_dataset_per_split(dark_bright):
    split = splits.make_split(dark_bright.good, seed=0)
    sets = {
        s: D.make_dataset(split[split["split"] == s], dark_bright.classes, 16) for s in D.SPLITS
    }
    sizes = {k: len(D.dataset_arrays(v)[0]) for k, v in sets.items()}
    assert sizes == split["split"].value_counts().to_dict()
