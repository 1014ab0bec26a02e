"""Categorical values as integer codes of a bundle's vocabulary: one implementation for
``decode`` (the daemon) and ``frame_to_readings`` (files), so ``serve`` and ``score`` code alike.

A vocabulary is capped: the ``max_categories`` most frequent values of the training file that
occur at least ``min_count`` times. Every other value, and any value first seen while serving,
maps to the last code, the *other* bucket: never a crash, never a dead letter (the daemon
counts them in ``streamae_unseen_categories_total``). So a high-cardinality column (a
merchant id) costs at most ``max_categories + 1`` one-hot columns, never one per value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

OTHER = "(other)"  # the name of the last bucket in feature names ("country=(other)")
MAX_CATEGORY_CHARS = 256  # longest categorical value a message may carry


def vocabulary(values: pd.Series, max_categories: int, min_count: int) -> list[str]:
    """The most frequent values (as text) of ``values``, most frequent first (ties by name),
    at most ``max_categories``, each seen at least ``min_count`` times."""
    counts = as_text(values).value_counts()
    counts = counts[counts >= min_count]
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [str(v) for v, _ in ordered[:max_categories]]


def as_text(values: pd.Series | Sequence[object] | np.ndarray) -> pd.Series:
    """Values as a categorical field reads them: text as is, booleans as ``true``/``false``,
    a missing value as the empty string."""
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    if pd.api.types.is_bool_dtype(series):
        return series.map({True: "true", False: "false"}).astype(object)
    out = series.astype(object).where(series.notna(), "")
    # one C-speed type scan; only a column that is not all text is mapped value by value
    return out if pd.api.types.infer_dtype(out, skipna=False) == "string" else out.map(_text)


def _text(value: object) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def codes(
    values: pd.Series | Sequence[object] | np.ndarray, vocab: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``(n,)`` int32 of ``values`` in ``vocab`` (``len(vocab)``: other), and the mask
    of values not in it."""
    index = pd.Index(list(vocab), dtype=object)
    found = index.get_indexer(as_text(values).to_numpy(dtype=object))
    unseen = found < 0
    found[unseen] = len(vocab)
    return found.astype(np.int32), unseen


def names(vocab: Sequence[str], codes_: np.ndarray) -> list[str]:
    """The values the codes stand for (:data:`OTHER` for the other bucket)."""
    labels = [*vocab, OTHER]
    return [labels[int(c)] for c in np.asarray(codes_).ravel().tolist()]


def message_codes(
    values: Sequence[object], vocab: Sequence[str], name: str
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """:func:`codes` of one field's values in messages, and the positions of those refused,
    with the reason: a value must be text of at most :data:`MAX_CATEGORY_CHARS` characters,
    a boolean (``true``/``false``) or null (the empty value)."""
    series = pd.Series(values, dtype=object)
    if pd.api.types.infer_dtype(series, skipna=False) == "string":  # the C-speed common case
        odd = np.flatnonzero(series.str.len().to_numpy() > MAX_CATEGORY_CHARS)
    else:  # the slow path: value by value
        odd = np.flatnonzero(~series.map(_is_category).to_numpy(dtype=bool))
    refused = {r: _refusal(series[r], name) for r in odd.tolist()}
    found, unseen = codes(series.where(~series.index.isin(odd), ""), vocab)
    return found, unseen, refused


def _is_category(value: object) -> bool:
    return value is None or type(value) is bool or (type(value) is str and len(value) <= MAX_CATEGORY_CHARS)


def _refusal(value: object, name: str) -> str:
    if type(value) is str:
        return f"value of '{name}' is {len(value)} characters; the limit is {MAX_CATEGORY_CHARS}"
    return f"value of '{name}' must be text, got {type(value).__name__}"
