"""PyTorch autoencoders (training only; serving runs their ONNX export).

Every model maps windows ``(batch, window, features)`` to ``(reconstruction, code)``: the
reconstruction has the window's shape, the code ``(batch, code_size)`` is the latent
vector ``streamae inspect`` plots. What makes a variant differ at *training* time
(corruption, penalties, sampling) lives in :meth:`Autoencoder.training_loss`, so the
exported inference graph of every variant is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import jacrev, vmap

from streamae.core.config import VARIANTS

LossFn = Callable[[Tensor, Tensor], Tensor]

# (hidden, code) when the caller leaves them unset; each variant reads them in its own way
DEFAULT_SIZES: dict[str, tuple[int, int]] = {
    "dense": (64, 8),
    "denoising": (64, 8),
    "sparse": (64, 32),  # an over-complete code is the point of a sparsity penalty
    "contractive": (64, 8),
    "variational": (64, 8),
    "conv": (32, 16),  # channels of the two convolution layers
    "lstm": (64, 8),
    "pca": (0, 0),  # 0 components: as many as explain 95 % of the variance
}


class Autoencoder(nn.Module):
    """Base class: ``encode`` → code, ``decode`` → window; a sigmoid output for BCE."""

    def __init__(self, window: int, n_features: int, sigmoid_output: bool = False) -> None:
        super().__init__()
        self.window, self.n_features = window, n_features
        self.out = nn.Sigmoid() if sigmoid_output else nn.Identity()

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        return self.out(self._decode(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def training_loss(self, x: Tensor, recon_loss: LossFn) -> Tensor:
        """The objective minimised in training; plain reconstruction unless a variant adds to it."""
        return recon_loss(self(x)[0], x)


class _MLP(Autoencoder):
    """Fully connected encoder/decoder over the flattened window."""

    def __init__(self, window: int, n_features: int, hidden: int, code: int, **kw: bool) -> None:
        super().__init__(window, n_features, **kw)
        size = window * n_features
        self.encoder = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, size))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def _decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(1, (self.window, self.n_features))


class DenseAutoencoder(_MLP):
    """Vanilla autoencoder: an undercomplete code, reconstruction loss only."""


class DenoisingAutoencoder(_MLP):
    """Learns to undo Gaussian corruption of the input (training only)."""

    def __init__(self, *args: int, noise: float = 0.2, **kw: bool) -> None:
        super().__init__(*args, **kw)
        self.noise = noise

    def training_loss(self, x: Tensor, recon_loss: LossFn) -> Tensor:
        return recon_loss(self(x + self.noise * torch.randn_like(x))[0], x)


class SparseAutoencoder(_MLP):
    """Non-negative code with an L1 penalty, so few units fire for any one window."""

    def __init__(self, *args: int, sparsity: float = 1e-3, **kw: bool) -> None:
        super().__init__(*args, **kw)
        self.sparsity = sparsity

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(super().encode(x))

    def training_loss(self, x: Tensor, recon_loss: LossFn) -> Tensor:
        recon, z = self(x)
        return recon_loss(recon, x) + self.sparsity * z.abs().sum(dim=1).mean()


class ContractiveAutoencoder(_MLP):
    """Penalises the encoder's Jacobian (Frobenius norm), so the code is locally insensitive."""

    def __init__(self, *args: int, contractive: float = 1e-3, **kw: bool) -> None:
        super().__init__(*args, **kw)
        self.contractive = contractive

    def training_loss(self, x: Tensor, recon_loss: LossFn) -> Tensor:
        recon, _ = self(x)
        jac = vmap(jacrev(self.encoder))(x.flatten(1))  # (batch, code, window·features)
        return recon_loss(recon, x) + self.contractive * jac.square().sum(dim=(1, 2)).mean()


class VariationalAutoencoder(_MLP):
    """Gaussian posterior, reparameterised sampling and a KL term in training; inference
    decodes the posterior mean, so a window's score is deterministic."""

    def __init__(self, window: int, n_features: int, hidden: int, code: int, beta: float = 1.0, **kw: bool):
        super().__init__(window, n_features, hidden, code, **kw)
        self.encoder = nn.Sequential(nn.Linear(window * n_features, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, code)
        self.logvar = nn.Linear(hidden, code)
        self.beta = beta

    def encode(self, x: Tensor) -> Tensor:
        return self.mu(self.encoder(x.flatten(1)))

    def training_loss(self, x: Tensor, recon_loss: LossFn) -> Tensor:
        h = self.encoder(x.flatten(1))
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1).mean()
        # the reconstruction loss is a per-element mean: put the KL on the same per-element footing
        return recon_loss(self.decode(z), x) + self.beta * kl / (self.window * self.n_features)


