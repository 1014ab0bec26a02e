"""Positions of rows within their groups, vectorised: windows, post-processing and streaming
normalisation all handle many keys per batch and need each row's rank within its key."""

from __future__ import annotations

import numpy as np


def group_ranks(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For consecutive groups of ``sizes``: the group of each element and its rank in it."""
    group = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.cumsum(sizes) - sizes
    return group, np.arange(int(sizes.sum())) - starts[group]


def positions(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each row within its (contiguous) group, and the first row of each group."""
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return group_ranks(np.diff(np.r_[first, len(group)]))[1], first


def ranks(codes: np.ndarray) -> np.ndarray:
    """Each row's position among the rows of its code (rows in stream order, codes unsorted)."""
    order = np.argsort(codes, kind="stable")
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = positions(codes[order])[0]
    return rank
