"""ONNX export of a trained autoencoder, and the parity check against PyTorch.

The exported graph is what serves: ``windows`` → ``reconstruction`` and ``code``, with a
dynamic batch axis. Training refuses a bundle whose graph differs from PyTorch by more
than :data:`PARITY_TOLERANCE`.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from streamae.core.bundle import CODE_NAME, INPUT_NAME, OUTPUT_NAME
from streamae.core.session import run_chunked
from streamae.training.models import Autoencoder

PARITY_TOLERANCE = 1e-3  # relative to output size: float32 conv/LSTM kernels differ by ~1e-4 on large inputs


def _to_onnx(module: nn.Module, example: Tensor, inputs: list[str], outputs: list[str]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter is fast and exact for these graphs; dynamo adds seconds.
        torch.onnx.export(
            module,
            (example,),
            buf,  # type: ignore[arg-type]  # a file-like object is documented and works
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
