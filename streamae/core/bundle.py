"""Model bundles: ``model.onnx`` plus a strict ``manifest.json`` (its schema: ``manifest.py``).

A bundle is written atomically (a temporary directory, then a rename) and checked on
load: manifest schema, the manifest's own checksum (``manifest.sha256``: a renamed feature,
or new weights with the model checksum updated to match, are refused), the ONNX checksum,
and the graph's input shape against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamae.core.manifest import FORMAT_VERSION, Manifest

MANIFEST = "manifest.json"
MANIFEST_CHECKSUM = "manifest.sha256"  # "sha256:<hex>" of manifest.json's exact bytes
MODEL = "model.onnx"
INPUT_NAME = "windows"
OUTPUT_NAME = "reconstruction"
CODE_NAME = "code"
DECODER = "decoder.onnx"  # variational bundles: code → reconstruction, for `streamae sample`


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and field."""


class Bundle:
    """A loaded, verified bundle: the manifest and the ONNX bytes."""

    def __init__(self, path: Path, manifest: Manifest, model_bytes: bytes) -> None:
        self.path = path
        self.manifest = manifest
        self.model_bytes = model_bytes

    def extra(self, name: str) -> bytes:
        """A further file of the bundle, checked against the manifest's ``extras`` checksum."""
        if name not in self.manifest.extras:
            raise BundleError(f"bundle {self.path}: has no {name} (manifest field 'extras')")
        data = (self.path / name).read_bytes()
        if sha256(data) != self.manifest.extras[name]:
            raise BundleError(f"{self.path / name}: checksum mismatch (manifest field 'extras.{name}')")
        return data

    @property
    def features(self) -> list[str]:
        return self.manifest.features


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_bundle(path: Path | str) -> Bundle:
    """Load and verify a bundle directory; raise :class:`BundleError` naming what is wrong."""
    path = Path(path)
    manifest_path, model_path = path / MANIFEST, path / MODEL
    for p in (manifest_path, model_path):
        if not p.is_file():
            raise BundleError(f"bundle {path}: missing {p.name}")
    manifest_bytes = manifest_path.read_bytes()
    try:
        raw = json.loads(manifest_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON: {exc}") from None
    if isinstance(raw, dict) and raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: field 'format_version' is {raw.get('format_version')!r}; this streamae "
            f"reads format {FORMAT_VERSION}: retrain the bundle with `streamae train`"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(manifest)'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"{manifest_path}: invalid manifest: {fields}") from None
    _check_manifest(path, manifest_bytes)
    model_bytes = model_path.read_bytes()
    if sha256(model_bytes) != manifest.checksum:
        raise BundleError(
            f"{model_path}: checksum mismatch (manifest field 'checksum' says "
            f"{manifest.checksum}, file is {sha256(model_bytes)})"
        )
    return Bundle(path, manifest, model_bytes)


def _check_manifest(path: Path, manifest_bytes: bytes) -> None:
    """Refuse a manifest changed after it was written (its checksum file is ``manifest.sha256``)."""
    sealed = path / MANIFEST_CHECKSUM
    if not sealed.is_file():
        raise BundleError(
            f"bundle {path}: missing {MANIFEST_CHECKSUM}, so manifest.json is not covered by a checksum "
            "(bundles written before manifest checksums): retrain it, or check manifest.json and then "
            f"write its checksum: printf 'sha256:%s\\n' $(sha256sum manifest.json | cut -d' ' -f1) > "
            f"{MANIFEST_CHECKSUM}"
        )
    expected = sealed.read_text().strip()
    if sha256(manifest_bytes) != expected:
        raise BundleError(
            f"{path / MANIFEST}: checksum mismatch ({MANIFEST_CHECKSUM} says {expected}, file is "
            f"{sha256(manifest_bytes)}): the manifest was changed after the bundle was written"
        )


def write_bundle(
    path: Path | str,
    model_bytes: bytes,
    fields: dict[str, Any],
    *,
    extras: dict[str, bytes] | None = None,
    overwrite: bool = True,
) -> Bundle:
    """Write ``model.onnx`` and a manifest built from ``fields``, atomically.

    ``checksum`` and ``created_at`` are filled in here; a failed write leaves nothing behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} exists")
    extras = extras or {}
    fields = {
        "created_at": datetime.now(timezone.utc),
        **fields,
        "checksum": sha256(model_bytes),
        "extras": {name: sha256(data) for name, data in extras.items()},
    }
    manifest = Manifest.model_validate(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / MODEL).write_bytes(model_bytes)
        for name, data in extras.items():
            (tmp / name).write_bytes(data)
        manifest_bytes = (manifest.model_dump_json(indent=2) + "\n").encode()
        (tmp / MANIFEST).write_bytes(manifest_bytes)
        (tmp / MANIFEST_CHECKSUM).write_text(sha256(manifest_bytes) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(path, manifest, model_bytes)
