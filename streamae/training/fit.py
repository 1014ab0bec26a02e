"""Offline training: normal-only history → autoencoder → calibrated threshold → bundle.

Windows are split by time: the first 70 % train the model, the next 15 % decide early
stopping, the last 15 % (never seen by the optimiser) calibrate the threshold. Threshold
and per-feature statistics come from the ONNX export, the exact graph the daemon runs.
Every variant shares this machinery; what differs lives in the model's ``training_loss``.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from streamae import __version__
from streamae.core.bundle import CODE_NAME, DECODER, INPUT_NAME, OUTPUT_NAME, Bundle, write_bundle
from streamae.core.config import ConfigError, TrainSettings
from streamae.core.readings import DataError, feature_columns, frame_to_readings
from streamae.core.scoring import feature_errors, run_chunked
from streamae.core.smoothing import ewma
from streamae.core.windows import Windows, WindowStore
from streamae.training.calibration import calibrate
from streamae.training.models import Autoencoder, PCAReconstructor, build_model

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
MIN_WINDOWS = 50
SCORE_FLOOR = 1e-9
TRAINING_PLOT = "training.png"  # beside the bundle's files, not part of its checksum


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, val_loss, lr


def split_by_time(windows: Windows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks for train / validation / calibration windows; later sets start after the cut."""
    cut1, cut2 = np.quantile(windows.end_ts, [0.70, 0.85])
    train = windows.end_ts <= cut1
    val = (windows.start_ts > cut1) & (windows.end_ts <= cut2)
    calib = windows.start_ts > cut2
    return train, val, calib


