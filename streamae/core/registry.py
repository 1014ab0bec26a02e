"""The model registry: versioned bundles in one directory, one of them *current*.

Layout::

    REGISTRY/
      versions/v0001/          a bundle (manifest.json, model.onnx, ...) and its record.json
      current -> versions/v0003  what the daemon serves: STREAMAE_MODEL__BUNDLE=REGISTRY/current
      promotions.jsonl         every change of current: to, from, who, when, why, the gate

A version appears whole or not at all (copied into a temporary directory, then renamed), and
current switches in one rename of a symbolic link, so the daemon's hot reload, which resolves
the link, never sees half a bundle. Only bundles that load (checksums, schema, graph) enter.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from streamae.core.bundle import BundleError, load_bundle
from streamae.core.manifest import Manifest

VERSIONS, CURRENT, PROMOTIONS, RECORD = "versions", "current", "promotions.jsonl", "record.json"
_NAME = re.compile(r"^v(\d{4,})$")


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why."""


class VersionRecord(BaseModel):
    """What the registry knows of one version, beside its bundle."""

    version: str
    registered: float  # epoch s
    source: str  # where its training history came from
    data_range: tuple[float, float] | None = None  # first and last training reading (epoch s)
    data_fingerprint: str | None = None  # sha256 of the training readings
    model_version: str
    variant: str
    window: int
    features: list[str]
    selection: str | None = None  # the candidate automatic selection chose
    metrics: dict[str, float] = {}
    gate: dict[str, Any] | None = None  # the promotion gate's numbers, when a job ran it


class Promotion(BaseModel):
    """One change of the current version."""

    to: str
    previous: str | None
    who: str
    when: float
    why: str
    gate: dict[str, Any] | None = None


def incompatible(new: Manifest, old: Manifest) -> str | None:
    """Why a running daemon of ``old`` cannot hot-swap to ``new`` (its windows are cut for
    ``old``'s features, window and stride), or None."""
    for name in ("features", "window", "stride"):
        if getattr(new, name) != getattr(old, name):
            return f"its {name} {getattr(new, name)!r} differ from the running model's {getattr(old, name)!r}"
    return None


class Registry:
    """The registry at ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def versions(self) -> list[VersionRecord]:
        """Every version, oldest first."""
        return [self.record(n) for n in self._names()]

    def record(self, version: str) -> VersionRecord:
        path = self.root / VERSIONS / version / RECORD
        if not path.is_file():
            raise RegistryError(f"registry {self.root}: no version {version!r} (versions: {self._names()})")
        return VersionRecord.model_validate_json(path.read_bytes())

    def current(self) -> str | None:
        """The current version's name (None before the first promotion)."""
        link = self.root / CURRENT
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def path(self, version: str) -> Path:
        self.record(version)
        return self.root / VERSIONS / version

    def add(self, bundle: Path, source: str, **record: Any) -> VersionRecord:
        """Copy the bundle at ``bundle`` in as the next version; ``record``: the further
        :class:`VersionRecord` fields (data range, fingerprint, gate). The bundle must load."""
        try:
            m = load_bundle(bundle).manifest
        except BundleError as exc:
            raise RegistryError(f"not registered: {exc}") from None
        with self._lock():
            version = f"v{max((_number(n) for n in self._names()), default=0) + 1:04d}"
            folder = self.root / VERSIONS
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder))
            shutil.copytree(bundle, tmp, dirs_exist_ok=True)
            rec = VersionRecord(
                version=version,
                registered=time.time(),
                source=source,
                model_version=m.model_version,
                variant=m.variant,
                window=m.window,
                features=m.features,
                selection=m.selection.candidates[m.selection.chosen].settings.describe()
                if m.selection
                else None,
                metrics=m.metrics,
                **record,
            )
            (tmp / RECORD).write_text(rec.model_dump_json(indent=2))
            tmp.rename(folder / version)
        return rec

    def promote(
        self, version: str, why: str, force: bool = False, gate: dict[str, Any] | None = None
    ) -> Promotion:
        """Make ``version`` current, atomically, and record who, when and why. Refused when a
        daemon of the current version could not hot-swap to it, unless ``force``."""
        path = self.path(version)
        try:
            new = load_bundle(path).manifest
        except BundleError as exc:
            raise RegistryError(f"not promoted: {exc}") from None
        with self._lock():
            previous = self.current()
            if previous is not None and not force:
                why_not = incompatible(new, load_bundle(self.root / VERSIONS / previous).manifest)
                if why_not:
                    raise RegistryError(
                        f"not promoted: {version} cannot replace {previous} in a running daemon: {why_not} "
                        "(--force promotes it anyway; daemons then keep the old model until restarted)"
                    )
            tmp = self.root / f".{CURRENT}-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(Path(VERSIONS) / version)
            tmp.replace(self.root / CURRENT)
            done = Promotion(to=version, previous=previous, who=_who(), when=time.time(), why=why, gate=gate)
            with (self.root / PROMOTIONS).open("a") as f:
                f.write(done.model_dump_json() + "\n")
        return done

    def promotions(self) -> list[Promotion]:
        path = self.root / PROMOTIONS
        lines = path.read_text().splitlines() if path.is_file() else []
        return [Promotion.model_validate_json(line) for line in lines if line.strip()]

    def rollback(self, why: str) -> Promotion:
        """Make current the version that was current before the last promotion."""
        history = self.promotions()
        if not history or history[-1].previous is None:
            raise RegistryError(f"registry {self.root}: nothing to roll back to (no earlier current version)")
        return self.promote(history[-1].previous, why=why or f"rollback of {history[-1].to}", force=True)

    def _names(self) -> list[str]:
        folder = self.root / VERSIONS
        return (
            sorted((p.name for p in folder.iterdir() if _NAME.match(p.name)), key=_number)
            if folder.is_dir()
            else []
        )

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One writer at a time (two retraining jobs must not take the same version number)."""
        (self.root / VERSIONS).mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _number(name: str) -> int:
    found = _NAME.match(name)
    return int(found.group(1)) if found else -1


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
