"""Outputs honour the published contract; docs/schemas is what the models generate."""

import json
from pathlib import Path

import jsonschema
import numpy as np

from streamae.core.alerts import AlertPolicy
from streamae.core.messages import SCHEMAS, AlertEvent, ScoreMessage, json_schema
from streamae.core.readings import frame_to_readings
from streamae.core.windows import WindowStore

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_committed_schemas_are_up_to_date():
    for name in SCHEMAS:
        committed = json.loads((DOCS / f"{name}.schema.json").read_text())
        assert committed == json_schema(name), f"run `streamae schema` to refresh {name}"


def test_score_and_alert_messages_validate(bundle_dir, history, scorer_of):
    scorer = scorer_of(bundle_dir)
    m = scorer.manifest
    frame = history.head(400).copy()
    frame.loc[frame.index[100:160], "flow"] += 30  # force alerts
    windows = WindowStore(m.window, m.stride, len(m.features)).push(
        frame_to_readings(frame, m.features, "file")
    )
    msgs = scorer.messages(windows, scorer.score(windows.data), top_k=3)
    assert len(msgs) == len(windows) > 0
    score_schema = json_schema("score")
    for msg in msgs:
        ScoreMessage.model_validate(msg)
        jsonschema.validate(msg, score_schema)
        shares = [f["share"] for f in msg["top_features"]]
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0001
    events = [e for _, e in AlertPolicy(k=2, n=3, quiet_windows=3).update(msgs)]
    assert {e["event"] for e in events} == {"open", "close"}
    for e in events:
        AlertEvent.model_validate(e)
        jsonschema.validate(e, json_schema("alert"))
    assert any(f["feature"] == "flow" for f in events[0]["top_features"])
    assert np.isclose(events[0]["threshold"], m.threshold.value)


def _doc_examples() -> list[dict]:
    """Every JSON example of docs/messages.md that is complete (not abridged with '...')."""
    text = (DOCS.parent / "messages.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    docs = []
    for block in blocks:
        try:
            docs.append(json.loads(block))
        except json.JSONDecodeError:
            continue  # abridged
    return docs


def test_the_examples_in_messages_md_pass_their_own_schemas():
    kinds = {
        "reason_code": "dead-letter",
        "top_shares": "score-batch",
        "event": "alert",
        "window_end": "score",
    }
    checked = set()
    for doc in _doc_examples():
        kind = next(k for field, k in kinds.items() if field in doc)
        jsonschema.validate(doc, json_schema(kind))
        checked.add(kind)
    assert checked >= {"dead-letter", "score-batch", "score"}
