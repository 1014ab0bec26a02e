"""A bundle's inputs → the model's feature columns: categories one-hot, and each key's context.

Readings (``decode`` in the daemon, ``frame_to_readings`` for files) hold the bundle's
*inputs*: numeric fields as numbers, categorical and boolean fields as codes of their
vocabulary (``core/categories.py``). When a window of a key's last ``N`` readings is cut,
:meth:`Encoding.expand` turns it into the model's features, in numpy over every window of
the batch at once:

- numeric inputs as they are;
- each categorical field one-hot: a column per category and one for *other*;
- with the per-key context on (``Context``; ``streamae train --context``), judged against
  the key's own readings in the window:

  ===========================  ============================================================
  ``<x>/key_median``           per numeric field, ``log(1 + x)`` less the median of the
                               window's (sign kept): an amount 20 times the key's usual one
  ``<c>/new_for_key``          per categorical field, 1 when the value is not among the key's
                               earlier readings in the window: a country the account never uses
  ``key/gap``                  ``log(1 + seconds)`` since the key's previous reading
  ``key/recent``               the key's earlier readings in the window within ``recent_s``
                               seconds: a burst
  ===========================  ============================================================

The context is a function of the window alone, and windows are rebuilt exactly by the
replay after a restart or a rebalance (``serving/partition.py``), so ``serve`` carries it
across restarts without a state of its own, and ``train``, ``score`` and ``serve`` compute it
with this one implementation. Its horizon is the window: "new for the key" means "not in its
last ``N - 1`` readings".

Per-feature errors and scores are per column; attribution sums them per input field
(:attr:`Encoding.attribution`), so an alert says "country 71 %", not "country=FR 71 %"; the
two timing columns count as one field, ``timing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from streamae.core.categories import OTHER, names
from streamae.core.fields import InputField
from streamae.core.readings import Readings, frame_to_readings
from streamae.core.windows import WindowStore

TIMING = "timing"  # the attribution name of the key's gap and recent-count columns
GAP, RECENT = "key/gap", "key/recent"
_CHUNK = 2048  # windows expanded at once: the new-value test holds (chunk, N, N) booleans


class Context(BaseModel):
    """The per-key context features of a bundle (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recent_s: float = Field(
        600.0, gt=0, description="key/recent counts the key's readings this many seconds back"
    )


@dataclass(frozen=True)
class Encoding:
    """The inputs a bundle reads and the feature columns its model sees."""

    fields: tuple[InputField, ...]  # the modelled inputs, in order
    context: Context | None = None

    @classmethod
    def numeric(cls, features: Sequence[str]) -> Encoding:
        """Numeric inputs only, no context: features are the inputs (every sensor bundle)."""
        return cls(tuple(InputField(name=f, kind="numeric", holds="numbers") for f in features))

    @classmethod
    def of(cls, features: Sequence[str], fields: Sequence[InputField], context: Context | None) -> Encoding:
        """A manifest's encoding: its ``fields`` (numeric bundles record none) and ``context``."""
        modelled = tuple(f for f in fields if f.modelled)
        return cls(modelled, context) if modelled else cls.numeric(features)

    @cached_property
    def inputs(self) -> list[str]:
        """The input fields a reading carries, in the order of a reading's values."""
        return [f.name for f in self.fields]

    @cached_property
    def categories(self) -> dict[str, list[str]]:
        """The categorical (and boolean) inputs' vocabularies."""
        return {f.name: list(f.categories) for f in self.fields if f.kind in ("categorical", "boolean")}

    @property
    def expands(self) -> bool:
        """Whether the model's features differ from the inputs."""
        return bool(self.categories) or self.context is not None

    @cached_property
    def columns(self) -> list[tuple[str, str, int]]:
        """Per feature column: (name, the input field it is attributed to, its one-hot group
        or -1)."""
        cols: list[tuple[str, str, int]] = []
        groups = 0
        for f in self.fields:
            if f.name in self.categories:
                cols += [(f"{f.name}={c}", f.name, groups) for c in [*f.categories, OTHER]]
                groups += 1
            else:
                cols.append((f.name, f.name, -1))
        if self.context is not None:
            cols += [
                (
                    f"{f.name}/key_median" if f.name not in self.categories else f"{f.name}/new_for_key",
                    f.name,
                    -1,
                )
                for f in self.fields
            ]
            cols += [(GAP, TIMING, -1), (RECENT, TIMING, -1)]
        return cols

    @cached_property
    def features(self) -> list[str]:
        """The model's feature columns, in order."""
        return [name for name, _, _ in self.columns]

    @cached_property
    def groups(self) -> np.ndarray:
        """Per feature column its one-hot group (-1: a numeric column, squared error)."""
        return np.array([g for _, _, g in self.columns], dtype=np.int64)

    @cached_property
    def attribution(self) -> tuple[list[str], np.ndarray]:
        """The fields errors are attributed to, and per feature column the index of its field."""
        fields = list(dict.fromkeys(f for _, f, _ in self.columns))
        return fields, np.array([fields.index(f) for _, f, _ in self.columns], dtype=np.int64)

    def readings(self, frame: pd.DataFrame, source: str) -> Readings:
        """The inputs of a file's rows (categories coded) in file order."""
        return frame_to_readings(frame, self.inputs, source, self.categories)

    def store(self, window: int, stride: int, idle_ttl_s: float = 0.0) -> WindowStore:
        """The window store that cuts this encoding's windows (expanded to the features)."""
        if not self.expands:
            return WindowStore(window, stride, len(self.inputs), idle_ttl_s)
        return WindowStore(window, stride, len(self.inputs), idle_ttl_s, self.expand, len(self.features))

    def values_of(self, row: Sequence[float]) -> dict[str, Any]:
        """One reading's inputs by name, categories as text (a dead letter's value)."""
        out: dict[str, Any] = dict(zip(self.inputs, row))
        for name, vocab in self.categories.items():
            out[name] = names(vocab, np.array([out[name]]))[0]
        return out

    def expand(self, raw: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Windows of inputs ``(m, N, inputs)`` with their readings' times ``(m, N)`` as the
        model's features ``(m, N, features)`` (float32)."""
        out = np.empty((*raw.shape[:2], len(self.features)), np.float32)
        for lo in range(0, len(raw), _CHUNK):
            self._expand(raw[lo : lo + _CHUNK], times[lo : lo + _CHUNK], out[lo : lo + _CHUNK])
        return out

    def _expand(self, raw: np.ndarray, times: np.ndarray, out: np.ndarray) -> None:
        col = 0
        codes: dict[int, np.ndarray] = {}
        for j, f in enumerate(self.fields):
            vocab = self.categories.get(f.name)
            if vocab is None:
                out[..., col] = raw[..., j]
                col += 1
                continue
            codes[j] = np.clip(raw[..., j], 0, len(vocab)).astype(np.intp)
            out[..., col : col + len(vocab) + 1] = np.eye(len(vocab) + 1, dtype=np.float32)[codes[j]]
            col += len(vocab) + 1
        if self.context is not None:
            _context(raw, times, codes, self.context, out[..., col:])


def _context(
    raw: np.ndarray, times: np.ndarray, codes: Mapping[int, np.ndarray], context: Context, out: np.ndarray
) -> None:
    """The context columns (see the module docstring) of windows ``raw``, into ``out``."""
    n, n_inputs = raw.shape[1:]
    earlier = np.tri(n, n, -1, dtype=bool)  # [i, j]: reading j comes before reading i
    for j in range(n_inputs):
        if j in codes:
            c = codes[j]
            seen = ((c[:, :, None] == c[:, None, :]) & earlier).any(axis=2)
            out[..., j] = ~seen
            out[:, 0, j] = 0.0  # the first reading of a window has nothing to be new against
        else:
            x = raw[..., j].astype(np.float64)
            lx = np.sign(x) * np.log1p(np.abs(x))
            out[..., j] = lx - np.median(lx, axis=1, keepdims=True)
    gap = np.log1p(np.maximum(np.diff(times, axis=1), 0.0))
    out[:, 1:, n_inputs] = gap
    out[:, 0, n_inputs] = gap[:, 0] if n > 1 else 0.0  # a window's first reading: its next gap
    since = times[:, :, None] - times[:, None, :]
    out[..., n_inputs + 1] = ((since <= context.recent_s) & earlier).sum(axis=2)
