"""Categorical fields and the per-key context: the encoding, the cross-entropy in the scoring
graph, the decoder's categories, and a model whose score a categorical field changes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamae.core.bundle import INPUT_NAME, OUTPUT_NAME, load_bundle
from streamae.core.categories import OTHER
from streamae.core.config import TrainSettings
from streamae.core.encoding import RECENT, Context, Encoding
from streamae.core.fields import InputField
from streamae.core.offline import score_frame
from streamae.core.score_graph import FEATURE_ERROR_NAME, scoring_graph
from streamae.core.scoring import Scorer
from streamae.demo.transactions import simulate_transactions
from streamae.serving.decode import ReadingDecoder
from streamae.training.fit import fit
from tests.unit.test_decode import rec

ENC = Encoding(
    (
        InputField(name="amount", kind="numeric", holds="numbers"),
        InputField(name="country", kind="categorical", holds="text", categories=["DE", "FR"]),
    ),
    Context(recent_s=60),
)


def test_features_are_the_one_hot_columns_and_the_context_with_their_fields():
    assert ENC.features == [
        "amount",
        "country=DE",
        "country=FR",
        f"country={OTHER}",
        "amount/key_median",
        "country/new_for_key",
        "key/gap",
        RECENT,
    ]
    fields, index = ENC.attribution
    assert fields == ["amount", "country", "timing"]
    assert index.tolist() == [0, 1, 1, 1, 0, 1, 2, 2]
    assert ENC.groups.tolist() == [-1, 0, 0, 0, -1, -1, -1, -1]


def test_expand_judges_each_reading_against_the_key_s_earlier_readings_in_the_window():
    # one window of 4 readings: amounts 10, 10, 10, 1000; countries DE, DE, other, DE
    raw = np.array([[[10, 0], [10, 0], [10, 2], [1000, 0]]], np.float32)
    times = np.array([[0.0, 100.0, 130.0, 140.0]])
    x = ENC.expand(raw, times)[0]
    col = {f: x[:, i] for i, f in enumerate(ENC.features)}
    assert col["country=DE"].tolist() == [1, 1, 0, 1] and col[f"country={OTHER}"].tolist() == [0, 0, 1, 0]
    assert col["country/new_for_key"].tolist() == [0, 0, 1, 0]  # DE again at the end is not new
    np.testing.assert_allclose(col["key/gap"], np.log1p([100, 100, 30, 10]), rtol=1e-6)
    assert col[RECENT].tolist() == [0, 0, 1, 2]  # earlier readings within 60 s
    median = np.log1p(10)
    np.testing.assert_allclose(col["amount/key_median"], np.log1p([10, 10, 10, 1000]) - median, rtol=1e-5)


def _offset_model(bias: np.ndarray) -> bytes:
    """reconstruction = windows + bias: a graph whose errors are known in closed form."""
    w, f = bias.shape
    g = helper.make_graph(
        [helper.make_node("Add", [INPUT_NAME, "bias"], [OUTPUT_NAME])],
        "offset",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["m", w, f])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["m", w, f])],
        [numpy_helper.from_array(bias.astype(np.float32), "bias")],
    )
    return onnx.helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    ).SerializeToString()


def test_the_graph_scores_a_one_hot_group_by_its_cross_entropy_and_numbers_by_squared_error():
    groups = np.array([-1, 0, 0, 0])  # a number and a field of three categories
    rng = np.random.default_rng(0)
    bias = rng.normal(size=(2, 4))
    x = np.zeros((5, 2, 4), np.float32)
    x[..., 0] = rng.normal(size=(5, 2))
    x[np.arange(5)[:, None], np.arange(2)[None, :], 1 + rng.integers(0, 3, (5, 2))] = 1.0
    graph = scoring_graph(_offset_model(bias), 2, 4, None, None, groups)
    got = ort.InferenceSession(graph).run([FEATURE_ERROR_NAME], {INPUT_NAME: x})[0]
    logits = x[..., 1:] + bias[:, 1:]
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    ce = -(x[..., 1:] * log_p).sum(axis=-1).mean(axis=1)  # per window, mean over time
    np.testing.assert_allclose(got[:, 0], (bias[:, 0] ** 2).mean(), rtol=1e-5)
    for c in (1, 2, 3):  # the group's cross-entropy, shared evenly by its three columns
        np.testing.assert_allclose(got[:, c], ce / 3, rtol=1e-4)


def test_the_decoder_codes_categories_and_puts_unseen_values_in_the_other_bucket():
    decoder = ReadingDecoder(["amount", "country"], categories={"country": ["DE", "FR"]})
    good = [
        rec({"key": "a", "ts": 1, "values": {"amount": 5, "country": "FR"}}, offset=0),
        rec({"key": "a", "ts": 2, "values": {"amount": 6, "country": "JP"}}, offset=1),
        rec({"key": "a", "ts": 3, "values": {"amount": 7, "country": None}}, offset=2),
    ]
    bad = [
        rec({"key": "a", "ts": 4, "values": {"amount": 8, "country": 49}}, offset=3),
        rec({"key": "a", "ts": 5, "values": {"amount": 9, "country": "x" * 300}}, offset=4),
        rec({"key": "a", "ts": 6, "values": {"amount": "DE", "country": "DE"}}, offset=5),
        # a dead letter for its time: its unseen country is not counted as served
        rec({"key": "a", "ts": "yesterday", "values": {"amount": 9, "country": "JP"}}, offset=6),
    ]
    readings, rejected = decoder.decode([*good, *bad], "in", 0)
    assert readings.values.tolist() == [[5, 1], [6, 2], [7, 2]]
    assert decoder.unseen == {"country": 2}  # JP and the empty value: other, never a dead letter
    assert [r.offset for r in rejected] == [3, 4, 5, 6]
    assert [r.code for r in rejected] == [
        "not_a_category",
        "not_a_category",
        "not_a_number",
        "invalid_timestamp",
    ]
    assert "must be text" in rejected[0].reason and "the limit is 256" in rejected[1].reason


@pytest.fixture(scope="module")
def card_history() -> pd.DataFrame:
    return simulate_transactions(accounts=40, days=20, frauds_per_account=0, seed=3).frame


@pytest.fixture(scope="module")
def card_bundles(card_history, tmp_path_factory) -> dict[str, Scorer]:
    """The same dense model on the card history, with and without the country field."""
    out = {}
    for name, ignore in (("with", []), ("without", ["country"])):
        cfg = TrainSettings(
            variant="dense",
            window=8,
            epochs=25,
            ignore=ignore,
            feature_norm=True,
            feature_pool="max",
            time_weighting="recent",
        )
        path = tmp_path_factory.mktemp(f"cards-{name}")
        fit(card_history.drop(columns=["label", "anomaly_type"]), path, cfg, "cards", progress=False)
        out[name] = Scorer(load_bundle(path))
    return out


def test_a_country_new_for_the_account_scores_above_its_normal_windows(card_history, card_bundles):
    """Only the country of one transaction changes, to one the account never uses but that
    other accounts use every day: it must score above all of the account's normal windows,
    name the country, and do nothing to a model that does not read the field."""
    frame = card_history.drop(columns=["label", "anomaly_type"])
    counts = frame.groupby("key").size()
    key = str(counts.idxmax())
    own = set(frame.loc[frame.key == key, "country"])
    vocab = card_bundles["with"].encoding.categories["country"]
    foreign = next(c for c in vocab if c not in own)
    row = frame.index[frame.key == key][-1]
    odd = frame.copy()
    odd.loc[row, "country"] = foreign

    def last_and_rest(scorer: Scorer, f: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
        s = score_frame(f, scorer, "cards")
        mine = s[s.key == key]
        return mine.iloc[-1], mine.iloc[:-1]

    last, rest = last_and_rest(card_bundles["with"], odd)
    assert last.raw_score > rest.raw_score.max()
    assert json.loads(last.top_features)[0]["feature"] == "country"
    without = card_bundles["without"]
    assert last_and_rest(without, odd)[0].raw_score == last_and_rest(without, frame)[0].raw_score
