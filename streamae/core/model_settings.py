"""The ``model`` settings section (``STREAMAE_MODEL__*``): the bundle, ONNX Runtime's
execution providers and their CUDA options. Imported by ``config.py``, which re-exports it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # as every section of config.Settings

    bundle: Path | None = None
    shadow_bundle: Path | None = Field(
        None, description="serve: a candidate bundle that scores beside the current one, to the shadow topic"
    )
    # Tried in order; providers this onnxruntime build lacks are skipped.
    providers: list[str] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    intra_op_threads: int = Field(0, ge=0, description="0 lets ONNX Runtime decide")
    top_features: int = Field(3, ge=1)
    reload_interval_s: float = Field(
        10.0,
        ge=0,
        description="serve: check the bundle location this often and switch to a new, valid bundle "
        "between micro-batches (0: never)",
    )
    # CUDAExecutionProvider options (ONNX Runtime's names without the prefix); unused on CPU
    cuda_device_id: int = Field(0, ge=0, description="the GPU the CUDA provider runs on")
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = Field(
        "kNextPowerOfTwo", description="how the CUDA memory arena grows"
    )
    cuda_cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE", description="how cuDNN picks convolution kernels (conv variant)"
    )
    cuda_gpu_mem_limit_bytes: int | None = Field(
        None, gt=0, description="cap on the CUDA memory arena (None: no cap)"
    )
    io_binding: bool = Field(
        True,
        description="on the CUDA provider, feed windows from a reused (pinned where ONNX Runtime "
        "offers it) host buffer and write per-feature errors straight into host memory",
    )

    def cuda_provider_options(self) -> dict[str, str]:
        """The options of ``CUDAExecutionProvider`` as ONNX Runtime names them."""
        opts = {
            "device_id": str(self.cuda_device_id),
            "arena_extend_strategy": self.cuda_arena_extend_strategy,
            "cudnn_conv_algo_search": self.cuda_cudnn_conv_algo_search,
        }
        if self.cuda_gpu_mem_limit_bytes is not None:
            opts["gpu_mem_limit"] = str(self.cuda_gpu_mem_limit_bytes)
        return opts
