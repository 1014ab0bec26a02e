"""Hot model reload on the in-memory transport: a valid new bundle is served from the next
micro-batch on; a corrupt or incompatible one is refused and the old model keeps serving."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import orjson
import pytest
from daemon_harness import WINDOW, run_daemon
from memory_transport import MemoryTransport

from streamae.core.bundle import load_bundle, write_bundle
from streamae.core.scoring import Scorer
from streamae.serving.loop import Daemon


def rewrite(src: Path, dst: Path, **changes: object) -> None:
    """Write the bundle at ``src`` again to ``dst`` with manifest ``changes``."""
    b = load_bundle(src)
    fields = b.manifest.model_dump(exclude={"checksum", "extras", "created_at"}) | changes
    write_bundle(dst, b.model_bytes, fields)


@pytest.fixture
def current(tiny_bundle: Path, tmp_path: Path) -> Path:
    """``current`` → ``v1``: a link to the bundle, as an operator would deploy it."""
    shutil.copytree(tiny_bundle, tmp_path / "v1")
    (tmp_path / "current").symlink_to(tmp_path / "v1")
    return tmp_path / "current"


def versions(t: MemoryTransport) -> list[tuple[int, str]]:
    docs = [orjson.loads(r.value) for r in t.records("scores")]
    return [(d["source"]["offset_end"], d["model_version"]) for d in docs]


def run_with_reloads(t: MemoryTransport, scorer: Scorer, location: Path, script) -> Daemon:
    return run_daemon(
        t, scorer, script, stop_after_polls=120, model={"bundle": location, "reload_interval_s": 1}
    )


def test_a_new_bundle_is_served_from_the_next_micro_batch_on_without_losing_a_window(
    scorer, reading, current, caplog
):
    caplog.set_level(logging.INFO)
    old = scorer.manifest.model_version
    rewrite(current, current.parent / "v2", model_version="v2")
    t = MemoryTransport()

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        if t.polls <= 60:  # a reading every 0.1 s
            t.produce("in", 0, b"m1", reading(t.polls - 1))
            t.clock.advance(0.1)
        if t.polls == 30:
            (current.parent / "next").symlink_to(current.parent / "v2")
            (current.parent / "next").replace(current)  # an atomic switch of the link

    daemon = run_with_reloads(t, scorer, current, script)
    seen = versions(t)
    assert [offset for offset, _ in seen] == list(range(WINDOW - 1, 60))  # each window once
    names = [v for _, v in seen]
    assert names[0] == old and names[-1] == "v2" and names == sorted(names, key=lambda v: v == "v2")
    assert (
        daemon.reloader is not None and daemon.reloader.reloads == 1 and daemon.health().model_version == "v2"
    )
    assert f"model reload: serving v2 from {current.parent / 'v2'} (was {old})" in caplog.text


@pytest.mark.parametrize(
    "spoil,why",
    [
        (lambda b: (b / "model.onnx").write_bytes(b"not a model"), "checksum mismatch"),
        (lambda b: (b / "manifest.json").write_text("{"), "not valid JSON"),
        (lambda b: rewrite(b, b, model_version="v2", window=WINDOW + 1), "window"),
        (lambda b: rewrite(b, b, model_version="v2", features=["a", "b", "c", "d", "e"]), "features"),
    ],
    ids=["corrupt-model", "corrupt-manifest", "other-window", "other-features"],
)
def test_a_bad_bundle_is_refused_and_the_old_model_keeps_serving(
    scorer, reading, current, caplog, spoil, why
):
    old = scorer.manifest.model_version
    t = MemoryTransport()

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        if t.polls <= 40:
            t.produce("in", 0, b"m1", reading(t.polls - 1))
            t.clock.advance(0.1)
        if t.polls == 20:
            spoil(current.resolve())

    daemon = run_with_reloads(t, scorer, current, script)
    assert {v for _, v in versions(t)} == {old}
    assert [offset for offset, _ in versions(t)] == list(range(WINDOW - 1, 40))
    assert daemon.reloader is not None and (daemon.reloader.reloads, daemon.reloader.failures) == (0, 1)
    assert daemon.health().reload_failures == 1
    (line,) = [r.getMessage() for r in caplog.records if "model reload" in r.getMessage()]
    assert f"refused, still serving {old}" in line and why in line