class ConvAutoencoder(Autoencoder):
    """1-D convolutions over time (features are channels), strided down and transposed back."""

    def __init__(self, window: int, n_features: int, hidden: int, code: int, **kw: bool) -> None:
        super().__init__(window, n_features, **kw)
        conv: dict[str, Any] = {"kernel_size": 7, "stride": 2, "padding": 3}
        self.encoder = nn.Sequential(
            nn.Conv1d(n_features, hidden, **conv), nn.ReLU(), nn.Conv1d(hidden, code, **conv), nn.ReLU()
        )
        # each transposed layer doubles the length; the result is cropped back to the window
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(code, hidden, output_padding=1, **conv),
            nn.ReLU(),
            nn.ConvTranspose1d(hidden, n_features, output_padding=1, **conv),
        )
        self._code_shape = (code, math.ceil(math.ceil(window / 2) / 2))  # two stride-2 layers

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.transpose(1, 2)).flatten(1)

    def _decode(self, z: Tensor) -> Tensor:
        return self.decoder(z.unflatten(1, self._code_shape))[:, :, : self.window].transpose(1, 2)


class LSTMAutoencoder(Autoencoder):
    """Sequence encoder (last hidden state → code) and a decoder fed the code at every step."""

    def __init__(self, window: int, n_features: int, hidden: int, code: int, **kw: bool) -> None:
        super().__init__(window, n_features, **kw)
        self.enc = nn.LSTM(n_features, hidden, batch_first=True)
        self.to_code = nn.Linear(hidden, code)
        self.dec = nn.LSTM(code, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_features)

    def encode(self, x: Tensor) -> Tensor:
        out, _ = self.enc(x)
        return self.to_code(out[:, -1])

    def _decode(self, z: Tensor) -> Tensor:
        out, _ = self.dec(z.unsqueeze(1).expand(-1, self.window, -1))
        return self.head(out)


class PCAReconstructor(Autoencoder):
    """Linear reference: projection on the top principal components of training windows.

    Fitted in closed form (:meth:`fit`), not by gradient descent; exported like the others.
    """

    def __init__(self, window: int, n_features: int, hidden: int = 0, code: int = 0, **kw: bool) -> None:
        super().__init__(window, n_features, **kw)
        size = window * n_features
        self.components_wanted = code
        self.register_buffer("center", torch.zeros(size))
        self.register_buffer("components", torch.zeros(max(code, 1), size))

    def fit(self, x: np.ndarray, explained: float = 0.95) -> float:
        """Fit on training windows; returns the share of variance the kept components explain."""
        flat = x.reshape(len(x), -1).astype(np.float64)
        center = flat.mean(axis=0)
        _, sv, vt = np.linalg.svd(flat - center, full_matrices=False)
        ratio = np.cumsum(sv**2) / max(float(np.sum(sv**2)), 1e-300)
        k = self.components_wanted or int(np.searchsorted(ratio, explained) + 1)
        k = min(k, len(sv))
        # directions without variance (constant signals) carry no pattern: keeping them
        # would reconstruct any deviation along them perfectly, so they are zeroed
        live = sv[:k] > 1e-9 * max(float(sv[0]), 1.0)
        self.center = torch.from_numpy(center.astype(np.float32))
        self.components = torch.from_numpy((vt[:k] * live[:, None]).astype(np.float32))
        return float(ratio[k - 1])

    def encode(self, x: Tensor) -> Tensor:
        return (x.flatten(1) - self.center) @ self.components.T

    def _decode(self, z: Tensor) -> Tensor:
        return (z @ self.components + self.center).unflatten(1, (self.window, self.n_features))


# every class takes (window, n_features, hidden, code, sigmoid_output=, **its knobs)
_CLASSES: dict[str, Callable[..., Autoencoder]] = {
    "dense": DenseAutoencoder,
    "denoising": DenoisingAutoencoder,
    "sparse": SparseAutoencoder,
    "contractive": ContractiveAutoencoder,
    "variational": VariationalAutoencoder,
    "conv": ConvAutoencoder,
    "lstm": LSTMAutoencoder,
    "pca": PCAReconstructor,
}
assert tuple(_CLASSES) == VARIANTS, "config.VARIANTS and the model registry must agree"

# the variant-specific knobs each class takes, by their TrainSettings names
_KNOBS = {
    "denoising": ("noise",),
    "sparse": ("sparsity",),
    "contractive": ("contractive",),
    "variational": ("beta",),
}


def build_model(
    variant: str,
    window: int,
    n_features: int,
    hidden: int | None = None,
    code: int | None = None,
    sigmoid_output: bool = False,
    **knobs: float,
) -> Autoencoder:
    """The autoencoder named ``variant`` for windows of ``window`` × ``n_features``.

    ``hidden``/``code`` default per variant (:data:`DEFAULT_SIZES`); ``knobs`` are the
    variant's own hyper-parameters (``noise``, ``sparsity``, ``contractive``, ``beta``);
    knobs of other variants are ignored.
    """
    if variant not in _CLASSES:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    h, c = DEFAULT_SIZES[variant]
    own = {k: v for k, v in knobs.items() if k in _KNOBS.get(variant, ())}
    return _CLASSES[variant](
        window, n_features, hidden or h, code if code is not None else c, sigmoid_output=sigmoid_output, **own
    )
