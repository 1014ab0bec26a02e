"""Fitting a model of the family to scaled training windows.

Networks: Adam on the variant's training loss, a learning-rate schedule, early stopping on
the validation *reconstruction* error (comparable across variants), the best weights kept.
PCA: closed form. Randomness (initial weights, shuffling, corruption) comes from the seeds
the caller sets, so a rerun fits the same model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from streamae.core.config import TrainSettings
from streamae.core.progress_bar import Progress
from streamae.training.export import torch_reconstruct
from streamae.training.loss import reconstruction_loss
from streamae.training.models import Autoencoder, PCAReconstructor, build_model


def train_model(
    x_train: np.ndarray,
    x_val: np.ndarray,
    n_features: int,
    cfg: TrainSettings,
    rng: np.random.Generator,
    progress: bool,
    groups: np.ndarray | None = None,
) -> tuple[Autoencoder, list[dict[str, float]], dict[str, float]]:
    """A ``cfg.variant`` model fitted to scaled windows: the model (best weights), its curve
    (per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``lr``) and any metric of its own
    (pca: ``explained_variance``). ``groups``: the columns' one-hot groups
    (``training/loss.py``), None when all are numeric."""
    model = build_model(
        cfg.variant,
        cfg.window,
        n_features,
        cfg.hidden,
        cfg.code,
        sigmoid_output=cfg.loss == "bce",
        noise=cfg.noise,
        sparsity=cfg.sparsity,
        contractive=cfg.contractive,
        beta=cfg.beta,
    )
    if not isinstance(model, PCAReconstructor):
        return model, _optimise(model, x_train, x_val, cfg, rng, progress, groups), {}
    explained = model.fit(x_train)
    losses = [float(np.square(torch_reconstruct(model, v)[0] - v).mean()) for v in (x_train, x_val)]
    history = [{"epoch": 1, "train_loss": losses[0], "val_loss": losses[1], "lr": 0.0}]
    return model, history, {"explained_variance": explained}


def _optimise(
    model: Autoencoder,
    x_train: np.ndarray,
    x_val: np.ndarray,
    cfg: TrainSettings,
    rng: np.random.Generator,
    progress: bool,
    groups: np.ndarray | None,
) -> list[dict[str, float]]:
    """Adam on the variant's training loss, early stopping on validation *reconstruction*
    loss (comparable across variants); restores the best weights."""
    device = torch.device(cfg.device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched: Any = None
    if cfg.lr_schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    elif cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    recon = reconstruction_loss(cfg.loss, groups).to(device)
    val_error = reconstruction_loss("mse", groups).to(device)  # early stopping: plain error
    xt = torch.from_numpy(x_train).to(device)
    xv = torch.from_numpy(x_val).to(device)
    if cfg.loss == "bce":
        xt, xv = xt.clamp(0, 1), xv.clamp(0, 1)
    best, best_state, stale = float("inf"), None, 0
    history: list[dict[str, float]] = []
    bar = Progress(range(cfg.epochs), f"training {cfg.variant}", "epoch", progress)
    for epoch in bar:
        model.train()
        perm = torch.from_numpy(rng.permutation(len(xt))).to(device)
        total = 0.0
        for i in range(0, len(xt), cfg.batch_size):
            xb = xt[perm[i : i + cfg.batch_size]]
            opt.zero_grad()
            loss = model.training_loss(xb, recon)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        model.eval()
        with torch.no_grad():
            val_loss = float(val_error(model(xv)[0], xv))
        lr = opt.param_groups[0]["lr"]
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_loss)
        elif sched is not None:
            sched.step()
        history.append({"epoch": epoch + 1, "train_loss": total / len(xt), "val_loss": val_loss, "lr": lr})
        bar.set_postfix_str(f"train={total / len(xt):.4f}, val={val_loss:.4f}")
        if val_loss < best - 1e-6:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
