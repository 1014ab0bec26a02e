"""What exactly-once delivery needs of every transport: a transactional id, and reading the
last record of a partition whose end holds transaction markers.

With ``STREAMAE_KAFKA__DELIVERY=exactly_once`` each commit is one transaction: the outputs,
the alert state and the input offsets (``send_offsets_to_transaction`` with the consumer's
group metadata, so a member that lost its partitions is fenced by the group, KIP-447)
become visible together to ``read_committed`` readers, or not at all.

The transactional id is ``<group_id>-<hostname>`` unless ``STREAMAE_KAFKA__TRANSACTIONAL_ID``
sets it. It must be unique among live members (two producers with one id fence each other)
and should stay the same across restarts of one member: the restarted producer then aborts
its predecessor's open transaction at once (``init_transactions``) instead of leaving it to
expire, which would hold back every ``read_committed`` reader of the output topics until
``transaction.timeout.ms``. A pod's hostname (StatefulSet) or a container's has both
properties; two members on one host need the variable set apart.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from streamae.core.config import KafkaSettings
from streamae.serving.transport import Partition, Record, TransportTimeout


def transactional_id(k: KafkaSettings) -> str:
    return k.transactional_id or f"{k.group_id}-{socket.gethostname()}"


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
