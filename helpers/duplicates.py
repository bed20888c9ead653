"""Exact (same SHA-256) and near (close perceptual hash) duplicates, clustered transitively."""

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

#: dHash Hamming distance (bits of 64) at or below which two images are near duplicates.
DEFAULT_MAX_DISTANCE = 4


def perceptual_hash(image: Image.Image) -> str:
    """The image's 64-bit difference hash as 16 hex digits (``imagehash.dhash``)."""
    return str(imagehash.dhash(image))


def components(n: int, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected-component id of each of ``n`` nodes joined by ``(i, j)`` index arrays."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    a = np.concatenate([np.arange(n), *(p[0] for p in pairs)]).astype(np.int64)
    b = np.concatenate([np.arange(n), *(p[1] for p in pairs)]).astype(np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def same_value_pairs(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(row, first row with the same value)`` over the non-missing ``values``."""
    codes = pd.factorize(values)[0]  # -1 for missing values.
    rows = np.flatnonzero(codes >= 0)
    first = pd.Series(rows).groupby(codes[rows]).transform("first").to_numpy()
    return rows, first


def near_pairs(hashes: list[str], max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of hashes within ``max_distance`` bits, but near-constant ones (flat images)."""
    bits = np.array([imagehash.hex_to_hash(h).hash.ravel() for h in hashes], dtype=bool)
    ones = bits.sum(axis=1)
    useful = np.flatnonzero((ones > max_distance) & (ones < bits.shape[1] - max_distance))
    if max_distance < 0 or len(useful) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    search = NearestNeighbors(metric="hamming").fit(bits[useful])
    radius = (max_distance + 0.5) / bits.shape[1]  # sklearn's Hamming is a share of the bits.
    graph = search.radius_neighbors_graph(bits[useful], radius=radius).tocoo()
    return useful[graph.row], useful[graph.col]


def find_duplicates(df: pd.DataFrame, max_distance: int = DEFAULT_MAX_DISTANCE) -> pd.DataFrame:
    """``df`` with ``dup_cluster`` (-1: no hash), ``dup_size``, ``dup_kind``: same ``sha256``, or
    ``dhash`` within ``max_distance`` bits (negative: exact only), transitively."""
    if missing := [c for c in ("sha256", "dhash") if c not in df.columns]:
        raise ValueError(f"find_duplicates needs the columns {missing} (from checks.scan()).")
    out = df.copy()
    out["dup_cluster"], out["dup_size"], out["dup_kind"] = -1, 0, ""
    idx = np.flatnonzero(out["dhash"].notna().to_numpy())
    if not len(idx):
        return out
    sub = out.iloc[idx]
    shas = sub["sha256"].astype(str).reset_index(drop=True)
    pairs = [same_value_pairs(shas), near_pairs(list(sub["dhash"]), max_distance)]
    ids = pd.factorize(components(len(idx), pairs))[0]  # Renumbered in row order.
    size = np.bincount(ids)[ids]
    distinct = shas.groupby(ids).transform("nunique").to_numpy()
    kind = np.where(distinct == size, "near", np.where(distinct == 1, "exact", "exact+near"))
    columns = [out.columns.get_loc(c) for c in ("dup_cluster", "dup_size", "dup_kind")]
    out.iloc[idx, columns[0]] = ids
    out.iloc[idx, columns[1]] = size
    out.iloc[idx, columns[2]] = np.where(size > 1, kind, "")
    return out


def _multi_label(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows of ``df`` whose ``key`` value is shared by rows of several labels."""
    return df[df.groupby(key)["label"].transform("nunique") > 1] if len(df) else df


def label_conflicts(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs ``(relpath_a, relpath_b)`` of identical decoded files filed in two classes."""
    sub = _multi_label(df[df["dhash"].notna()], "sha256")
    pairs = sub.merge(sub, on="sha256")
    pairs = pairs[pairs["label_x"] < pairs["label_y"]][["relpath_x", "relpath_y"]]
    return sorted({tuple(sorted(pair)) for pair in pairs.to_numpy()})


def drop_conflicts(files: pd.DataFrame) -> pd.DataFrame:
    """Mark every file of a cross-class exact-duplicate group unusable, naming the others."""
    out = files.copy()
    sub = _multi_label(out[out["dhash"].notna() & (out["status"] == "ok")], "sha256")
    for i, row in sub.iterrows():
        others = sub[(sub["sha256"] == row["sha256"]) & (sub["label"] != row["label"])]
        where = ", ".join(f"{r} (class {c!r})" for r, c in others[["relpath", "label"]].values)
        out.loc[i, "reason"] = f"label conflict: identical to {where}"
    out.loc[sub.index, ["status", "decode_path", "normalised"]] = ["bad", None, False]
    return out


def cross_class_clusters(files: pd.DataFrame) -> list[list[str]]:
    """Relpaths of duplicate clusters (among usable files) that span several classes."""
    ok = _multi_label(files[(files["status"] == "ok") & (files["dup_size"] > 1)], "dup_cluster")
    return [list(grp["relpath"]) for _, grp in ok.groupby("dup_cluster")]
