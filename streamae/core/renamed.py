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
    "adapt_half_life": "adapt.half_life",
    "adapt_block": "adapt.block",
    "adapt_rescale": "adapt.rescale",
}


def accept_old_names(data: Any, renamed: dict[str, str], owner: str) -> Any:
    """``data`` (a model's input mapping) with each old field name in ``renamed`` replaced by
    its new one (``section.field``: moved into that nested section), warning once per name.
    Given both (an old variable under a new flag), the new name wins and the old one is
    ignored, with a warning saying so."""
    if not isinstance(data, dict) or not renamed.keys() & data.keys():
        return data
    data = dict(data)
    for old, new in renamed.items():
        if old not in data:
            continue
        value = data.pop(old)
        *section, name = new.split(".")
        into = data
        for part in section:  # a nested section, as a dict of what it sets so far
            given = into.get(part) or {}
            into[part] = dict(given) if isinstance(given, dict) else given.model_dump(exclude_unset=True)
            into = into[part]
        if name in into:
            warnings.warn(
                f"{owner}: '{old}' is the old name of '{new}', which is set too: '{old}' ignored",
                FutureWarning,
                stacklevel=2,
            )
            continue
        warnings.warn(
            f"{owner}: '{old}' is now '{new}'; the old name is accepted until the next release",
            FutureWarning,
            stacklevel=2,
        )
        into[name] = value
    return data
