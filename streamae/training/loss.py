"""The reconstruction loss per field kind: squared error on numeric columns, cross-entropy on
each categorical field's one-hot columns (the reconstruction read as logits).

Each field weighs the same, however many columns it has: the loss is the mean over fields of
the numeric columns' mean squared error and the categorical groups' mean cross-entropy, so a
field of 20 categories does not drown the amount, nor the amount the categories. The scoring
graph computes the same elementwise error (``core/score_graph._cross_entropy_nodes``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from streamae.core.score_graph import LOGIT_CLIP, one_hot_matrices


class FieldLoss(nn.Module):
    """MSE for numeric columns, cross-entropy for one-hot ``groups`` (``(F,)``, -1: numeric)."""

    def __init__(self, groups: np.ndarray) -> None:
        super().__init__()
        same, _, mask = one_hot_matrices(groups)
        self.register_buffer("same", torch.from_numpy(same))
        self.register_buffer("mask", torch.from_numpy(mask))
        self.n_numeric = int((np.asarray(groups) < 0).sum())
        self.n_groups = len(set(np.asarray(groups)[np.asarray(groups) >= 0].tolist()))

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:
        numeric = 1 - self.mask
        terms = []
        if self.n_numeric:
            mse = ((recon - x).square() * numeric).sum(dim=-1) / self.n_numeric
            terms.append(mse.mean() * self.n_numeric)
        logits = recon.clamp(-LOGIT_CLIP, LOGIT_CLIP)
        log_p = logits - torch.log(torch.exp(logits) @ self.same)
        ce = -(x * log_p * self.mask).sum(dim=-1) / self.n_groups  # mean over the groups
        terms.append(ce.mean() * self.n_groups)
        return sum(terms) / (self.n_numeric + self.n_groups)


def reconstruction_loss(loss: str, groups: np.ndarray | None) -> nn.Module:
    """The training loss: :class:`FieldLoss` when some column is one-hot, else MSE (or BCE,
    whose targets must lie in [0, 1])."""
    if groups is not None and (np.asarray(groups) >= 0).any():
        return FieldLoss(groups)
    return nn.BCELoss() if loss == "bce" else nn.MSELoss()
