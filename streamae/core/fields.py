"""The input schema: every column of a training file, with the kind the model gives it.

``streamae train`` reads whatever columns a history holds; this module decides, from the file
itself and the user's ``--ignore``, which become the model's features and which are left out,
and says why for each one, so that a column is never dropped without a word. The bundle's
manifest records the result (``fields``), ``train`` prints it and ``inspect`` shows it.

Numeric columns are features. Text and boolean columns are recognised and recorded as such,
but this release models numbers only: they are ignored, with that reason, and a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from streamae.core.readings import RESERVED_COLUMNS, DataError

FieldKind = Literal["numeric", "categorical", "boolean", "ignored"]
_BOOLEAN_TEXT = {"true", "false"}
# an integer column this many rows long whose values are this share distinct looks like an id
IDENTIFIER_MIN_ROWS, IDENTIFIER_DISTINCT_SHARE = 50, 0.9


class InputField(BaseModel):
    """One column of the training file: what it holds and what the model makes of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FieldKind
    holds: str = Field(
        description="what the training file holds: numbers, text (n values), booleans, nothing"
    )
    reason: str = Field("", description="why an ignored field is left out; a doubt about a feature")

    def describe(self) -> str:
        """``amount: numeric`` or ``country: ignored (text, 12 values: ...)``."""
        if self.kind == "ignored":
            return f"{self.name}: ignored ({self.holds}: {self.reason})"
        return f"{self.name}: {self.kind}" + (f" ({self.reason})" if self.reason else "")


def infer_fields(
    frame: pd.DataFrame, ignore: Sequence[str] = (), source: str = "history"
) -> list[InputField]:
    """Every non-reserved column of ``frame`` (not timestamp, key, label, ...), in file order,
    with its kind; ``ignore`` names columns left out on purpose (each must exist)."""
    columns = [c for c in frame.columns if c not in RESERVED_COLUMNS]
    unknown = [c for c in ignore if c not in columns]
    if unknown:
        raise DataError(f"{source}: --ignore names no column of the file: {unknown} (columns: {columns})")
    return [_field(str(c), frame[c], c in ignore) for c in columns]


def _field(name: str, column: pd.Series, ignored: bool) -> InputField:
    holds = _holds(column)
    if ignored:
        return InputField(name=name, kind="ignored", holds=holds, reason="--ignore")
    if holds == "numbers":
        return InputField(name=name, kind="numeric", holds=holds, reason=_identifier_like(name, column))
    if holds == "nothing":
        return InputField(name=name, kind="ignored", holds=holds, reason="no value in the file")
    kind = "booleans" if holds == "booleans" else "categorical values"
    return InputField(
        name=name,
        kind="ignored",
        holds=holds,
        reason=f"{kind} are not modelled by this release; the model sees the numeric fields only",
    )


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
    values = column.dropna()
    if not pd.api.types.is_integer_dtype(column) or len(values) < IDENTIFIER_MIN_ROWS:
        return ""
    distinct = values.nunique()
    if distinct < IDENTIFIER_DISTINCT_SHARE * len(values):
        return ""
    return f"{distinct} distinct integers in {len(values)} rows, an identifier? --ignore {name} leaves it out"


def model_features(fields: Sequence[InputField]) -> list[str]:
    """The model's features: the numeric fields, in file order."""
    return [f.name for f in fields if f.kind == "numeric"]
