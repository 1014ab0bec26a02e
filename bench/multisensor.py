"""Multi-sensor benchmark: a proxy of the held-back one of issue 8.

Several units (machines) of ten correlated sensors driven by three shared latent factors
(a daily cycle with slow wander, a slow load, a faster process), each sensor with its own
loadings, offset, scale and coloured noise. Every unit gets 8,000 normal training readings
and a later labelled test stream of 4,000 readings with subtle faults of kinds that
``streamae simulate`` does not make (two of them, the intermittent dropouts and the lag,
resemble generic kinds of the selection's fault family, ``streamae/training/faults.py``):

==================  ====================================================================
``gain_drift``      one sensor's response to the factors grows by up to 80–120 % (ageing)
``decoupling``      one sensor stops following one factor: an independent process with the
                    same statistics takes its place (a broken mechanical link)
``dropouts``        one sensor intermittently reads 0, in bursts of 2–8 readings (about a third)
``slow_bias``       two sensors drift apart slowly, up to ±1.5–2 of their σ (fouling)
``lag``             one sensor answers the factors 10–30 readings late (a clogged line)
``noise_burst``     one sensor gets extra noise of 0.3–0.5 of its factor-driven spread (a
                    loose connector)
==================  ====================================================================

The data come from this file (numpy, fixed seeds), not from streamae's simulator. Each unit
is trained with ``streamae train`` and its test stream (preceded by the last 100 training
readings, so every test row has a full window behind it, as in a live stream) scored with
``streamae score``, both as subprocesses: the product's path, nothing of its own. Metrics
are point-wise on the test rows (a row is flagged when the window ending at it is over
threshold; PR-AUC ranks the raw window scores), averaged over units. Nothing here is tuned
on the test labels: they are read only to compute the metrics.

    .venv/bin/python bench/multisensor.py                   # writes docs/benchmarks.md
    .venv/bin/python bench/multisensor.py --methods default --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, write_section
from scipy.signal import lfilter

from streamae.core.config import VARIANTS
from streamae.evaluation.metrics import point_metrics, ranking_metrics

UNITS = 4
SENSORS = 10
TRAIN_ROWS = 8000
TEST_ROWS = 4000
CONTEXT_ROWS = 100  # training readings streamed before the test rows (window context)
INTERVAL_S = 60.0
T0 = 1_767_225_600.0
DAY_ROWS = int(86400 / INTERVAL_S)
FAULTS = ("gain_drift", "decoupling", "dropouts", "slow_bias", "lag", "noise_burst")
DURATION = (100, 220)  # readings per fault
SEED = 20260801

# method name -> `streamae train` flags (the default is the command with none)
# the default, then every variant pinned at the default window 30, then the residual beside conv
METHODS: dict[str, list[str]] = {
    "default": [],
    **{v: ["--variant", v, "--window", "30"] for v in VARIANTS},
    "conv-residual": ["--variant", "conv", "--window", "30", "--reading-residual", "true"],
}
BASELINE = "per-reading PCA (benchmark's own, 3 components)"


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """AR(1) with stationary standard deviation ``sd``, started in its stationary state."""
    eps = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    eps[0] = rng.normal(0.0, sd)
    out: np.ndarray = lfilter([1.0], [1.0, -phi], eps)
    return out


@dataclass(frozen=True)
class Unit:
    """One machine's fixed character: how its sensors answer the factors."""

    loadings: np.ndarray  # (SENSORS, 3)
    offset: np.ndarray  # (SENSORS,)
    scale: np.ndarray  # (SENSORS,)
    noise: np.ndarray  # (SENSORS,) own noise sd, in factor units
    noise_phi: np.ndarray  # (SENSORS,) how coloured each sensor's own noise is
    phase: float


