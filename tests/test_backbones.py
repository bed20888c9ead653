"""The backbone registry, the weights policy and the classifier builder."""

from __future__ import annotations

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


@pytest.mark.parametrize("classes, units, activation", [(2, 1, "sigmoid"), (3, 3, "softmax")])
def test_classifier_head(classes, units, activation):
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    model = backbones.build_classifier(backbone, classes)
    head = model.get_layer("head")
    assert head.units == units and head.activation.__name__ == activation
    assert not backbone.trainable
    channels = backbone.output_shape[-1]
    assert backbones.count_params(model)["trainable"] == (channels + 1) * units
    out = model.predict(np.zeros((2, *SHAPE), "float32"), verbose=0)
    assert out.shape == (2, units)


def _moving_means(backbone):
    bn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    return bn, [layer.moving_mean.numpy().copy() for layer in bn]


def test_keras3_overrides_training_false_so_unfreeze_freezes_batchnorm():
    x = np.random.default_rng(0).uniform(0, 255, (4, *SHAPE)).astype("float32")
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    model = backbones.build_classifier(backbone, 2)
    # The trap: a plain `trainable = True` lets fit's training=True reach BatchNorm.
    backbone.trainable = True
    bn, before = _moving_means(backbone)
    model(x, training=True)
    assert any(not np.array_equal(layer.moving_mean.numpy(), m) for layer, m in zip(bn, before))
    # The remedy: unfreeze() keeps BatchNorm layers frozen, hence in inference mode.
    counts = backbones.unfreeze(backbone)
    assert counts["batchnorm_kept_frozen"] == len(bn) > 0
    bn, before = _moving_means(backbone)
    model(x, training=True)
    for layer, mean in zip(bn, before):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)
    assert backbones.count_params(model)["trainable"] > 100_000


def test_unfreeze_from_a_layer():
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    name = backbone.layers[-10].name
    backbones.unfreeze(backbone, from_layer=name)
    assert not any(layer.trainable and layer.weights for layer in backbone.layers[:-10])
    assert any(layer.trainable for layer in backbone.layers[-10:])
    with pytest.raises(ValueError, match="from_layer='nope' is not a layer"):
        backbones.unfreeze(backbone, from_layer="nope")


def test_classifier_rejects_one_class():
    backbone, _ = backbones.build_backbone("MobileNetV3Small", None, SHAPE, verbose=False)
    with pytest.raises(ValueError, match="at least 2 classes"):
        backbones.build_classifier(backbone, 1)
