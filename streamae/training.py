"""Offline training: normal-only history → autoencoder → calibrated threshold → bundle.

Windows are split by time: the first 70 % train the model, the next 15 % decide early
stopping, the last 15 % (never seen by the optimiser) calibrate the threshold. Threshold
and per-feature statistics come from the ONNX export, the exact graph the daemon runs.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from streamae import __version__
from streamae.bundle import INPUT_NAME, OUTPUT_NAME, Bundle, write_bundle
from streamae.config import ConfigError
from streamae.models import build_model
from streamae.readings import DataError, feature_columns, frame_to_readings
from streamae.scoring import feature_errors
from streamae.windows import Windows, WindowStore

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
MIN_WINDOWS = 50


@dataclass(frozen=True)
class TrainConfig:
    variant: str = "dense"
    window: int = 30
    stride: int = 1
    hidden: int = 64
    code: int = 8
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 6
    threshold_quantile: float = 0.995
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    history: list[dict[str, float]]


def split_by_time(windows: Windows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks for train / validation / calibration windows; later sets start after the cut."""
    cut1, cut2 = np.quantile(windows.end_ts, [0.70, 0.85])
    train = windows.end_ts <= cut1
    val = (windows.start_ts > cut1) & (windows.end_ts <= cut2)
    calib = windows.start_ts > cut2
    return train, val, calib


def export_onnx(model: nn.Module, window: int, n_features: int) -> bytes:
    """The model as ONNX bytes with a dynamic batch axis."""
    model = model.eval().cpu()
    buf = io.BytesIO()
    example = torch.zeros(2, window, n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter is fast and exact for these graphs; dynamo adds seconds.
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


def onnx_reconstruct(model_bytes: bytes, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    parts = [session.run(None, {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.empty_like(x)


def torch_reconstruct(model: nn.Module, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    model = model.eval().cpu()
    with torch.no_grad():
        parts = [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.empty_like(x)


def fit(frame: pd.DataFrame, out_dir: Path, cfg: TrainConfig, source: str = "history") -> TrainResult:
    """Train on a normal-only history frame (see ``readings.read_table``); write a bundle."""
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
    mean = readings.values[train_rows].mean(axis=0, dtype=np.float64)
    std = readings.values[train_rows].std(axis=0, dtype=np.float64)
    scale = np.where(std > 1e-8, std, 1.0)
    x = ((windows.data - mean) / scale).astype(np.float32)
    x_train, x_val, x_cal = x[train], x[val], x[calib]

    model = build_model(cfg.variant, cfg.window, len(features), hidden=cfg.hidden, code=cfg.code)
    history = _optimise(model, x_train, x_val, cfg, rng)

    model_bytes = export_onnx(model, cfg.window, len(features))
    recon_cal = onnx_reconstruct(model_bytes, x_cal)
    parity = float(np.abs(recon_cal - torch_reconstruct(model, x_cal)).max())
    if parity > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from PyTorch by {parity:.2e} > {PARITY_TOLERANCE}")
    cal_scores = feature_errors(x_cal, recon_cal).mean(axis=1)
    threshold = float(np.quantile(cal_scores, cfg.threshold_quantile))
    train_fe = feature_errors(x_train, onnx_reconstruct(model_bytes, x_train))
    best = min(history, key=lambda h: h["val_loss"])
    fields: dict[str, Any] = {
        "model_version": f"{cfg.variant}-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}",
        "variant": cfg.variant,
        "features": features,
        "window": cfg.window,
        "stride": cfg.stride,
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
        "threshold": {
            "value": threshold,
            "method": "quantile",
            "quantile": cfg.threshold_quantile,
            "calibration_windows": int(calib.sum()),
        },
        "feature_error_scale": np.maximum(train_fe.mean(axis=0), 1e-12).tolist(),
        "metrics": {
            "train_loss": best["train_loss"],
            "val_loss": best["val_loss"],
            "calibration_score_median": float(np.median(cal_scores)),
            "calibration_score_max": float(cal_scores.max()),
            "onnx_parity_max_abs_diff": parity,
            "epochs": float(len(history)),
        },
        "training": {
            **asdict(cfg),
            "windows": {"train": int(train.sum()), "val": int(val.sum()), "calibration": int(calib.sum())},
            "source": source,
            "readings": len(readings),
            "excluded_labelled_windows": excluded,
        },
        "versions": {"streamae": __version__, "torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    bundle = write_bundle(out_dir, model_bytes, fields)
    log.info("bundle written to %s (threshold %.4g)", out_dir, threshold)
    return TrainResult(bundle, history)


def _optimise(
    model: nn.Module,
    x_train: np.ndarray,
    x_val: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator,
) -> list[dict[str, float]]:
    """Adam on MSE with early stopping on validation loss; restores the best weights."""
    device = torch.device(cfg.device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    loss_fn = nn.MSELoss()
    xt = torch.from_numpy(x_train).to(device)
    xv = torch.from_numpy(x_val).to(device)
    best, best_state, stale = float("inf"), None, 0
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.epochs), desc=f"training {cfg.variant}", unit="epoch", disable=not cfg.progress)
    for epoch in bar:
        model.train()
        perm = torch.from_numpy(rng.permutation(len(xt))).to(device)
        total = 0.0
        for i in range(0, len(xt), cfg.batch_size):
            xb = xt[perm[i : i + cfg.batch_size]]
            opt.zero_grad()
            loss = loss_fn(model(xb), xb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(xv), xv))
        sched.step(val_loss)
        history.append({"epoch": epoch + 1, "train_loss": total / len(xt), "val_loss": val_loss})
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
