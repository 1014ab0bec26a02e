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

    same: Tensor  # (F, F): 1 where two columns share a group (buffers, so .to(device) moves them)
    mask: Tensor  # (F,): 1 on one-hot columns

    def __init__(self, groups: np.ndarray) -> None:
        super().__init__()
        same, _, mask = one_hot_matrices(groups)
        self.register_buffer("same", torch.from_numpy(same))
        self.register_buffer("mask", torch.from_numpy(mask))
        self.n_numeric = int((np.asarray(groups) < 0).sum())
        self.n_groups = len(set(np.asarray(groups)[np.asarray(groups) >= 0].tolist()))

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:
        logits = recon.clamp(-LOGIT_CLIP, LOGIT_CLIP)
        log_p = logits - torch.log(torch.exp(logits) @ self.same)
        # summed over the groups' columns: per reading, the sum of its groups' cross-entropies
        total = -(x * log_p * self.mask).sum(dim=-1).mean()
        if self.n_numeric:
            total = total + ((recon - x).square() * (1 - self.mask)).sum(dim=-1).mean()
        return total / (self.n_numeric + self.n_groups)


def reconstruction_loss(loss: str, groups: np.ndarray | None) -> nn.Module:
    """The training loss: :class:`FieldLoss` when some column is one-hot, else MSE (or BCE,
    whose targets must lie in [0, 1])."""
    if groups is not None and (np.asarray(groups) >= 0).any():
        return FieldLoss(groups)
    return nn.BCELoss() if loss == "bce" else nn.MSELoss()
