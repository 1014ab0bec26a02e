"""The input schema: every column of a training file, with the kind the model gives it.

``streamae train`` reads whatever columns a history holds; this module decides, from the file
itself and the user's ``--categorical``, ``--numeric`` and ``--ignore``, what each column is to
the model, and says why for each one left out, so that a column is never dropped without a
word. The bundle's manifest records the result (``fields``), ``train`` prints it and
``inspect`` shows it.

- numbers are ``numeric``; an integer column whose values hardly repeat is kept but flagged
  as a likely identifier;
- text is ``categorical``, with a capped vocabulary (``core/categories.py``: the most
  frequent values, the rest in an *other* bucket); text whose values hardly repeat (a card
  number, a transaction id) is ignored as an identifier unless ``--categorical`` keeps it;
- ``true``/``false`` columns are ``boolean`` (a categorical field of two values);
- ``--categorical`` makes a numeric code (a merchant category code) categorical, ``--numeric``
  makes a boolean column 0/1.

How categorical fields and the per-key context become model inputs: ``core/encoding.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from streamae.core.categories import vocabulary
from streamae.core.readings import RESERVED_COLUMNS, DataError

FieldKind = Literal["numeric", "categorical", "boolean", "ignored"]
_BOOLEAN_TEXT = {"true", "false"}
# a column this many rows long whose values are this share distinct looks like an id
IDENTIFIER_MIN_ROWS, IDENTIFIER_DISTINCT_SHARE = 50, 0.9
MIN_CATEGORY_COUNT = 5  # a value rarer than this in the training file is "other"


class InputField(BaseModel):
    """One column of the training file: what it holds and what the model makes of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FieldKind
    holds: str = Field(
        description="what the training file holds: numbers, text (n values), booleans, nothing"
    )
    reason: str = Field("", description="why an ignored field is left out; a doubt about a feature")
    categories: list[str] = Field(
        default_factory=list,
        description="categorical and boolean fields: the vocabulary, most frequent first; any "
        "other value is the 'other' bucket",
    )

    def describe(self) -> str:
        """``amount: numeric`` or ``country: ignored (text, 12 values: ...)``."""
        if self.kind == "ignored":
            return f"{self.name}: ignored ({self.holds}: {self.reason})"
        vocab = ""
        if self.categories:
            shown = ", ".join(self.categories[:5]) + (", ..." if len(self.categories) > 5 else "")
            vocab = f" ({len(self.categories)} categories + other: {shown})"
        return f"{self.name}: {self.kind}{vocab}" + (f" ({self.reason})" if self.reason else "")

    @property
    def modelled(self) -> bool:
        return self.kind != "ignored"


@dataclass(frozen=True)
class FieldChoices:
    """The user's say over the kinds: columns forced categorical, numeric or left out, and
    the cap on a categorical field's vocabulary."""

    categorical: Sequence[str] = ()
    numeric: Sequence[str] = ()
    ignore: Sequence[str] = ()
    max_categories: int = 20


def infer_fields(
    frame: pd.DataFrame, choices: FieldChoices = FieldChoices(), source: str = "history"
) -> list[InputField]:
    """Every non-reserved column of ``frame`` (not timestamp, key, label, ...), in file order,
    with its kind; every column ``choices`` names must exist, in one list only."""
    columns = [str(c) for c in frame.columns if c not in RESERVED_COLUMNS]
    named = {"--categorical": choices.categorical, "--numeric": choices.numeric, "--ignore": choices.ignore}
    for flag, names in named.items():
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise DataError(f"{source}: {flag} names no column of the file: {unknown} (columns: {columns})")
    lists = Counter(c for names in named.values() for c in set(names))
    twice = sorted(c for c, n in lists.items() if n > 1)
    if twice:
        raise DataError(f"{source}: column(s) {twice} named by more than one of {', '.join(named)}")
    return [_field(c, frame[c], choices) for c in columns]


def _field(name: str, column: pd.Series, choices: FieldChoices) -> InputField:
    holds = _holds(column)
    if name in choices.ignore:
        return InputField(name=name, kind="ignored", holds=holds, reason="--ignore")
    if holds == "nothing":
        return InputField(name=name, kind="ignored", holds=holds, reason="no value in the file")
    if name in choices.numeric:
        if holds not in ("numbers", "booleans"):
            raise DataError(f"column '{name}': --numeric, but it holds {holds}, not numbers")
        return InputField(
            name=name, kind="numeric", holds=holds, reason="--numeric" if holds == "booleans" else ""
        )
    forced = name in choices.categorical
    if holds == "numbers" and not forced:
        return InputField(name=name, kind="numeric", holds=holds, reason=_identifier_like(name, column))
    if holds.startswith("text") and not forced and (doubt := _distinct_doubt(column)):
        return InputField(
            name=name,
            kind="ignored",
            holds=holds,
            reason=f"{doubt}, an identifier? --categorical {name} keeps its "
            f"{choices.max_categories} most frequent values",
        )
    vocab = vocabulary(column, choices.max_categories, MIN_CATEGORY_COUNT)
    kind: FieldKind = "boolean" if holds == "booleans" else "categorical"
    reason = "--categorical" if forced and holds == "numbers" else ""
    if not vocab:
        return InputField(
            name=name,
            kind="ignored",
            holds=holds,
            reason=f"no value occurs {MIN_CATEGORY_COUNT} times: nothing to learn a category from",
        )
    return InputField(name=name, kind=kind, holds=holds, reason=reason, categories=vocab)


def _holds(column: pd.Series) -> str:
    values = column.dropna()
    if values.empty:
        return "nothing"
    if pd.api.types.is_bool_dtype(column):
        return "booleans"
    if pd.api.types.is_numeric_dtype(column):
        return "numbers"
    # text: only a column that is no number is read as strings (cheap on long numeric files)
    if set(values.astype(str).str.lower().unique()) <= _BOOLEAN_TEXT:
        return "booleans"
    return f"text, {values.nunique()} values"


def _identifier_like(name: str, column: pd.Series) -> str:
    """A doubt about an integer column whose values hardly repeat (a card number, an id)."""
    if not pd.api.types.is_integer_dtype(column):
        return ""
    doubt = _distinct_doubt(column)
    return f"{doubt}, an identifier? --ignore {name} leaves it out" if doubt else ""


def _distinct_doubt(column: pd.Series) -> str:
    """``"980 distinct values in 1000 rows"`` when a column's values hardly repeat, else ''."""
    values = column.dropna()
    if len(values) < IDENTIFIER_MIN_ROWS:
        return ""
    distinct = values.nunique()
    if distinct < IDENTIFIER_DISTINCT_SHARE * len(values):
        return ""
    return f"{distinct} distinct values in {len(values)} rows"


def model_inputs(fields: Sequence[InputField]) -> list[InputField]:
    """The fields the model reads (numeric, categorical, boolean), in file order."""
    return [f for f in fields if f.modelled]