def unit_character(unit: int) -> Unit:
    rng = np.random.default_rng([SEED, unit])
    loadings = rng.normal(0.0, 1.0, (SENSORS, 3)) * np.array([1.0, 0.7, 0.5])
    return Unit(
        loadings=loadings,
        offset=rng.uniform(10, 100, SENSORS),
        scale=rng.uniform(0.5, 20, SENSORS),
        noise=rng.uniform(0.05, 0.2, SENSORS),
        noise_phi=rng.uniform(0.0, 0.8, SENSORS),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _factors(rng: np.random.Generator, rows: np.ndarray, u: Unit) -> np.ndarray:
    """The three latent factors ``(n, 3)`` at absolute row numbers ``rows``."""
    n = len(rows)
    daily = np.sin(2 * np.pi * rows / DAY_ROWS + u.phase) + _ar1(rng, n, 0.995, 0.4)
    slow = _ar1(rng, n, 0.998, 1.0)
    fast = _ar1(rng, n, 0.9, 1.0)
    return np.column_stack([daily, slow, fast])


def _own_noise(rng: np.random.Generator, n: int, u: Unit) -> np.ndarray:
    return np.column_stack([_ar1(rng, n, u.noise_phi[j], u.noise[j]) for j in range(SENSORS)])


def _readings(
    factors: np.ndarray, noise: np.ndarray, u: Unit, loadings: np.ndarray | None = None
) -> np.ndarray:
    lo = u.loadings if loadings is None else loadings
    return u.offset + u.scale * (factors @ lo.T + noise)


def unit_data(unit: int) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, int, int]]]:
    """Training history, labelled test stream and the faults ``(kind, start, end)`` (test rows,
    inclusive) of one unit."""
    u = unit_character(unit)
    rng = np.random.default_rng([SEED, unit, 1])
    n = TRAIN_ROWS + TEST_ROWS
    rows = np.arange(n)
    f = _factors(rng, rows, u)
    e = _own_noise(rng, n, u)
    values = _readings(f, e, u)
    test = values[TRAIN_ROWS:].copy()
    labels = np.zeros(TEST_ROWS, dtype=np.int8)
    faults = []
    starts = np.linspace(150, TEST_ROWS - 400, len(FAULTS)).astype(int)
    order = rng.permutation(len(FAULTS))
    for i, k in enumerate(order):
        kind = FAULTS[k]
        start = int(starts[i] + rng.integers(0, 120))
        length = int(rng.integers(DURATION[0], DURATION[1] + 1))
        end = min(start + length - 1, TEST_ROWS - 1)
        _fault(rng, kind, test, start, end, u, f[TRAIN_ROWS:], e[TRAIN_ROWS:])
        labels[start : end + 1] = 1
        faults.append((kind, start, end))
    t = T0 + INTERVAL_S * rows
    key = f"unit-{unit + 1}"
    cols = [f"s{j:02d}" for j in range(SENSORS)]
    history = pd.DataFrame(values[:TRAIN_ROWS], columns=cols)
    history.insert(0, "timestamp", t[:TRAIN_ROWS])
    history.insert(1, "key", key)
    stream = pd.DataFrame(test, columns=cols)
    stream.insert(0, "timestamp", t[TRAIN_ROWS:])
    stream.insert(1, "key", key)
    stream["label"] = labels
    return history, stream, faults


def _fault(
    rng: np.random.Generator,
    kind: str,
    test: np.ndarray,
    start: int,
    end: int,
    u: Unit,
    f: np.ndarray,
    e: np.ndarray,
) -> None:
    """Apply one fault to the test readings in place (rows ``start..end``)."""
    seg = slice(start, end + 1)
    n = end - start + 1
    j = int(rng.integers(SENSORS))
    if kind == "gain_drift":
        gain = 1 + np.linspace(0, rng.uniform(0.8, 1.2), n)
        mean = u.offset[j] + u.scale[j] * (f.mean(axis=0) @ u.loadings[j])
        test[seg, j] = mean + (test[seg, j] - mean) * gain
    elif kind == "decoupling":
        k = int(np.argmax(np.abs(u.loadings[j])))  # the factor it follows most
        phi = (0.995, 0.998, 0.9)[k]
        replaced = f[seg].copy()
        replaced[:, k] = _ar1(rng, n, phi, float(f[:, k].std())) + f[start, k]
        test[seg, j] = _readings(replaced, e[seg], u)[:, j]
    elif kind == "dropouts":
        drop = np.zeros(n, dtype=bool)
        i = 0
        while i < n:  # alternate: 2-8 readings lost, then 4-16 normal ones
            burst = int(rng.integers(2, 9))
            drop[i : i + burst] = True
            i += burst + int(rng.integers(4, 17))
        test[start : end + 1, j][drop] = 0.0
    elif kind == "slow_bias":
        a, b = rng.choice(SENSORS, 2, replace=False)
        for c, sign in ((a, 1.0), (b, -1.0)):
            sd = test[:, c].std()
            test[seg, c] += sign * np.linspace(0, rng.uniform(1.5, 2.0) * sd, n)
    elif kind == "lag":
        d = int(rng.integers(10, 31))
        lagged = f[np.maximum(np.arange(start, end + 1) - d, 0)]
        test[seg, j] = _readings(lagged, e[seg], u)[:, j]
    elif kind == "noise_burst":
        extra = rng.normal(0.0, rng.uniform(0.3, 0.5), n)
        test[seg, j] += u.scale[j] * extra
    else:
        raise ValueError(kind)


