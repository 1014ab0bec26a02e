"""Decoding reading messages without Kafka: streamae's decoder (orjson + one numpy pass)
against the naive baseline (stdlib json + per-reading float conversion into a list of rows).

    .venv/bin/python bench/decode.py

(bench/throughput.py measures decoding behind a real consumer.)"""

from __future__ import annotations

import json

import numpy as np
from common import Result, best_rate
from kafka.consumer.fetcher import ConsumerRecord

from streamae.demo.simulate import SENSORS, simulate, to_messages
from streamae.serving.decode import ReadingDecoder

N = 100_000


def records(batch: int = 1) -> list[ConsumerRecord]:
    frame = simulate(entities=10, duration_s=N * 6.0, interval_s=60.0, anomalies_per_entity=0).frame
    return [
        ConsumerRecord(
            topic="in",
            partition=0,
            leader_epoch=0,
            offset=i,
            timestamp=0,
            timestamp_type=0,
            key=k,
            value=v,
            headers=[],
            checksum=None,
            serialized_key_size=len(k),
            serialized_value_size=len(v),
            serialized_header_size=-1,
        )
        for i, (k, v) in enumerate(to_messages(frame.head(N), batch))
    ]


def stdlib_baseline(recs: list[ConsumerRecord]) -> int:
    rows, keys, ts = [], [], []
    for r in recs:
        doc = json.loads(r.value)
        for item in doc if isinstance(doc, list) else [doc]:
            rows.append([float(item["values"][f]) for f in SENSORS])
            keys.append(item["key"])
            ts.append(float(item["ts"]))
    np.asarray(rows, dtype=np.float32)
    return len(rows)


def run() -> list[Result]:
    single = records(1)
    decoder = ReadingDecoder(SENSORS)
    ours = best_rate(lambda: len(decoder.decode(single)[0]))
    base = best_rate(lambda: stdlib_baseline(single))
    listed = records(50)
    ours_list = best_rate(lambda: len(decoder.decode(listed)[0]))
    return [
        Result("decode: stdlib json baseline, 1 reading/message", base, "readings/s"),
        Result(
            "decode: streamae (orjson), 1 reading/message", ours, "readings/s", f"{ours / base:.1f}x baseline"
        ),
        Result(
            "decode: streamae (orjson), 50 readings/message",
            ours_list,
            "readings/s",
            f"{ours_list / base:.1f}x baseline",
        ),
    ]


if __name__ == "__main__":  # .venv/bin/python bench/decode.py: decoding alone, no Kafka
    for r in run():
        print(f"{r.name:<50} {r.value:>12,.0f} {r.unit}  {r.note}")
