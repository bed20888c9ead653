"""The sheet's dataset-size rules per class; over- and under-sampling (class weights: in 01)."""

import numpy as np
import pandas as pd

# The sheet's section "How many images do you need?", per class: (minimum, ideal) ranges.
BINARY_RULES = ((500, 1_000), (2_000, 5_000))  # Binary task, transfer learning.
MULTICLASS_RULES = ((200, 500), (1_000, None))  # Three classes or more, transfer learning.
SCRATCH_LIMITS = (10_000, 50_000)  # Training from scratch: minimum, ideal.
AUGMENTATION_LIMITS = (2_000, 10_000)  # Augmentation indispensable below, recommended up to.
CHECKLIST_AUGMENT_BELOW = 5_000  # The pre-training checklist: augmentation on below this.
SCRATCH_TEXT = "too few to train from scratch (10,000+ needed, 50,000+ ideal)"
SCRATCH_TEXT = (SCRATCH_TEXT, "from-scratch minimum 10,000+ met", "enough even from scratch")


def _range(bounds: tuple[int, int | None]) -> str:
    return f"{bounds[0]:,}+" if bounds[1] is None else f"{bounds[0]:,}–{bounds[1]:,}"


def size_rules(counts: dict[str, int], n_classes: int | None = None) -> pd.DataFrame:
    """The sheet's dataset-size rules, a row per class of ``counts``, for ``n_classes`` classes."""
    k = len(counts) if n_classes is None else int(n_classes)
    minimum, ideal = BINARY_RULES if k <= 2 else MULTICLASS_RULES
    table = pd.DataFrame({"label": list(counts), "count": [int(v) for v in counts.values()]})

    def band(edges: tuple, labels: tuple) -> pd.Series:  # Lower edges included.
        return pd.cut(table["count"], [-np.inf, *edges, np.inf], right=False, labels=labels)

    table["task"] = "binary" if k <= 2 else f"{k} classes"
    table["minimum"], table["ideal"] = _range(minimum), _range(ideal)
    table["min_required"], table["ideal_required"] = minimum[0], ideal[0]
    table["status"] = band((minimum[0], ideal[0]), ("below minimum", "minimum met", "ideal met"))
    advice = ("indispensable", "recommended", "useful but less critical")
    table["augmentation"] = band((AUGMENTATION_LIMITS[0], AUGMENTATION_LIMITS[1] + 1), advice)
    table["checklist_augment"] = table["count"] < CHECKLIST_AUGMENT_BELOW
    table["from_scratch"] = band(SCRATCH_LIMITS, SCRATCH_TEXT)
    return table.astype({"status": str, "augmentation": str, "from_scratch": str})


def _train_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows to rebalance, rows kept as they are)``: only train rows when there is a split."""
    is_train = df["split"] == "train" if "split" in df else pd.Series(True, index=df.index)
    return df[is_train], df[~is_train]


def undersample(df: pd.DataFrame, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Keep as many random rows of every class as the smallest has (train rows only if split)."""
    part, rest = _train_rows(df)
    n_min = int(part[label_col].value_counts().min()) if len(part) else 0
    keep = part.groupby(label_col).sample(n_min, random_state=seed).sort_index()
    return pd.concat([keep, rest]).reset_index(drop=True)


def oversample(df: pd.DataFrame, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Repeat minority rows up to the majority count (train rows only if split), as evenly as
    possible; added copies have ``oversampled`` True (use augmentation, or they are identical)."""
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
