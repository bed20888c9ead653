"""Train/val/test split: stratified, group-aware, seeded, and stable through a manifest."""

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.dataset import SPLITS, read_manifest, write_manifest
from helpers.duplicates import components, same_value_pairs

#: The course sheet's recommended shares (section "Train / validation / test split").
RECOMMENDED_RATIOS = {"train": (0.70, 0.80), "val": (0.10, 0.15), "test": (0.10, 0.15)}


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` ratios; warn outside the course sheet's ranges."""
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or not all(x > 0 for x in r):
        raise ValueError(f"ratios must be three numbers > 0 (train, val, test), got {ratios!r}.")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {ratios!r}; e.g. (0.7, 0.15, 0.15).")
    for name, x in zip(SPLITS, r, strict=True):
        lo, hi = RECOMMENDED_RATIOS[name]
        if not lo - 1e-9 <= x <= hi + 1e-9:
            message = f"{name} ratio {x:g} is outside the course sheet's {lo:g}–{hi:g}."
            warnings.warn(message, stacklevel=3)
    return r


def _key(df: pd.DataFrame, col: str) -> pd.Series:
    """``df[col]`` as text, missing where it joins nothing ("" or duplicate cluster -1)."""
    values = df[col].astype("string")
    return values.mask(values.isin(["", "-1"] if col == "dup_cluster" else [""]))


def split_units(df: pd.DataFrame, group_col: str | None = "group") -> np.ndarray:
    """Unit id per row: files sharing a sha256, a duplicate cluster or a group are one unit."""
    cols = [c for c in ("sha256", "dup_cluster", group_col) if c and c in df]
    return components(len(df), [same_value_pairs(_key(df, c)) for c in cols])


def make_split(
    df: pd.DataFrame, ratios=(0.72, 0.14, 0.14), seed=0, group_col="group", manifest_path=None
) -> pd.DataFrame:
    """Assign each usable file to train/val/test, a unit (:func:`split_units`) whole: files of
    the manifest keep their split, new ones join their unit's or are split at ``ratios``. The
    usable rows with ``split``, ``split_unit``, ``split_origin`` and ``attrs["split_notes"]``
    (also warned: a class missing from val or test, a share outside the sheet's range)."""
    r = check_ratios(ratios)
    if missing := [c for c in ("relpath", "label") if c not in df]:
        raise ValueError(f"make_split needs the columns {missing}; got {list(df.columns)}.")
    out = df[df["status"] == "ok"] if "status" in df else df
    out = out.sort_values("relpath").reset_index(drop=True)
    if out["relpath"].duplicated().any():
        first = out.loc[out["relpath"].duplicated(), "relpath"].iloc[0]
        raise ValueError(f"relpath {first!r} appears twice; each file must have one row.")
    out["split_unit"], out["split"], out["split_origin"] = split_units(out, group_col), "", "new"
    manifest = Path(manifest_path) if manifest_path is not None else None
    notes = _reuse_manifest(out, manifest) if manifest and manifest.is_file() else []
    # A new file whose unit already has a split (from the manifest) joins it.
    known = out[out["split"] != ""].groupby("split_unit")["split"].agg(lambda s: s.mode()[0])
    join = (out["split"] == "") & out["split_unit"].isin(known.index)
    out.loc[join, "split"] = out.loc[join, "split_unit"].map(known)
    out.loc[join, "split_origin"] = "unit"
    new = out["split"] == ""
    units = out[new].groupby("split_unit").agg(label=("label", "first"), size=("label", "size"))
    out.loc[new, "split"] = out.loc[new, "split_unit"].map(_assign_units(units, r, seed))
    table = pd.crosstab(out["label"], out["split"]).reindex(columns=SPLITS, fill_value=0)
    for label, s in zip(*np.nonzero(table[["val", "test"]].to_numpy() == 0), strict=True):
        notes.append(f"class {table.index[label]!r} has no image in {('val', 'test')[s]}.")
        warnings.warn(f"make_split: {notes[-1]} Add images or groups.", stacklevel=2)
    for name, x, share in zip(SPLITS, r, table.sum() / max(len(out), 1), strict=True):
        lo, hi = RECOMMENDED_RATIOS[name][0] - 1e-9, RECOMMENDED_RATIOS[name][1] + 1e-9
        if lo <= x <= hi and not lo <= share <= hi:
            notes.append(f"the {name} split holds {share:.1%} of the images, outside the sheet's "
                         f"{lo:.0%}-{hi:.0%} (ratio {x:g}; its units are too large).")  # fmt: skip
            fix = "Use more/smaller groups or other ratios."
            warnings.warn(f"make_split: {notes[-1]} {fix}", stacklevel=2)
    out.attrs["split_notes"] = notes
    if manifest is not None:
        write_manifest(out, manifest)
    return out


def _assign_units(units: pd.DataFrame, r: tuple, seed: int) -> pd.Series:
    """Split of each unit (``label``, ``size``): per label, seeded, units join test or val (the one
    further from its target first) while they fit; then each takes the train unit nearest it."""
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=units.index)
    for _, part in units.groupby("label", sort=True):
        sizes = part["size"].iloc[rng.permutation(len(part))]
        target = {"test": r[2] * sizes.sum(), "val": r[1] * sizes.sum()}
        count = dict.fromkeys(target, 0)
        for unit, size in sizes.items():
            fits = [s for s in target if count[s] + size <= target[s]]
            if fits:
                name = min(fits, key=lambda s: count[s] - target[s])
                split[unit], count[name] = name, count[name] + size
        for name in target:
            miss = (count[name] + sizes[split[sizes.index] == "train"] - target[name]).abs()
            if len(miss) and miss.min() < target[name] - count[name]:
                split[miss.idxmin()], count[name] = name, count[name] + sizes[miss.idxmin()]
    return split


def _reuse_manifest(out: pd.DataFrame, manifest: Path) -> list[str]:
    """Give the files listed in ``manifest`` (same relpath and sha256) their old split."""
    if "sha256" not in out:
        raise ValueError("make_split needs a 'sha256' column to reuse a manifest.")
    old = read_manifest(manifest)
    old_split = pd.Series(old["split"].to_numpy(), index=old["relpath"] + "\0" + old["sha256"])
    key = out["relpath"] + "\0" + out["sha256"].astype(str)
    kept = key.isin(old_split.index)
    out.loc[kept, "split"] = key[kept].map(old_split)
    out.loc[kept, "split_origin"] = "manifest"
    notes = [f"{kept.sum()} of {len(out)} file(s) kept their split from {manifest.name}."]
    if changed := out.loc[~kept & out["relpath"].isin(old["relpath"]), "relpath"].tolist():
        notes.append(f"{len(changed)} changed file(s) treated as new, e.g. {changed[0]}.")
    if gone := sorted(set(old["relpath"]) - set(out["relpath"])):
        notes.append(f"{len(gone)} file(s) of the manifest are gone and dropped, e.g. {gone[0]}.")
        warnings.warn(f"make_split: {notes[-1]}", stacklevel=3)
    return notes


def check_no_leakage(df: pd.DataFrame) -> list[str]:
    """Problems where one sha256, duplicate cluster or group is in two splits (empty: none)."""
    if "split" not in df:
        raise ValueError("check_no_leakage needs a 'split' column (run make_split first).")
    problems = []
    for col in [c for c in ("sha256", "dup_cluster", "group") if c in df]:
        key = _key(df, col)
        n_splits = df.groupby(key)["split"].nunique()
        for value in n_splits[n_splits > 1].index:
            rows = df[key == value]
            where, files = ", ".join(sorted(rows["split"].unique())), ", ".join(rows["relpath"][:3])
            problems.append(f"{col} {str(value)[:12]} is in {where}: {files}")
    return problems
