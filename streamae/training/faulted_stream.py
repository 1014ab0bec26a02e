"""The faulted validation stream that label-free selection judges candidates on.

The validation readings of every key, several times over, each copy with its own synthetic
faults (:mod:`streamae.training.faults`, a fixed seed) and labelled where they lie; which
windows of it are judged, and why some are not: ``selection``'s module docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.core.categories import names
from streamae.core.encoding import Encoding
from streamae.core.offline import frame_windows
from streamae.core.readings import DataError, Readings
from streamae.core.windows import Windows
from streamae.training import faults

log = logging.getLogger(__name__)

REPLICAS = 8  # independent fault placements of the validation readings (at least)
MIN_FAULTS = 64  # ...and more copies while fewer faults than this fit in all of them
ROWS_PER_FAULT = 200  # faults per key and replica: validation readings / this (at least 1)
MIN_EVAL_ROWS = 20  # validation readings per copy (on average), at least, to judge a candidate
FEW_EVAL_ROWS = 200  # ...below this many, the choice is uncertain and a warning says so
MIN_MARGIN = 10  # normal readings between two faults (at least; else the longest window)
FAULT_SEED = 8  # mixed with the training seed: the faults are the same for every candidate


@dataclass(frozen=True)
class FaultedStream:
    """The validation readings of every key with injected faults, ``replicas`` times over
    (each copy its own key), each preceded by the clean readings before it so that every
    validation reading ends a complete window."""

    frame: pd.DataFrame  # timestamp, key ("<key>#<replica>"), features
    labels: np.ndarray  # per row: 1 inside an injected fault
    judged: np.ndarray  # per row: a validation reading (not context)
    clean: np.ndarray  # per row: the history row it copies is normal (no label > 0)
    faults: int
    kinds: tuple[str, ...]
    seed: int
    replicas: int

    def windows(self, features: Encoding, window: int, stride: int) -> tuple[Windows, np.ndarray]:
        """The judged windows and their labels (that of their last reading): those ending at
        validation readings, touching no labelled history row, and either inside a fault
        (last reading faulty) or wholly normal. A window whose fault ended before its last
        reading is neither, and is not judged (see ``selection``'s module docstring)."""
        w = frame_windows(self.frame, features, window, stride, "selection")
        dirty = np.concatenate([[0], np.cumsum(~self.clean)])
        faulty = np.concatenate([[0], np.cumsum(self.labels)])
        span = (w.first_offset, w.last_offset + 1)
        touched = dirty[span[1]] - dirty[span[0]] > 0
        label = self.labels[w.last_offset]
        after_fault = (label == 0) & (faulty[span[1]] - faulty[span[0]] > 0)
        w = w.select(self.judged[w.last_offset] & ~touched & ~after_fault)
        return w, self.labels[w.last_offset]


def faulted_validation(
    readings: Readings,
    normal_rows: np.ndarray,
    encoding: Encoding,
    after: float,
    until: float,
    context: int,
    seed: int,
    kinds: Sequence[str] = faults.KINDS,
    replicas: int = REPLICAS,
) -> FaultedStream:
    """Readings with ``after < ts <= until`` of each key, ``replicas`` times (more while
    fewer than :data:`MIN_FAULTS` faults are planned: short histories hold one fault per
    copy, and a choice made on a handful of faults is mostly chance; a planned fault too long
    for the free rows is skipped, so slightly fewer may be injected), each with its own faults
    (:func:`faults.inject`; between two, ``context`` normal readings, at least
    :data:`MIN_MARGIN`); ``context`` clean readings of the key go before each copy.
    Numeric kinds go to numeric inputs, ``new_category`` to categorical ones (as many again)."""
    margin = max(context, MIN_MARGIN)
    spans = _validation_spans(readings, after, until, context)
    per_replica = sum(s[4] for s in spans)
    replicas = max(replicas, -(-MIN_FAULTS // per_replica)) if per_replica else replicas
    frames, labels, judged, clean = [], [], [], []
    count = 0
    for k_index, key, before, span, n_faults in spans:
        # the kinds take turns across the copies (in an order of the key's own), so that every
        # kind is injected about equally often however few faults one copy holds
        turn = np.random.default_rng([FAULT_SEED, seed, k_index]).permutation(len(kinds))
        normal = _without_labelled(readings.values[span], normal_rows[span])
        for r in range(replicas):
            rng = np.random.default_rng([FAULT_SEED, seed, k_index, r])
            order = [kinds[turn[(r * n_faults + i) % len(kinds)]] for i in range(len(kinds))]
            faulted, lab, made = _faulted_copy(normal, encoding, rng, n_faults, order, margin)
            count += made
            frames.append(_copy_frame(readings, before, span, faulted, encoding, f"{key}#{r}"))
            labels.append(np.concatenate([np.zeros(len(before), np.int8), lab]))
            judged.append(np.concatenate([np.zeros(len(before), bool), np.ones(len(span), bool)]))
            clean.append(normal_rows[np.concatenate([before, span])])
    per_copy = sum(int(j.sum()) for j in judged) / replicas
    if per_copy < MIN_EVAL_ROWS:
        raise DataError(
            "too little validation history to choose a detector on injected faults; "
            "pin one with --variant (and --window)"
        )
    if per_copy < FEW_EVAL_ROWS:
        log.warning(
            "selection: only %d validation readings to inject faults into; the choice is uncertain "
            "(more history, or pin one with --variant)",
            per_copy,
        )
    return FaultedStream(
        pd.concat(frames, ignore_index=True),
        np.concatenate(labels),
        np.concatenate(judged),
        np.concatenate(clean),
        count,
        (*kinds, "new_category") if encoding.categories else tuple(kinds),
        seed,
        replicas,
    )


def _faulted_copy(
    normal: np.ndarray,
    encoding: Encoding,
    rng: np.random.Generator,
    n_faults: int,
    order: Sequence[str],
    margin: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One copy's inputs with faults: ``order``'s kinds in the numeric inputs, as many
    ``new_category`` faults in the categorical ones; its labels and the faults made."""
    cats = encoding.categories
    numeric = [j for j, f in enumerate(encoding.inputs) if f not in cats]
    categorical = [j for j, f in enumerate(encoding.inputs) if f in cats]
    values, labels, made = faults.inject(normal[:, numeric], rng, n_faults, order, margin=margin)
    out = normal.copy()
    out[:, numeric] = values
    if not categorical:
        return out, labels, len(made)
    sizes = [len(cats[encoding.inputs[j]]) + 1 for j in categorical]
    codes = normal[:, categorical].astype(np.int64)
    out[:, categorical], n_new = faults.inject_categories(codes, sizes, rng, n_faults, labels, margin)
    return out, labels, len(made) + n_new


def _copy_frame(
    readings: Readings,
    before: np.ndarray,
    span: np.ndarray,
    values: np.ndarray,
    encoding: Encoding,
    key: str,
) -> pd.DataFrame:
    """One faulted copy as a frame: the clean context rows, then the faulted validation rows
    (categories as text again, as a file holds them)."""
    data = np.concatenate([readings.values[before].astype(np.float64), values])
    frame = pd.DataFrame(data, columns=encoding.inputs)
    for name, vocab in encoding.categories.items():
        frame[name] = names(vocab, frame[name].to_numpy().astype(np.int64))
    frame.insert(0, "timestamp", readings.ts[np.concatenate([before, span])])
    frame.insert(1, "key", key)
    return frame


def _validation_spans(
    readings: Readings, after: float, until: float, context: int
) -> list[tuple[int, str, np.ndarray, np.ndarray, int]]:
    """Per key with validation readings: (key index, key, the ``context`` rows before,
    the validation rows, faults per copy)."""
    spans = []
    for k_index, key in enumerate(pd.unique(readings.keys)):
        rows = np.flatnonzero(readings.keys == key)
        rows = rows[np.argsort(readings.ts[rows], kind="stable")]
        in_span = (readings.ts[rows] > after) & (readings.ts[rows] <= until)
        span = rows[in_span]
        if len(span):
            first = int(np.flatnonzero(in_span)[0])
            before = rows[max(0, first - context) : first]
            spans.append((k_index, key, before, span, max(1, len(span) // ROWS_PER_FAULT)))
    return spans


def _without_labelled(values: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``values`` with the rows of labelled history replaced by the median of the others, so
    that no fault size, level or replayed stretch comes from them (the windows touching
    them are not judged anyway)."""
    out = values.astype(np.float64)
    if normal.any() and not normal.all():
        # the lower median: a categorical input's code stays a code
        out[~normal] = np.quantile(out[normal], 0.5, axis=0, method="lower")
    return out
