"""Frozen activations, computed once per run and *view* of the data (the images, or one
augmented copy) into ``<run>/features/`` for notebooks 01-04 (a frozen ``bottom``, see
:func:`split_backbone`, gives the same output for the same pixels); reused only while the key
matches: the bottom's weights, the files, the image size, the augmentation and the seed."""

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from helpers import dataset

#: Each backbone's cut: the first layer above it, starting the last inverted-residual block
#: (with the 1x1 top convolution, about a third of the weights, at 7 x 7 pixels).
CUTS = {
    "EfficientNetLite0": "block7a_expand_conv",
    "MobileNetV3Large": "expanded_conv_14_expand",
    "MobileNetV3Small": "expanded_conv_10_expand",
    **{f"EfficientNetB{i}": "block7a_expand_conv" for i in range(8)},
}


def split_backbone(base_model, cut: str | None):
    """``(bottom, top)`` models sharing ``base_model``'s layers, cut at layer ``cut``'s input."""
    import keras

    if cut is None:
        return None, base_model
    if isinstance(cut, int):  # A layer index, as UNFREEZE_FROM may give.
        cut = base_model.layers[cut].name
    names = [layer.name for layer in base_model.layers]
    if cut not in names:
        raise ValueError(
            f"UNFREEZE_FROM={cut!r} is not a layer of {base_model.name}; use a "
            f"block's first layer, e.g. {CUTS.get(base_model.name, names[-30])!r}."
        )
    tensor = base_model.get_layer(cut).input
    try:
        top = keras.Model(tensor, base_model.output, name=f"{base_model.name}_top")
    except ValueError as error:
        raise ValueError(
            f"UNFREEZE_FROM={cut!r} is not a block boundary of {base_model.name}: "
            f"layers above it use tensors from below ({error})."
        ) from None
    bottom = keras.Model(base_model.input, tensor, name=f"{base_model.name}_to_{cut}")
    return bottom, top


def _fingerprint(model) -> str:
    """A short hash of a model's weights, independent of their order and of which are trainable."""
    values = [w.numpy() for w in model.weights]
    sums = [round(float(np.sum(v, dtype=np.float64)), 4) for v in values]
    squares = [round(float(np.sum(np.square(v, dtype=np.float64))), 4) for v in values]
    summary = sorted(zip([tuple(w.shape) for w in model.weights], sums, squares))
    return hashlib.sha256(repr(summary).encode()).hexdigest()[:16]


def view_key(frame, image_size: int, bottom, augmentation=None, seed: int = 0) -> dict:
    """What a stored view depends on (see the module's docstring), as a JSON-able dict."""
    paths = frame["decode_path" if "decode_path" in frame else "path"].astype(str)
    stats = [(path, Path(path).stat()) for path in paths]
    listing = "\n".join(f"{path}:{stat.st_size}:{stat.st_mtime_ns}" for path, stat in stats)
    files = hashlib.sha256(listing.encode()).hexdigest()[:16]
    model = _fingerprint(bottom) if bottom is not None else "pixels"
    key = {"model": model, "files": files, "n": len(frame), "image_size": int(image_size)}
    config = augmentation.get_config() if augmentation is not None else None
    config = json.dumps(config, sort_keys=True, default=str)
    return {**key, "augmentation": config, "seed": int(seed)}


def _load(path: Path, key: dict) -> np.ndarray | None:
    key_path = path.with_suffix(".json")
    if path.exists() and key_path.exists():
        stored = json.loads(key_path.read_text())
        if {k: stored.get(k) for k in key} == key:
            return np.load(path)
    return None


def _save(path: Path, array: np.ndarray, key: dict, start: float) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    seconds = time.perf_counter() - start
    path.with_suffix(".json").write_text(json.dumps({**key, "seconds": seconds}))
    return array


def frozen(
    run_dir,
    view: str,
    frame,
    classes,
    image_size: int,
    bottom,
    top=None,
    augmentation=None,
    seed: int = 0,
    batch_size: int = 32,
) -> np.ndarray:
    """The ``bottom``'s outputs (float16 where they fit; None: the pixels) for the rows of
    ``frame``, stored in ``<run_dir>/features/<bottom>.<view>.npy``; with ``top``, its pooled
    outputs on them; ``augmentation`` (seeded, ``training=True``) applies to each batch first."""
    import keras

    key = view_key(frame, image_size, bottom, augmentation, seed)
    path = Path(run_dir) / "features" / f"{bottom.name if bottom else 'pixels'}.{view}.npy"
    if top is not None:
        pooled_key = {**key, "top": _fingerprint(top)}
        pooled_path = path.with_suffix(".pooled.npy")
        if (found := _load(pooled_path, pooled_key)) is not None:
            return found
        acts = frozen(run_dir, view, frame, classes, image_size, bottom, None, augmentation, seed)
        start = time.perf_counter()  # The pooling's own time: the activations have theirs.
        return _save(pooled_path, pooled(top, acts), pooled_key, start)
    if (found := _load(path, key)) is not None:
        return found
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    options = {"cache": False, "label_mode": "int", "augment": augmentation}
    images = dataset.make_dataset(frame, classes, image_size, batch_size, **options)
    images = images.map(lambda x, _: x)
    if bottom is None:
        out = np.concatenate(list(images.as_numpy_iterator())).astype(np.float16)
    else:
        out = bottom.predict(images, verbose=0)
        # Half the memory in float16, unless values exceed its range (random weights can).
        out = out.astype(np.float16) if np.abs(out).max() < 6e4 else out
    return _save(path, out, key, start)


def seconds(run_dir, views=None) -> float:
    """Seconds spent computing the run's stored views (all, or those named in ``views``)."""
    keys = (Path(run_dir) / "features").glob("*.json")
    chosen = [p for p in keys if views is None or p.name.split(".")[1] in views]
    return float(sum(json.loads(p.read_text()).get("seconds", 0.0) for p in chosen))


def cycle(copies, labels, batch_size: int, seed: int = 0):
    """``(dataset, steps_per_epoch)``: epoch e trains on ``copies[e % len(copies)]``, shuffled."""
    import tensorflow as tf

    stacked = tf.constant(np.stack([np.asarray(c, np.float32) for c in copies]))
    labels = tf.constant(labels)

    def epoch(k):
        one = tf.data.Dataset.from_tensor_slices((tf.gather(stacked, k), labels))
        return one.shuffle(int(labels.shape[0]), seed=seed).batch(batch_size)

    ds = tf.data.Dataset.range(len(copies)).repeat().flat_map(epoch)
    return ds.prefetch(tf.data.AUTOTUNE), -(-int(labels.shape[0]) // batch_size)


def pooled(top, activations: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Global-average-pooled outputs of the frozen ``top`` on stored activations (float32)."""
    outputs = top.predict(activations.astype(np.float32), batch_size=batch_size, verbose=0)
    return outputs.mean(axis=(1, 2))
