"""ONNX Runtime against PyTorch eager on the same weights, for every variant and batch size;
writes the scoring section of docs/benchmarks.md.

    .venv/bin/python bench/scoring.py [--quick] [--device cuda]

Each variant is trained briefly (``fit``, a few epochs) on simulated normal readings of ten
features, window 30, and its bundle scored on one thread, CPU provider (``--device cuda``:
the CUDA provider, and PyTorch on the GPU):

- ``Scorer.score``: what serves (scaling, the scoring graph, pooling into scores; through
  I/O binding on the CUDA provider);
- ``session.run``: the scoring graph alone (the bundle's graph plus its per-feature error,
  ``core/score_graph.py``) on scaled windows, fetching the ``(m, F)`` errors;
- PyTorch eager: the trained model's forward and the same per-feature error on the same
  scaled windows (``torch.inference_mode``, one thread; host in, host out, as ORT).
  The model is the one ``fit`` returns (``TrainResult.model``): the very weights exported.

Windows per second at batch 1, 8, 64, 512 and 4,096, best of three timed rounds of at least
0.4 s each (0.1 s with --quick), the three calls taking turns.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from common import ROOT, load_average, machine, write_section

BATCHES = (1, 8, 64, 512, 4096)


def rates(fns: dict[str, Callable[[], int]], seconds: float, rounds: int = 3) -> dict[str, float]:
    """Items per second of each ``fn`` (returns how many it handled): the best of ``rounds``
    rounds, each repeating it for at least ``seconds``; the functions take turns within a
    round, so a burst of load elsewhere on the machine hits them alike."""
    best = dict.fromkeys(fns, 0.0)
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, lazy initialisation
    for _ in range(rounds):
        for name, fn in fns.items():
            n, t = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t) < seconds:
                n += fn()
            best[name] = max(best[name], n / elapsed)
    return best


def bench_variant(variant: str, work: Path, epochs: int, seconds: float, device: str) -> dict[str, Any]:
    import torch

    from streamae.core.bundle import INPUT_NAME
    from streamae.core.config import TrainSettings
    from streamae.core.score_graph import FEATURE_ERROR_NAME
    from streamae.core.scoring import Scorer
    from streamae.core.window_score import time_weights
    from streamae.training.fit import fit

    train = harness.readings(4, 1500, seed=3)
    cfg = TrainSettings(variant=variant, window=harness.WINDOW, epochs=epochs, patience=epochs)
    t = time.perf_counter()
    result = fit(train, work / variant, cfg, progress=False)
    model = result.model
    train_s = time.perf_counter() - t
    model = model.eval().to(device)
    m = result.bundle.manifest
    w = time_weights(m.score, m.window)
    # the scoring graph's arithmetic in PyTorch: (m, W, F) -> (m, F), weighted over time
    tw = None if w is None else torch.from_numpy(w).to(device).view(1, -1, 1)
    raw = harness.readings(8, 600, seed=4)
    windows = np.lib.stride_tricks.sliding_window_view(
        raw[list(harness.FEATURES)].to_numpy(np.float32), harness.WINDOW, axis=0
    ).transpose(0, 2, 1)
    data = np.ascontiguousarray(windows[: max(BATCHES)])
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    )
    rows: dict[str, Any] = {"variant": variant, "train_s": train_s, "batches": {}}
    for b in BATCHES:
        scorer = Scorer(result.bundle, providers, intra_op_threads=1, max_batch=b)
        if device == "cuda" and "CUDAExecutionProvider" not in scorer.providers:
            raise SystemExit("--device cuda: ONNX Runtime could not start its CUDA provider here")
        x = np.ascontiguousarray(scorer.scale(data[:b]))
        xt = torch.from_numpy(x)

        def serve(b: int = b, s: Any = scorer) -> int:
            s.score(data[:b])
            return b

        def ort_run(b: int = b, s: Any = scorer, x: np.ndarray = x) -> int:
            s.session.run([FEATURE_ERROR_NAME], {INPUT_NAME: x})
            return b

        def torch_errors(xt: Any) -> np.ndarray:
            # host in, host out, as ORT's session.run: the copies count on a GPU too
            with torch.inference_mode():
                xd = xt.to(device)
                sq = (model(xd)[0] - xd).square()
                fe = sq.mean(dim=1) if tw is None else (sq * tw).sum(dim=1)
                out: np.ndarray = fe.cpu().numpy()
            return out

        def eager(b: int = b, xt: Any = xt) -> int:
            torch_errors(xt)
            return b

        ours = scorer.session.run([FEATURE_ERROR_NAME], {INPUT_NAME: x})[0]
        rows["batches"][b] = {
            **rates({"scorer": serve, "ort": ort_run, "torch": eager}, seconds),
            "max_diff": float(np.abs(ours - torch_errors(xt)).max()),
            "bound": scorer.io_bound,
        }
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter timing rounds")
    p.add_argument("--variants", nargs="+")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: CUDA provider and PyTorch on the GPU"
    )
    a = p.parse_args()
    import logging

    import torch

    from streamae.core.config import VARIANTS

    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: PyTorch sees no CUDA device here")
    logging.disable(logging.INFO)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    seconds = 0.1 if a.quick else 0.4
    when = datetime.now(timezone.utc)
    load_before = load_average()
    started = time.perf_counter()
    work = ROOT / ".bench" / "scoring"
    results = []
    for variant in a.variants or VARIANTS:
        r = bench_variant(variant, work, a.epochs, seconds, a.device)
        results.append(r)
        print(
            f"{variant:<12} "
            + "  ".join(
                f"b{b}: ort {v['ort']:,.0f} torch {v['torch']:,.0f}" for b, v in r["batches"].items()
            ),
            flush=True,
        )
    text = section(a, results, when, load_before, time.perf_counter() - started)
    if not a.no_write:
        write_section("scoring", text)
    print(text)
    return 0


def section(
    a: argparse.Namespace, results: list[dict[str, Any]], when: datetime, load: str, secs: float
) -> str:
    head = " | ".join(f"{b}" for b in BATCHES)
    cuda = a.device == "cuda"
    where = "CUDA provider and PyTorch on the GPU" if cuda else "CPU provider"
    lines = [
        "## Scoring: ONNX Runtime against PyTorch eager",
        "",
        f"Written by `bench/scoring.py` on {when:%Y-%m-%d %H:%M} UTC in one run of {secs / 60:.1f} min"
        f"{' (--quick)' if a.quick else ''}. Command: `.venv/bin/python bench/scoring.py"
        f"{' --quick' if a.quick else ''}{' --device cuda' if cuda else ''}`.",
        "",
        f"Machine: {machine()}; one thread for both runtimes (ONNX Runtime `intra_op_num_threads=1`, "
        f"`torch.set_num_threads(1)`), {where}. Load average before / after: {load} / "
        f"{load_average()} (other sessions ran tests meanwhile).",
        "",
        f"Each variant trained for {a.epochs} epochs on 4 simulated keys × 1,500 readings of 10 "
        "features, window 30 (tiny models: the point is the runtime, not the fit). Windows/s, best of "
        "three rounds. *ORT* = `session.run` of the scoring graph (the bundle's graph with the "
        "per-feature error computed inside it, `core/score_graph.py`) on scaled windows, fetching "
        "the (m, F) errors; *eager* = the trained PyTorch model's forward and the same per-feature "
        "error on the same windows, host in and host out (same weights; *max diff* = largest "
        "|ORT − PyTorch| of the per-feature error at batch 4,096); *Scorer* = `Scorer.score`, the "
        "serving call (scaling + the scoring graph + pooling"
        f"{'; I/O binding' if any(r['batches'][BATCHES[0]]['bound'] for r in results) else ''}).",
        "",
        f"| variant | runtime | {head} |",
        f"|---|---|{'---:|' * len(BATCHES)}",
    ]
    for r in results:
        bb = r["batches"]
        ort = [bb[b]["ort"] for b in BATCHES]
        eager = [bb[b]["torch"] for b in BATCHES]
        serve = [bb[b]["scorer"] for b in BATCHES]
        lines += [
            f"| {r['variant']} | ORT | {' | '.join(f'{v:,.0f}' for v in ort)} |",
            f"| | PyTorch eager | {' | '.join(f'{v:,.0f}' for v in eager)} |",
            f"| | **ORT / eager** | {' | '.join(f'**{o / e:.1f}×**' for o, e in zip(ort, eager))} |",
            f"| | Scorer.score | {' | '.join(f'{v:,.0f}' for v in serve)} |",
        ]
    diffs = ", ".join(
        f"{r['variant']} {r['batches'][4096]['max_diff']:.1e}"
        for r in results
        if r["batches"][4096]["max_diff"] is not None
    )
    big = [
        r["variant"]
        for r in results
        if all(r["batches"][b]["ort"] >= 2 * r["batches"][b]["torch"] for b in (64, 512, 4096))
    ]
    missed = ", ".join(r["variant"] for r in results if r["variant"] not in big)
    lines += [
        "",
        f"Max |ORT − PyTorch| of the per-feature error at batch 4,096: {diffs}.",
        "",
        f"Target ONNX ≥ 2× PyTorch eager at batch ≥ 64: met by {', '.join(big) or 'no variant'}"
        f"{f' (not by {missed})' if missed else ''}.",
        "",
    ]
    if not cuda:
        lines += [
            "GPU: not measured here (no device in the session that wrote this table); "
            "`bench/scoring.py --device cuda` on a GPU machine measures the CUDA provider, with "
            "`Scorer.score` through I/O binding, against PyTorch on the GPU.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
