"""The course sheet's dataset-size rules per class, and rebalancing by over- or under-sampling.

Class weights are no helper: notebook 01 computes them with scikit-learn's
``compute_class_weight("balanced", ...)``, the sheet's code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The sheet's section "How many images do you need?", per class: (minimum, ideal) ranges.
BINARY_RULES = ((500, 1_000), (2_000, 5_000))  # Binary task, transfer learning.
MULTICLASS_RULES = ((200, 500), (1_000, None))  # Three classes or more, transfer learning.
SCRATCH_MINIMUM, SCRATCH_IDEAL = 10_000, 50_000  # Training from scratch, for comparison.
# Section "Data augmentation": indispensable below 2 000, recommended up to 10 000.
AUGMENTATION_LIMITS = (2_000, 10_000)
CHECKLIST_AUGMENT_BELOW = 5_000  # The pre-training checklist: augmentation on below this.


def _range(bounds: tuple[int, int | None]) -> str:
    return f"{bounds[0]:,}+" if bounds[1] is None else f"{bounds[0]:,}–{bounds[1]:,}"


def size_rules(counts: dict[str, int], n_classes: int | None = None) -> pd.DataFrame:
    """The sheet's dataset-size rules for each class's image count (transfer learning).

    Args:
        counts: ``{class: images}``.
        n_classes: Classes of the task (default ``len(counts)``): 2 or fewer is binary.

    Returns:
        One row per class: ``label, count, task, minimum, ideal, min_required,
        ideal_required, status`` ("below minimum", "minimum met", "ideal met"),
        ``augmentation`` (the sheet's advice), ``checklist_augment`` and ``from_scratch``.
    """
    k = len(counts) if n_classes is None else int(n_classes)
    minimum, ideal = BINARY_RULES if k <= 2 else MULTICLASS_RULES
    n = np.array([int(v) for v in counts.values()])
    scratch = ["enough even from scratch (ideal 50,000+ met)",
               "from-scratch minimum 10,000+ met (ideal 50,000+)",
               "too few to train from scratch (10,000+ needed, 50,000+ ideal)"]  # fmt: skip
    return pd.DataFrame({
        "label": list(counts), "count": n, "task": "binary" if k <= 2 else f"{k} classes",
        "minimum": _range(minimum), "ideal": _range(ideal),
        "min_required": minimum[0], "ideal_required": ideal[0],
        "status": np.select([n < minimum[0], n < ideal[0]], ["below minimum", "minimum met"],
                            "ideal met"),
        "augmentation": np.select([n < AUGMENTATION_LIMITS[0], n <= AUGMENTATION_LIMITS[1]],
                                  ["indispensable", "recommended"], "useful but less critical"),
        "checklist_augment": n < CHECKLIST_AUGMENT_BELOW,
        "from_scratch": np.select([n >= SCRATCH_IDEAL, n >= SCRATCH_MINIMUM], scratch[:2],
                                  scratch[2]),
    })  # fmt: skip


def _train_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows to rebalance, rows kept as they are)``: only train rows when there is a split."""
    is_train = df["split"] == "train" if "split" in df else pd.Series(True, index=df.index)
    return df[is_train], df[~is_train]


def undersample(df: pd.DataFrame, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Keep a random minority-sized share of every class (train rows only if split).

    Returns:
        The kept rows (class order, then original order), then the val/test rows unchanged.
    """
    part, rest = _train_rows(df)
    if part.empty:
        return df.copy()
    n_min = int(part[label_col].value_counts().min())
    rng = np.random.default_rng(seed)
    pick = [np.sort(rng.choice(len(g), n_min, replace=False)) for _, g in part.groupby(label_col)]
    keep = [g.iloc[i] for (_, g), i in zip(part.groupby(label_col), pick, strict=True)]
    return pd.concat([*keep, rest]).reset_index(drop=True)


def oversample(df: pd.DataFrame, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Repeat minority rows up to the majority count (train rows only if split).

    Whole copies first, then a random remainder, so every image is repeated as evenly as
    possible. Use it with augmentation, else the copies are identical.

    Returns:
        The rebalanced rows with an ``oversampled`` column (True for the added copies).
    """
    part, rest = _train_rows(df)
    n_max = int(part[label_col].value_counts().max()) if len(part) else 0
    rng = np.random.default_rng(seed)
    pieces = [part.assign(oversampled=False).sort_values(label_col, kind="stable")]
    for _, grp in part.groupby(label_col):
        reps, remainder = divmod(n_max - len(grp), len(grp))
        extra = np.sort(rng.choice(len(grp), remainder, replace=False))
        idx = np.concatenate([np.tile(np.arange(len(grp)), reps), extra])
        pieces.append(grp.iloc[idx].assign(oversampled=True))
    return pd.concat([*pieces, rest.assign(oversampled=False)]).reset_index(drop=True)
