"""Card transactions: streamae's scores against a global IsolationForest and PCA on the same rows.

    python bench/transactions.py NORMAL.csv TEST.csv SCORES.csv

with the files and commands in docs/benchmarks.md ("Card transactions"): the first half of
the accounts' history trains, the second half (SCORES.csv: ``streamae score`` of it) is judged.

The baselines see each transaction alone (one-hot fields and log-amount), fitted on the same
normal history; every method is judged on the rows that end a scored window (labels: the
simulator's, used for the metrics only).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

CATEGORICAL = ["merchant_category", "country", "channel"]


def _design(frame: pd.DataFrame, columns: pd.Index | None = None) -> pd.DataFrame:
    x = pd.get_dummies(frame[CATEGORICAL].astype(str)).assign(log_amount=np.log1p(frame["amount"]))
    return (x if columns is None else x.reindex(columns=columns, fill_value=0)).astype(float)


def main(normal: str, test: str, scores: str) -> None:
    train, held, ours = pd.read_csv(normal), pd.read_csv(test), pd.read_csv(scores)
    joined = ours.merge(held[["timestamp", "key", "label"]].reset_index(), on=["timestamp", "key"])
    y, rows = joined["label"].to_numpy(), joined["index"].to_numpy()
    x_train = _design(train)
    x_test = _design(held, x_train.columns)
    forest = -IsolationForest(random_state=0).fit(x_train).score_samples(x_test)[rows]
    mu, sd = x_train.mean(), x_train.std().replace(0, 1)
    pca = PCA(0.95).fit(((x_train - mu) / sd).to_numpy())
    z = ((x_test - mu) / sd).to_numpy()
    residual = ((z - pca.inverse_transform(pca.transform(z))) ** 2).sum(axis=1)[rows]
    print(f"{len(y)} rows, {int(y.sum())} fraudulent ({y.mean():.2%})")
    print("| method | PR-AUC | ROC-AUC |\n|---|---:|---:|")
    for name, s in (("streamae", joined["score"].to_numpy()), ("IsolationForest", forest), ("PCA", residual)):
        print(f"| {name} | {average_precision_score(y, s):.3f} | {roc_auc_score(y, s):.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
