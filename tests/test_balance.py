"""Tests of helpers.balance: the course sheet's size rules and rebalancing."""

from __future__ import annotations

import pytest
from fixtures.images import synthetic

from helpers import balance, splits
from helpers import dataset as D


@pytest.mark.parametrize(
    ("count", "status", "augmentation"),
    [
        (499, "below minimum", "indispensable"),
        (500, "minimum met", "indispensable"),
        (1000, "minimum met", "indispensable"),
        (1999, "minimum met", "indispensable"),
        (2000, "ideal met", "recommended"),
        (10000, "ideal met", "recommended"),
        (10001, "ideal met", "useful but less critical"),
    ],
)
def test_size_rules_binary(count, status, augmentation):
    rules = balance.size_rules({"fake": count, "real": 2000}).set_index("label")
    assert rules.loc["fake", "status"] == status
    assert rules.loc["fake", "augmentation"] == augmentation
    assert rules.loc["fake", "task"] == "binary" and rules.loc["fake", "min_required"] == 500
    assert rules.loc["fake", "ideal"] == "2,000–5,000"


@pytest.mark.parametrize(
    ("count", "status"),
    [
        (199, "below minimum"),
        (200, "minimum met"),
        (499, "minimum met"),
        (500, "minimum met"),
        (999, "minimum met"),
        (1000, "ideal met"),
    ],
)
def test_size_rules_multiclass(count, status):
    rules = balance.size_rules({"a": count, "b": 1000, "c": 1000}).set_index("label")
    assert rules.loc["a", "status"] == status and rules.loc["a", "task"] == "3 classes"


def test_size_rules_checklist_and_scratch():
    rules = balance.size_rules({"a": 4999, "b": 5000, "c": 10_000, "d": 50_000}, n_classes=2)
    assert rules["checklist_augment"].tolist() == [True, False, False, False]
    assert rules["from_scratch"].str.startswith("too few").tolist() == [True, True, False, False]
    assert balance.CHECKLIST_AUGMENT_BELOW == 5000


def test_undersample_oversample():
    df = synthetic(30, 7)
    under = balance.undersample(df, seed=0)
    assert D.class_counts(under) == {"a": 7, "b": 7}
    over = balance.oversample(df, seed=0)
    assert D.class_counts(over) == {"a": 30, "b": 30}
    b = over[over["label"] == "b"]["relpath"].value_counts()
    assert b.max() - b.min() <= 1 and over["oversampled"].sum() == 23
    assert balance.undersample(df, seed=0).equals(under)
    split = splits.make_split(synthetic(60, 20), ratios=(0.7, 0.15, 0.15))
    over = balance.oversample(split)
    assert D.class_counts(over, split="train") == {"a": 42, "b": 42}
    assert D.class_counts(over, split="test") == D.class_counts(split, split="test")
    under = balance.undersample(split)
    assert D.class_counts(under, split="train") == {"a": 14, "b": 14}
    assert len(under[under["split"] != "train"]) == len(split[split["split"] != "train"])