def pca_baseline(
    history: pd.DataFrame, stream: pd.DataFrame, cols: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The ten-line per-reading PCA: 3 components of standardised single readings, threshold
    at the 99th percentile of the training error. Flags and scores per test row."""
    x = history[cols].to_numpy(float)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    z = (x - mu) / sd
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    v = vt[:3].T

    def err(a: np.ndarray) -> np.ndarray:
        s = (a - mu) / sd
        out: np.ndarray = np.square(s - s @ v @ v.T).sum(axis=1)
        return out

    threshold = np.quantile(err(x), 0.99)
    scores = err(stream[cols].to_numpy(float))
    return scores > threshold, scores


def _streamae(args: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-m", "streamae", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"streamae {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def run_product(method: str, unit: int, work: Path, threads: int) -> dict:
    """``streamae train`` (flags of ``method``) and ``streamae score`` on one unit."""
    history, stream, _ = unit_data(unit)
    d = work / f"unit-{unit + 1}"
    d.mkdir(parents=True, exist_ok=True)
    hist_csv, stream_csv = d / "history.csv", d / "stream.csv"
    history.to_csv(hist_csv, index=False)
    # the stream as the daemon sees it: the last training readings, then the test rows
    context = history.tail(CONTEXT_ROWS).assign(label=0)
    pd.concat([context, stream]).to_csv(stream_csv, index=False)
    bundle, scores_csv = d / method, d / f"{method}.scores.csv"
    started = time.perf_counter()
    _streamae(["train", str(hist_csv), "-o", str(bundle), "-q", *METHODS[method]], threads)
    train_s = time.perf_counter() - started
    _streamae(["score", str(bundle), str(stream_csv), "-o", str(scores_csv)], threads)
    scores = pd.read_csv(scores_csv)
    row = scores["source_offset_end"].to_numpy() - CONTEXT_ROWS  # offsets are rows of stream.csv
    keep = row >= 0
    flags, raw = np.zeros(TEST_ROWS, bool), np.zeros(TEST_ROWS)
    flags[row[keep]] = scores["is_anomaly"].to_numpy()[keep]
    raw[row[keep]] = (scores["score"] / scores["threshold"]).to_numpy()[keep]
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    chosen = _describe(manifest)
    return {
        "flags": flags,
        "scores": raw,
        "labels": stream["label"].to_numpy(),
        "train_s": train_s,
        "chosen": chosen,
    }


def _describe(manifest: dict) -> str:
    """The bundle's model and score as ``streamae inspect`` names a selection candidate."""
    from streamae.core.manifest import CandidateSettings

    score = {k: v for k, v in manifest.get("score", {}).items() if k in CandidateSettings.model_fields}
    return CandidateSettings(variant=manifest["variant"], window=manifest["window"], **score).describe()


def run_baseline(unit: int) -> dict:
    history, stream, _ = unit_data(unit)
    cols = [c for c in history.columns if c.startswith("s")]
    flags, scores = pca_baseline(history, stream, cols)
    return {
        "flags": flags,
        "scores": scores,
        "labels": stream["label"].to_numpy(),
        "train_s": 0.0,
        "chosen": "",
    }


def summarise(name: str, per_unit: list[dict]) -> dict:
    f1 = [point_metrics(r["labels"], r["flags"])["f1"] for r in per_unit]
    ap = [ranking_metrics(r["labels"], r["scores"])["pr_auc_average_precision"] for r in per_unit]
    far = [point_metrics(r["labels"], r["flags"])["false_alarm_rate_pct"] for r in per_unit]
    return {
        "name": name,
        "f1": float(np.mean(f1)),
        "pr_auc": float(np.mean(ap)),
        "far": float(np.mean(far)),
        "f1_units": f1,
        "train_s": float(np.mean([r["train_s"] for r in per_unit])),
        "chosen": [r["chosen"] for r in per_unit],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--units", type=int, default=UNITS)
    p.add_argument("--jobs", type=int, default=1, help="units trained at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--work", type=Path, default=ROOT / ".bench" / "multisensor")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    started = time.perf_counter()
    units = list(range(args.units))
    rows = [summarise(BASELINE, [run_baseline(u) for u in units])]
    print(_line(rows[-1]), flush=True)
    for method in args.methods:
        with ThreadPoolExecutor(args.jobs) as pool:
            n = len(units)
            per_unit = list(pool.map(run_product, [method] * n, units, [args.work] * n, [args.threads] * n))
        rows.append(summarise(method, per_unit))
        print(_line(rows[-1]), flush=True)
    if not args.no_write:
        write_section("multisensor", report(rows, time.perf_counter() - started, args))
    return 0


def _line(r: dict) -> str:
    units = " ".join(f"{f:.2f}" for f in r["f1_units"])
    chosen = f"  [{'; '.join(r['chosen'])}]" if any(r["chosen"]) else ""
    return (
        f"{r['name']:12s} F1 {r['f1']:.3f} PR-AUC {r['pr_auc']:.3f} FAR {r['far']:.2f}% ({units}) "
        f"train {r['train_s']:.0f} s{chosen}"
    )


def report(rows: list[dict], seconds: float, args: argparse.Namespace) -> str:
    lines = [
        "## Detection: multi-sensor units (proxy of the held-back benchmark)",
        "",
        f"Command: `.venv/bin/python bench/multisensor.py --jobs {args.jobs}` — {platform.machine()}, "
        f"{os.cpu_count()} cores, run time {seconds / 60:.1f} min, "
        f"{pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Data (generated by the benchmark): {args.units} units × {SENSORS} sensors driven by 3 shared "
        f"factors; {TRAIN_ROWS:,} normal training readings and a {TEST_ROWS:,}-reading test stream per "
        f"unit with one fault of each kind ({', '.join(FAULTS)}). Point-wise F1 (the window ending at "
        "each test row, threshold from training only) and PR-AUC, averaged over units. "
        "`streamae` rows run `streamae train` then `streamae score`; *default* is `streamae train` "
        "with no flags (label-free selection); `--variant dense` is what it trained before "
        "(dense, window 30).",
        "",
        "How far to trust it: the generator's noise and fault sizes were set (three tries, "
        "looking at the per-reading PCA only) before any streamae detector ran on it, so that "
        "the per-reading PCA lands near the held-back benchmark's 0.69 (0.60 here); the pinned "
        "variants then came out close to the issue's held-back figures for conv (0.78) but not "
        "for dense (0.49) and windowed pca (0.40). Selection never sees these labels, but its "
        "fault family and this benchmark have one author, and two of the family's generic "
        "kinds (`intermittent`, `lag`) resemble two of the benchmark's (`dropouts`, `lag`): "
        "read the default's margin here as optimistic for the held-back benchmark.",
        "",
        "| detector | mean F1 | mean PR-AUC | mean FAR % | F1 per unit | train s/unit | chosen |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        name = (
            r["name"]
            if r["name"] == BASELINE
            else f"streamae {' '.join(METHODS[r['name']]) or 'train (default)'}"
        )
        lines.append(
            f"| {name} | {r['f1']:.2f} | {r['pr_auc']:.2f} | {r['far']:.2f} | "
            f"{' '.join(f'{f:.2f}' for f in r['f1_units'])} | {r['train_s']:.0f} | "
            f"{'; '.join(r['chosen']) if any(r['chosen']) else '-'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
