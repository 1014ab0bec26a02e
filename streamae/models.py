"""PyTorch autoencoders (training only; serving runs their ONNX export).

Every model maps windows ``(batch, window, features)`` to reconstructions of the same shape.
"""

from __future__ import annotations

from torch import Tensor, nn

VARIANTS = ("dense",)


class DenseAutoencoder(nn.Module):
    """Vanilla fully connected autoencoder over the flattened window."""

    def __init__(self, window: int, n_features: int, hidden: int = 64, code: int = 8) -> None:
        super().__init__()
        size = window * n_features
        self.shape = (window, n_features)
        self.encoder = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, size))

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x.flatten(1))).unflatten(1, self.shape)


def build_model(variant: str, window: int, n_features: int, **hparams: int) -> nn.Module:
    """The autoencoder named ``variant`` for windows of ``window`` × ``n_features``."""
    if variant == "dense":
        return DenseAutoencoder(window, n_features, **hparams)
    raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
