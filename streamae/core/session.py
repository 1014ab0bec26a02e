"""ONNX Runtime for a bundle's scoring graph: the providers (CUDA when this build and host
have it, CPU always last), their options from settings, and I/O binding — the windows copied
from one reused host buffer (page-locked where ONNX Runtime offers it), only the per-feature
errors ``(m, F)`` coming back."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from streamae.core.bundle import INPUT_NAME, BundleError
from streamae.core.score_graph import FEATURE_ERROR_NAME

log = logging.getLogger(__name__)
_ANNOUNCED: set[tuple[str, ...]] = set()  # provider lists already logged at INFO


def run_chunked(
    session: ort.InferenceSession, outputs: list[str], input_name: str, x: np.ndarray, batch: int
) -> list[np.ndarray]:
    """The named ``outputs`` for ``x`` (non-empty), fed ``batch`` rows at a time, concatenated."""
    parts = [session.run(outputs, {input_name: x[lo : lo + batch]}) for lo in range(0, len(x), batch)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]


def select_providers(requested: Sequence[str]) -> list[str]:
    """The requested providers this onnxruntime build has, in order; CPU always last."""
    available = set(ort.get_available_providers())
    chosen = [p for p in requested if p in available and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


CUDA = "CUDAExecutionProvider"
#: When :class:`Scorer` runs through I/O binding: on the CUDA provider only, always (tests
#: the path on CPU), or never (plain ``session.run``).
IoBindingMode = Literal["cuda", "always", "never"]


def with_options(
    providers: Sequence[str], options: Mapping[str, Mapping[str, str]]
) -> list[str | tuple[str, dict[str, str]]]:
    """``providers`` as ONNX Runtime takes them: ``(name, options)`` where ``options`` has some."""
    return [(p, dict(options[p])) if options.get(p) else p for p in providers]


def _pinned_host_buffer(shape: tuple[int, ...]) -> tuple[np.ndarray, Any] | None:
    """A float32 array in page-locked host memory of the CUDA provider, and the OrtValue that
    owns it (keep it alive), where this ONNX Runtime offers one: its EP-device API (1.23+)
    lists the CUDA device with host-accessible memory. Copies to the GPU from pinned memory
    skip the driver's staging copy. None otherwise (then ordinary memory serves)."""
    try:
        infos = [
            d.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE)
            for d in ort.get_ep_devices()
            if d.ep_name == CUDA
        ]
        info = next((i for i in infos if i is not None), None)
        if info is None:
            return None
        value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, memory_info=info)
        n = int(np.prod(shape))
        view = np.ctypeslib.as_array((ctypes.c_float * n).from_address(value.data_ptr())).reshape(shape)
        return view, value
    except Exception as exc:  # an older ONNX Runtime or an EP without it: ordinary memory serves
        log.debug("no pinned host memory from ONNX Runtime (%s); using ordinary memory", exc)
        return None


class ScoringSession:
    """The session of one scoring graph, run plainly or through I/O binding."""

    def __init__(
        self,
        graph: bytes,
        where: str,
        providers: Sequence[str],
        intra_op_threads: int,
        max_batch: int,
        provider_options: Mapping[str, Mapping[str, str]],
        io_binding: IoBindingMode,
    ) -> None:
        self.max_batch = max_batch
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.log_severity_level = 3
        # A GPU build on a host without CUDA logs a loud load error and falls back to CPU;
        # that fallback is expected here and reported below in one line instead.
        ort.set_default_logger_severity(4)
        chosen = with_options(select_providers(providers), provider_options)
        try:
            self.session = ort.InferenceSession(graph, sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{where}: ONNX Runtime cannot load it: {exc}") from None
        in_use = self.session.get_providers()
        # once per process at INFO: selection and reloads open many sessions on the same providers
        level = logging.DEBUG if tuple(in_use) in _ANNOUNCED else logging.INFO
        _ANNOUNCED.add(tuple(in_use))
        log.log(level, "ONNX Runtime providers in use: %s", in_use)
        if CUDA in providers and CUDA not in in_use:
            log.log(level, "CUDAExecutionProvider unavailable here (no GPU or CUDA runtime); using CPU")
        on_cuda = CUDA in in_use
        self.io_bound = io_binding == "always" or (io_binding == "cuda" and on_cuda)
        self._binding = self.session.io_binding() if self.io_bound else None
        self._staging: np.ndarray | None = None  # the reused input buffer of the binding path
        self._staging_owner: Any = None  # the OrtValue that owns pinned staging memory
        self._pin = on_cuda
        # one binding and one staging buffer: runs through them must not interleave
        self._lock = threading.Lock()

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, outputs: list[str], x: np.ndarray) -> list[np.ndarray]:
        """The named outputs for scaled windows ``x``, ``max_batch`` rows at a time."""
        return run_chunked(self.session, outputs, INPUT_NAME, x, self.max_batch)

    def feature_errors(self, chunk: np.ndarray, out: np.ndarray) -> None:
        """Per-feature errors of scaled windows ``chunk`` (at most ``max_batch``) into ``out``."""
        if len(chunk) == 1:
            # ONNX Runtime computes a single row by another kernel (a matrix-vector product)
            # whose rounding differs: scored as two rows, a window gets the same score
            # whatever batch it comes in
            pair = np.empty((2, out.shape[1]), np.float32)
            self.feature_errors(np.concatenate([chunk, chunk]), pair)
            out[0] = pair[0]
        elif self._binding is None:
            out[:] = self.session.run([FEATURE_ERROR_NAME], {INPUT_NAME: chunk})[0]
        else:
            self._run_bound(chunk, out)

    def _run_bound(self, chunk: np.ndarray, out: np.ndarray) -> None:
        """Per-feature errors of scaled windows ``chunk`` (at most ``max_batch``) written into
        ``out`` (C-contiguous ``(m, F)`` float32) through I/O binding: the input copied from
        one reused staging buffer, only ``(m, F)`` coming back, straight into ``out``."""
        assert self._binding is not None and out.flags.c_contiguous and out.dtype == np.float32
        with self._lock:
            if self._staging is None:
                shape = (max(self.max_batch, 2), *chunk.shape[1:])  # a single row runs as two
                pinned = _pinned_host_buffer(shape) if self._pin else None
                self._staging, self._staging_owner = pinned or (np.empty(shape, np.float32), None)
            staged = self._staging[: len(chunk)]  # leading rows of a C-contiguous array: contiguous
            np.copyto(staged, chunk)
            b = self._binding
            # host memory either way: ONNX Runtime copies it to the device when it binds
            b.bind_input(INPUT_NAME, "cpu", 0, np.float32, list(staged.shape), staged.ctypes.data)
            b.bind_output(FEATURE_ERROR_NAME, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
            self.session.run_with_iobinding(b)
