"""The ``tf.data`` input pipeline (of files ``checks.scan`` validated), manifest, class counts."""

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ["relpath", "sha256", "label", "group", "split", "dup_cluster", "decode_path"]
_MANIFEST_REQUIRED = ["relpath", "sha256", "label", "split"]


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the split manifest CSV (:data:`MANIFEST_COLUMNS`, sorted by relpath)."""
    out = pd.DataFrame({c: df[c] if c in df else "" for c in MANIFEST_COLUMNS})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.sort_values("relpath").to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
    return Path(path)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest` (every column as text)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest {path} does not exist: run notebook 01 to write it.")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if missing := [c for c in _MANIFEST_REQUIRED if c not in df]:
        raise ValueError(f"manifest {path} lacks the columns {missing}: write it again (01).")
    bad = df.loc[~df["split"].isin(SPLITS), "split"]
    if len(bad):
        raise ValueError(f"manifest {path} row {bad.index[0] + 2}: split {bad.iloc[0]!r} unknown.")
    return df


def class_counts(df: pd.DataFrame, split: str | None = None, label_col: str = "label") -> dict:
    """Images per class (sorted by name), usable rows only, of one split or all."""
    sub = df[df["status"] == "ok"] if "status" in df else df
    if split is not None:
        if "split" not in sub:
            raise ValueError("class_counts(split=...) needs a 'split' column (make_split).")
        sub = sub[sub["split"] == split]
    return {str(k): int(v) for k, v in sorted(sub[label_col].value_counts().items())}


def imbalance_ratio(counts: dict[str, int]) -> float:
    """Majority over minority count (``inf`` if a class is empty, 1.0 for no class)."""
    values = [int(v) for v in counts.values()] or [1]
    return float("inf") if min(values) == 0 else max(values) / min(values)


def make_dataset(
    df: pd.DataFrame,
    classes: Sequence[str],
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = True,
    augment: Callable | None = None,
    label_mode: str = "binary",
) -> "tf.data.Dataset":
    """Batches of ``(images, labels)`` from the ``decode_path`` (or ``path``) column: float32 in
    0–255 (the backbones rescale), cached, ``augment`` after batching (``training=True``); a
    label is its class's index in ``classes`` ("binary": float32 (B, 1), "categorical", "int")."""
    import tensorflow as tf

    classes = list(classes)
    size = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    labels = _labels(df, classes, label_mode)
    if len(size) != 2 or min(size) <= 0 or batch_size <= 0:
        raise ValueError(f"image_size {image_size!r} and batch_size {batch_size} must be > 0.")
    paths = df["decode_path" if "decode_path" in df else "path"].astype(str).tolist()

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        return tf.clip_by_value(image, 0.0, 255.0), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache() if cache else ds
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        from keras.layers import Layer

        fn = (lambda x: augment(x, training=True)) if isinstance(augment, Layer) else augment
        ds = ds.map(lambda x, y: (fn(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _labels(df: pd.DataFrame, classes: list[str], label_mode: str) -> np.ndarray:
    """The label array of ``df`` for ``label_mode``, after checking the rows and classes."""
    if label_mode not in ("binary", "categorical", "int"):
        raise ValueError(f"label_mode {label_mode!r} is not 'binary', 'categorical' or 'int'.")
    if label_mode == "binary" and len(classes) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, got {classes}.")
    if len(df) == 0 or ("status" in df and (df["status"] != "ok").any()):
        raise ValueError("make_dataset needs usable rows (status 'ok'): pass scan.good or a split.")
    if unknown := sorted(set(df["label"]) - set(classes)):
        raise ValueError(f"labels {unknown} are not in classes {classes}.")
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int32)
    if label_mode == "binary":
        return y.astype(np.float32)[:, None]
    return np.eye(len(classes), dtype=np.float32)[y] if label_mode == "categorical" else y


def dataset_arrays(ds: "tf.data.Dataset") -> tuple[np.ndarray, np.ndarray]:
    """A (small) dataset as numpy ``(x, y)``, batched or not."""
    pairs = list(ds.as_numpy_iterator())
    if not pairs:
        return np.zeros((0,)), np.zeros((0,))
    join = np.concatenate if ds.element_spec[0].shape.rank == 4 else np.stack
    return join([x for x, _ in pairs]), join([y for _, y in pairs])