def _to_onnx(module: nn.Module, example: Tensor, inputs: list[str], outputs: list[str]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter is fast and exact for these graphs; dynamo adds seconds.
        torch.onnx.export(
            module,
            (example,),
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


def export_onnx(model: Autoencoder, window: int, n_features: int) -> bytes:
    """The model as ONNX bytes: ``windows`` → ``reconstruction`` and ``code``, dynamic batch."""
    model = model.eval().cpu()
    return _to_onnx(model, torch.zeros(2, window, n_features), [INPUT_NAME], [OUTPUT_NAME, CODE_NAME])


class _Decoder(nn.Module):
    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor) -> Tensor:
        return self.model.decode(z)


def export_decoder(model: Autoencoder, code_size: int) -> bytes:
    """The decoder alone as ONNX bytes: ``code`` → ``reconstruction`` (for sampling)."""
    model = model.eval().cpu()
    return _to_onnx(_Decoder(model), torch.zeros(2, code_size), [CODE_NAME], [OUTPUT_NAME])


def onnx_reconstruct(model_bytes: bytes, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction and code of windows ``x`` (already scaled) by an exported graph."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    recon, code = run_chunked(session, [OUTPUT_NAME, CODE_NAME], INPUT_NAME, x, batch)
    return recon, code


def torch_reconstruct(model: Autoencoder, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The same as :func:`onnx_reconstruct`, computed by PyTorch (for parity checks)."""
    model = model.eval().cpu()
    with torch.no_grad():
        parts = [model(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate([p[0].numpy() for p in parts]), np.concatenate([p[1].numpy() for p in parts])


def parity(model: Autoencoder, model_bytes: bytes, x: np.ndarray) -> float:
    """Largest difference between ONNX and PyTorch outputs (reconstruction and code), as
    ``|onnx - torch| / (1 + |torch|)``: absolute near zero, relative for large outputs,
    where float32 rounding alone differs by more than a fixed absolute tolerance."""
    a, b = onnx_reconstruct(model_bytes, x), torch_reconstruct(model, x)
    return max(float((np.abs(p - q) / (1 + np.abs(q))).max()) for p, q in zip(a, b))


def fit(
    frame: pd.DataFrame,
    out_dir: Path | str,
    cfg: TrainSettings,
    source: str = "history",
    progress: bool = True,
) -> TrainResult:
    """Train on a normal-only history frame (see ``readings.read_table``); write a bundle."""
    out_dir = Path(out_dir)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: no CUDA device is available to PyTorch here")
    features = feature_columns(frame)
    if not features:
        raise DataError(f"{source}: no numeric feature columns")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    readings = frame_to_readings(frame, features, source)
    windows = WindowStore(cfg.window, cfg.stride, len(features)).push(readings)
    normal_rows = np.ones(len(readings), dtype=bool)
    excluded = 0
    if "label" in frame.columns:
        # "normal-only" history may still carry labelled incidents: keep them out of
        # training and calibration rather than trust the caller to have removed them
        labels = frame_to_readings(frame, ["label"], source)
        normal_rows = labels.values[:, 0] == 0
        dirty = WindowStore(cfg.window, cfg.stride, 1).push(labels).data.max(axis=(1, 2)) > 0
        excluded = int(dirty.sum())
        windows = windows.select(~dirty)
        if excluded:
            log.info("%s: %d windows touch labelled rows and are left out", source, excluded)
    if len(windows) < MIN_WINDOWS:
        raise DataError(f"{source}: only {len(windows)} windows of {cfg.window} readings; need {MIN_WINDOWS}")
    train, val, calib = split_by_time(windows)
    if min(train.sum(), val.sum(), calib.sum()) < 5:
        raise DataError(f"{source}: too little history to split into train/validation/calibration")

    train_rows = (readings.ts <= windows.end_ts[train].max()) & normal_rows
    center, scale = _scaler(readings.values[train_rows], cfg.loss)
    x = ((windows.data - center) / scale).astype(np.float32)
    x_train, x_val, x_cal = x[train], x[val], x[calib]

    model = build_model(
        cfg.variant,
        cfg.window,
        len(features),
        cfg.hidden,
        cfg.code,
        sigmoid_output=cfg.loss == "bce",
        noise=cfg.noise,
        sparsity=cfg.sparsity,
        contractive=cfg.contractive,
        beta=cfg.beta,
    )
    extra_metrics: dict[str, float] = {}
    if isinstance(model, PCAReconstructor):
        extra_metrics["explained_variance"] = model.fit(x_train)
        losses = [float(np.square(torch_reconstruct(model, v)[0] - v).mean()) for v in (x_train, x_val)]
        history = [{"epoch": 1, "train_loss": losses[0], "val_loss": losses[1], "lr": 0.0}]
    else:
        history = _optimise(model, x_train, x_val, cfg, rng, progress)

    model_bytes = export_onnx(model, cfg.window, len(features))
    diff = parity(model, model_bytes, x_cal)
    if diff > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} > {PARITY_TOLERANCE}")
    recon_cal, code_cal = onnx_reconstruct(model_bytes, x_cal)
    # a perfectly reconstructed signal (a flat line, PCA on a constant) scores 0 everywhere;
    # float32 resolution is the smallest error that means anything, so scores start there
    cal_scores = np.maximum(feature_errors(x_cal, recon_cal).mean(axis=1), SCORE_FLOOR)
    if cfg.ewma_alpha < 1:
        cal_scores = ewma(cal_scores, cfg.ewma_alpha, windows.keys[calib])
    try:
        cal = calibrate(
            cal_scores, cfg.threshold, quantile=cfg.quantile, k=cfg.sigma_k, target_far=cfg.target_far
        )
    except ValueError as exc:
        raise DataError(
            f"{source}: threshold calibration on {int(calib.sum())} windows failed: {exc}"
        ) from None
    train_fe = feature_errors(x_train, onnx_reconstruct(model_bytes, x_train)[0])
    best = min(history, key=lambda h: h["val_loss"])
    extras = {DECODER: export_decoder(model, code_cal.shape[1])} if cfg.variant == "variational" else {}
    fields: dict[str, Any] = {
        "model_version": f"{cfg.variant}-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}",
        "variant": cfg.variant,
        "features": features,
        "window": cfg.window,
        "stride": cfg.stride,
        "scaler": {"mean": center.tolist(), "scale": scale.tolist()},
        "loss": cfg.loss,
        "code_size": int(code_cal.shape[1]),
        "threshold": {
            "value": cal["value"],
            "method": cal["method"],
            "params": {k: float(v) for k, v in cal.items() if k not in ("method", "value")},
            "ewma_alpha": cfg.ewma_alpha,
            "calibration_windows": int(calib.sum()),
        },
        "feature_error_scale": np.maximum(train_fe.mean(axis=0), 1e-12).tolist(),
        "metrics": {
            "train_loss": best["train_loss"],
            "val_loss": best["val_loss"],
            "calibration_score_median": float(np.median(cal_scores)),
            "calibration_score_max": float(cal_scores.max()),
            "onnx_parity_max_abs_diff": diff,
            "epochs": float(len(history)),
            **extra_metrics,
        },
        "training": {
            **cfg.model_dump(),
            "windows": {"train": int(train.sum()), "val": int(val.sum()), "calibration": int(calib.sum())},
            "source": source,
            "readings": len(readings),
            "excluded_labelled_windows": excluded,
            "history": history,
        },
        "versions": {"streamae": __version__, "torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    bundle = write_bundle(out_dir, model_bytes, fields, extras=extras)
    from streamae.evaluation.plots import plot_training

    plot_training(history, out_dir / TRAINING_PLOT, f"{cfg.variant} on {Path(source).name}")
    log.info("bundle written to %s (threshold %.4g by %s)", out_dir, cal["value"], cal["method"])
    return TrainResult(bundle, history)


def _scaler(values: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(center, scale)``: standardisation, or min-max to [0, 1] for BCE."""
    if loss == "bce":
        lo, hi = values.min(axis=0).astype(np.float64), values.max(axis=0).astype(np.float64)
        return lo, np.where(hi - lo > 1e-8, hi - lo, 1.0)
    std = values.std(axis=0, dtype=np.float64)
    return values.mean(axis=0, dtype=np.float64), np.where(std > 1e-8, std, 1.0)


def _reconstruction_loss(loss: str) -> nn.Module:
    # BCE targets must lie in [0, 1]; scored data may leave the training range
    return nn.BCELoss() if loss == "bce" else nn.MSELoss()


def _optimise(
    model: Autoencoder,
    x_train: np.ndarray,
    x_val: np.ndarray,
    cfg: TrainSettings,
    rng: np.random.Generator,
    progress: bool,
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
    recon = _reconstruction_loss(cfg.loss)
    mse = nn.MSELoss()
    xt = torch.from_numpy(x_train).to(device)
    xv = torch.from_numpy(x_val).to(device)
    if cfg.loss == "bce":
        xt, xv = xt.clamp(0, 1), xv.clamp(0, 1)
    best, best_state, stale = float("inf"), None, 0
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.epochs), desc=f"training {cfg.variant}", unit="epoch", disable=not progress)
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
            val_loss = float(mse(model(xv)[0], xv))
        lr = opt.param_groups[0]["lr"]
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_loss)
        elif sched is not None:
            sched.step()
        history.append({"epoch": epoch + 1, "train_loss": total / len(xt), "val_loss": val_loss, "lr": lr})
        bar.set_postfix(train=f"{total / len(xt):.4f}", val=f"{val_loss:.4f}")
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
