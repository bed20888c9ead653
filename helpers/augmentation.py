"""What notebook 02 measures around the augmentation it writes: the need for it, its speed."""

import time
from collections.abc import Mapping

from helpers.balance import AUGMENTATION_LIMITS


def augmentation_need(per_class_counts: Mapping[str, int]) -> dict:
    """How much the sheet says augmentation matters, from the smallest class (and a sentence)."""
    if not per_class_counts or min(per_class_counts.values()) < 0:
        raise ValueError(f"per_class_counts={per_class_counts} must map classes to counts >= 0.")
    smallest_class = min(per_class_counts, key=lambda label: int(per_class_counts[label]))
    smallest, (low, high) = int(per_class_counts[smallest_class]), AUGMENTATION_LIMITS
    if smallest < low:
        level, why = "indispensable", f"fewer than {low:,} images per class"
    elif smallest <= high:
        level, why = "recommended", f"between {low:,} and {high:,} images per class"
    else:
        level, why = "useful but less critical", f"more than {high:,} images per class"
    sentence = (
        f"The smallest class ({smallest_class!r}) has {smallest:,} images: {why}, so the "
        f"course sheet rates data augmentation as {level}."
    )
    out = {"smallest_class": smallest_class, "smallest_count": smallest, "level": level}
    return {**out, "sentence": sentence}


def augmentation_throughput(ds, augmentation_layers, batches: int = 10) -> float:
    """Images per second through ``augmentation_layers`` alone (decoding, tracing not timed)."""
    import tensorflow as tf

    if batches < 1:
        raise ValueError(f"batches={batches} must be >= 1.")
    source = ds.take(batches + 1).cache()
    for _ in source:  # Fill the cache so that only the augmentation is timed below.
        pass
    augment = lambda x, y: (augmentation_layers(x, training=True), y)  # noqa: E731
    iterator = iter(source.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))
    next(iterator)
    count, start = 0, time.perf_counter()
    for images, _ in iterator:
        count += int(images.shape[0])
    if count == 0:
        raise ValueError(f"ds has fewer than 2 batches; cannot time {batches} batches.")
    return count / (time.perf_counter() - start)
