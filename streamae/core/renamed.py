"""Settings renamed in this release, and the one helper that still accepts their old names.

Post-processing's ``sparse`` (also an autoencoder variant) is now ``record_high``, and its
``quiet_windows`` (also the alert policy's closing rule) is now ``suppress_windows``; the
``train`` settings' ``adapt_half_life``, ``adapt_block`` and ``adapt_rescale`` are now the
``adapt`` section's ``half_life``, ``block`` and ``rescale``. Bundles
written, and variables or flags set, under the old names keep working for one release, with
a :class:`FutureWarning` naming the new one.
"""

from __future__ import annotations

import warnings
from typing import Any

POST_RENAMED: dict[str, str] = {"sparse": "record_high", "quiet_windows": "suppress_windows"}
#: the train settings' flat streaming-normalisation fields, now the ``adapt`` section's
ADAPT_FLATTENED: dict[str, str] = {
    "adapt_half_life": "half_life",
    "adapt_block": "block",
    "adapt_rescale": "rescale",
}


def accept_old_names(data: Any, renamed: dict[str, str], owner: str) -> Any:
    """``data`` (a model's input mapping) with each old field name in ``renamed`` replaced by
    its new one, warning once per name. Given both (an old variable under a new flag), the
    new name wins and the old one is ignored, with a warning saying so."""
    if not isinstance(data, dict) or not renamed.keys() & data.keys():
        return data
    data = dict(data)
    for old, new in renamed.items():
        if old not in data:
            continue
        if new in data:
            warnings.warn(
                f"{owner}: '{old}' is the old name of '{new}', which is set too: '{old}' ignored",
                FutureWarning,
                stacklevel=2,
            )
            data.pop(old)
            continue
        warnings.warn(
            f"{owner}: '{old}' is now '{new}'; the old name is accepted until the next release",
            FutureWarning,
            stacklevel=2,
        )
        data[new] = data.pop(old)
    return data


def nest_old_names(data: Any, section: str, renamed: dict[str, str], owner: str) -> Any:
    """``data`` with each flat old name in ``renamed`` moved into its ``section`` under the
    new name, warning once per name; a value the section sets itself wins."""
    if not isinstance(data, dict) or not renamed.keys() & data.keys():
        return data
    data = dict(data)
    given = data.get(section) or {}
    nested = dict(given) if isinstance(given, dict) else given.model_dump(exclude_unset=True)
    for old, new in renamed.items():
        if old not in data:
            continue
        value = data.pop(old)
        where = f"{section}.{new}"
        if new in nested:
            warnings.warn(
                f"{owner}: '{old}' is the old name of '{where}', which is set too: '{old}' ignored",
                FutureWarning,
                stacklevel=2,
            )
            continue
        warnings.warn(
            f"{owner}: '{old}' is now '{where}'; the old name is accepted until the next release",
            FutureWarning,
            stacklevel=2,
        )
        nested[new] = value
    data[section] = nested
    return data
