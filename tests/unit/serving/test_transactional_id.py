"""Transactional ids: unique among members on one host, the same for a member restarted in
place, and whatever the setting says when it is set."""

from __future__ import annotations

import socket
import subprocess
import sys

from streamae.core.config import KafkaSettings
from streamae.serving.commit.exactly_once import TransactionalId


def test_members_on_one_host_get_their_own_ids_and_a_restarted_one_gets_its_predecessors(tmp_path):
    k = KafkaSettings(group_id="g", delivery="exactly_once")
    a, b = TransactionalId(k, tmp_path), TransactionalId(k, tmp_path)
    host = socket.gethostname()
    assert (a.value, b.value) == (f"g-{host}-0", f"g-{host}-1")
    a.release()  # a exits; its replacement takes its id, and fences its open transaction
    assert TransactionalId(k, tmp_path).value == f"g-{host}-0"
    other = TransactionalId(KafkaSettings(group_id="h", delivery="exactly_once"), tmp_path)
    assert other.value == f"h-{host}-0"  # slots are per group


def test_a_killed_holder_gives_its_slot_back(tmp_path):
    k = KafkaSettings(group_id="g", delivery="exactly_once")
    code = (
        "import sys, pathlib, os; from streamae.core.config import KafkaSettings; "
        "from streamae.serving.commit.exactly_once import TransactionalId; "
        "t = TransactionalId(KafkaSettings(group_id='g'), pathlib.Path(sys.argv[1])); "
        "print(t.value, flush=True); os.kill(os.getpid(), 9)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.stdout.strip().endswith("-0") and out.returncode == -9
    assert TransactionalId(k, tmp_path).value.endswith("-0")


def test_the_setting_wins_and_an_unwritable_lock_folder_falls_back_to_slot_0(tmp_path):
    assert TransactionalId(KafkaSettings(transactional_id="mine"), tmp_path).value == "mine"
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert TransactionalId(KafkaSettings(group_id="g"), blocked / "sub").value.endswith("-0")
