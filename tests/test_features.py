"""The store of frozen activations: the cut, reuse only while the key matches, the epoch cycle."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import backbones, features

SIZE = 32


@pytest.fixture(scope="module")
def backbone():
    base, _ = backbones.build_backbone("MobileNetV3Small", None, (SIZE, SIZE, 3), verbose=False)
    base.trainable = False
    return base


@pytest.fixture()
def frame(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "relpath": path.name, "label": "ab"[i % 2]})
    return pd.DataFrame(rows)


def test_split_backbone_composes_to_the_whole_backbone(backbone):
    bottom, top = features.split_backbone(backbone, features.CUTS["MobileNetV3Small"])
    x = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    whole = np.asarray(backbone(x, training=False))
    np.testing.assert_allclose(np.asarray(top(bottom(x, training=False))), whole, atol=1e-4)
    assert features.split_backbone(backbone, None) == (None, backbone)


def test_split_backbone_names_the_parameter_on_a_bad_cut(backbone):
    with pytest.raises(ValueError, match="UNFREEZE_FROM='nope' is not a layer"):
        features.split_backbone(backbone, "nope")
    inside = next(
        layer.name
        for layer in backbone.layers
        if layer.name.endswith("_depthwise") and "expanded_conv_10" in layer.name
    )  # Inside a residual block: the add above it uses a tensor from below.
    with pytest.raises(ValueError, match="not a block boundary"):
        features.split_backbone(backbone, inside)


def test_frozen_reuses_a_view_only_while_its_key_matches(backbone, frame, tmp_path):
    bottom, top = features.split_backbone(backbone, features.CUTS["MobileNetV3Small"])
    run = tmp_path / "run"
    first = features.frozen(run, "train", frame, ["a", "b"], SIZE, bottom)
    stored = next((run / "features").glob("*.train.npy"))
    assert first.dtype in (np.float16, np.float32) and len(first) == len(frame)
    stamp = stored.stat().st_mtime_ns
    again = features.frozen(run, "train", frame, ["a", "b"], SIZE, bottom)
    assert stored.stat().st_mtime_ns == stamp and np.array_equal(first, again)  # Reused.
    fewer = features.frozen(run, "train", frame.iloc[:4], ["a", "b"], SIZE, bottom)
    assert len(fewer) == 4  # Other files: computed again, not the stale view.
    key = json.loads(stored.with_suffix(".json").read_text())
    assert key["n"] == 4 and key["seconds"] >= 0
    pooled = features.frozen(run, "train", frame, ["a", "b"], SIZE, bottom, top)
    x = np.stack([np.asarray(Image.open(p).resize((SIZE, SIZE))) for p in frame["path"]])
    assert pooled.shape == (len(frame), backbone.output_shape[-1])
    assert np.isfinite(pooled).all() and x.shape[0] == len(pooled)


def test_frozen_stores_other_weights_apart(backbone, frame, tmp_path):
    bottom, _ = features.split_backbone(backbone, features.CUTS["MobileNetV3Small"])
    a = features.frozen(tmp_path, "val", frame, ["a", "b"], SIZE, bottom)
    other, _ = backbones.build_backbone("MobileNetV3Small", None, (SIZE, SIZE, 3), verbose=False)
    keras.utils.set_random_seed(5)
    for w in other.weights:
        w.assign(np.asarray(w) + 0.5)
    other_bottom, _ = features.split_backbone(other, features.CUTS["MobileNetV3Small"])
    b = features.frozen(tmp_path, "val", frame, ["a", "b"], SIZE, other_bottom)
    assert not np.array_equal(a, b)
    assert features._fingerprint(bottom) != features._fingerprint(other_bottom)


def test_cycle_gives_epoch_e_the_copy_e_mod_k():
    copies = [np.full((5, 2), k, np.float32) for k in range(3)]
    labels = np.arange(5, dtype=np.float32)[:, None]
    ds, steps = features.cycle(copies, labels, batch_size=2, seed=0)
    assert steps == 3
    batches = list(ds.take(steps * 4).as_numpy_iterator())
    for epoch in range(4):
        xs = np.concatenate([x for x, _ in batches[epoch * steps : (epoch + 1) * steps]])
        ys = np.concatenate([y for _, y in batches[epoch * steps : (epoch + 1) * steps]])
        assert (xs == epoch % 3).all() and sorted(ys.ravel()) == list(range(5))
