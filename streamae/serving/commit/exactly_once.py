"""What exactly-once delivery needs of every transport: a transactional id, and reading the
last record of a partition whose end holds transaction markers.

With ``STREAMAE_KAFKA__DELIVERY=exactly_once`` each commit is one transaction: the outputs,
the alert state and the input offsets (``send_offsets_to_transaction`` with the consumer's
group metadata, so a member that lost its partitions is fenced by the group, KIP-447)
become visible together to ``read_committed`` readers, or not at all.

The transactional id must be unique among live members (two producers with one id fence each
other) and should stay the same across restarts of one member: the restarted producer then
aborts its predecessor's open transaction at once (``init_transactions``) instead of leaving
it to expire, which would hold back every ``read_committed`` reader of the output topics until
``transaction.timeout.ms``. ``STREAMAE_KAFKA__TRANSACTIONAL_ID`` sets it; by default it is
``<group_id>-<hostname>-<slot>``, the slot being the lowest number no live member of the group
on this host holds (a lock file, released when its holder exits, even by kill -9): members
on one host get different ids, and a member restarted in place gets its predecessor's.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from streamae.core.config import KafkaSettings
from streamae.serving.errors import TransactionFailed
from streamae.serving.transport import Partition, Record, TransportTimeout

log = logging.getLogger(__name__)


#: Members of one group on one host that get their own slot; more share the last one.
MAX_SLOTS = 64


class TransactionalId:
    """This member's transactional id, held until :meth:`release` (see the module docstring)."""

    def __init__(self, k: KafkaSettings, lock_dir: Path | None = None) -> None:
        self._lock: IO[bytes] | None = None
        if k.transactional_id:
            self.value = k.transactional_id
            return
        host = socket.gethostname()
        self.value = f"{k.group_id}-{host}-{self._claim(f'{k.group_id}-{host}', lock_dir)}"

    def _claim(self, name: str, lock_dir: Path | None) -> int:
        folder = lock_dir or Path(tempfile.gettempdir()) / "streamae-transactional-ids"
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for slot in range(MAX_SLOTS):
                lock = (folder / f"{digest}-{slot}.lock").open("ab")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    lock.close()
                    continue
                self._lock = lock
                return slot
        except OSError as exc:
            log.warning("no lock file for a transactional id under %s (%r): using slot 0", folder, exc)
            return 0
        log.warning("%d members of one group on this host: the next ones share a transactional id", MAX_SLOTS)
        return MAX_SLOTS

    def release(self) -> None:
        """Give the slot back (closing the lock file releases it)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def last_record(
    seek: Callable[[int], None],
    poll: Callable[[], list[Record]],
    position: Callable[[], int | None],
    partition: Partition,
    first: int,
    end: int,
    timeout_s: float,
) -> Record | None:
    """The last data record of a partition spanning offsets ``first..end-1``, read with a
    consumer already assigned to it (``seek``, ``poll``, ``position`` act on it).

    The last offset is not necessarily a record: in exactly-once mode it is usually a
    transaction marker, and records of aborted transactions are filtered out. So read
    back from the end, further each time nothing comes, until a record does or the
    partition's start is reached.
    """
    deadline = time.monotonic() + timeout_s
    back = 4
    while end > first:
        start = max(first, end - back)
        seek(start)
        last: Record | None = None
        while (at := position()) is None or at < end:
            for r in poll():
                if r.offset < end:
                    last = r
            if time.monotonic() > deadline:
                # read_committed stops short of a transaction still open at the end
                if last is not None:
                    return last
                raise TransportTimeout(
                    f"could not read {partition}@{start}..{end - 1} within {timeout_s:g} s"
                )
        if last is not None or start == first:
            return last
        back *= 8
    return None


def within(call: Callable[[], None], timeout_s: float) -> bool:
    """Run ``call`` on a helper thread; False when it has not returned after ``timeout_s``
    (it is left blocked there), else True or what it raised."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)

    # a daemon thread: one that never returns must not keep the process alive
    thread = threading.Thread(target=run, name="transaction-commit", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if failure:
        raise failure[0]
    return not thread.is_alive()


def commit_or_replace(commit: Callable[[], None], timeout_s: float, replace: Callable[[], None]) -> None:
    """Run a transaction's ``commit``; when it blocks past ``timeout_s`` (a client waiting on
    a coordinator that went away), ``replace`` the producer — a new one with the same
    transactional id fences the stuck one, aborting its transaction — and raise
    :class:`~streamae.serving.errors.TransactionFailed`, so the loop redoes the work."""
    if within(commit, timeout_s):
        return
    log.warning("transaction commit blocked past its timeout: replacing the producer")
    replace()
    raise TransactionFailed("transaction commit blocked; the producer was replaced")
