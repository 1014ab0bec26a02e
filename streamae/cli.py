"""``streamae`` command line: train, score, evaluate, inspect, sample, serve, simulate, demo,
schema, config."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from streamae import __version__
from streamae.broker import BrokerUnavailable, DeliveryError
from streamae.bundle import BundleError
from streamae.config import ConfigError, Settings, TrainSettings, load_settings
from streamae.readings import DataError

log = logging.getLogger("streamae")


def _train(args: argparse.Namespace) -> int:
    from streamae.readings import read_table
    from streamae.training import TRAINING_PLOT, fit

    cfg = _train_settings(args)
    frame = read_table(args.history)
    result = fit(frame, args.output, cfg, source=str(args.history), progress=not args.quiet)
    m = result.bundle.manifest
    t = m.threshold
    print(
        f"bundle {args.output}: {m.variant}, {len(m.features)} features {m.features}, "
        f"window {m.window}, stride {m.stride}, threshold {t.value:.6g} ({t.method} "
        f"{', '.join(f'{k}={v:.4g}' for k, v in t.params.items())}), "
        f"onnx parity {m.metrics['onnx_parity_max_abs_diff']:.1e}, "
        f"training curve {args.output / TRAINING_PLOT}"
    )
    return 0


def _score(args: argparse.Namespace) -> int:
    from streamae.bundle import load_bundle
    from streamae.offline import score_frame
    from streamae.readings import read_table
    from streamae.scoring import Scorer

    settings = load_settings()
    scorer = Scorer(
        load_bundle(args.bundle),
        settings.model.providers,
        settings.model.intra_op_threads,
        settings.batch.max_windows,
    )
    frame = read_table(args.input)
    scores = score_frame(frame, scorer, args.input.name, args.top_features)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(args.output, index=False)
    print(f"{len(scores)} windows scored, {int(scores['is_anomaly'].sum())} over threshold → {args.output}")
    if args.plot:
        from streamae.plots import label_spans, plot_scores

        labels = label_spans(frame) if "label" in frame.columns else None
        print(f"plot → {plot_scores(scores, args.plot, labels)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from streamae.report import REPORT_JSON, evaluate_file, format_table

    report = evaluate_file(args.bundle, args.data, args.output, load_settings(), args.top_features)
    t = report.threshold
    print(
        f"{report.variant} ({report.model_version}) on {report.data}: {report.rows_scored} windows, "
        f"threshold {t['value']:.6g} ({t['method']}), {report.alerts_opened} alerts opened"
    )
    print(format_table(report))
    print("PA: point-adjusted; FAR/MAR: false/missed alarm rate per window; delay: mean detection delay")
    print(f"report → {args.output / REPORT_JSON}, plots → {args.output}/<key>.png")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from streamae.report import inspect_bundle

    found = inspect_bundle(args.bundle, args.data, args.output)
    print(found.text)
    for note in found.notes:
        print(f"note: {note}")
    for name, path in found.plots.items():
        print(f"{name} → {path}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from streamae.bundle import load_bundle
    from streamae.sampling import samples_frame

    bundle = load_bundle(args.bundle)
    frame = samples_frame(
        bundle, args.n, args.seed, args.interval, args.start, load_settings().model.providers
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.output.suffix in (".parquet", ".pq"):
        frame.to_parquet(args.output, index=False)
    else:
        frame.to_csv(args.output, index=False)
    m = bundle.manifest
    print(
        f"{len(frame)} readings ({args.n} sampled windows of {m.window}, "
        f"{len(m.features)} features) → {args.output}"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from streamae.broker import ensure_daemon_topics, make_consumer, make_producer, wait_for_broker
    from streamae.bundle import load_bundle
    from streamae.daemon import Daemon
    from streamae.scoring import Scorer

    overrides = {"model": {"bundle": args.bundle}} if args.bundle else {}
    settings = _settings(args, **overrides)
    if settings.model.bundle is None:
        raise ConfigError(
            "invalid configuration:\n  STREAMAE_MODEL__BUNDLE: a bundle is required (or pass --bundle)"
        )
    scorer = Scorer(
        load_bundle(settings.model.bundle),
        settings.model.providers,
        settings.model.intra_op_threads,
        settings.batch.max_windows,
    )
    k = settings.kafka
    wait_for_broker(k)
    if args.create_topics:
        ensure_daemon_topics(k)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    daemon = Daemon(settings, scorer, make_consumer(k), make_producer(k))

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        daemon.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "serving %s from %s (group %s) with %s",
        settings.model.bundle,
        k.input_topic,
        k.group_id,
        scorer.providers,
    )
    daemon.run()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from streamae.simulate import simulate, to_messages

    sim = simulate(
        args.entities, args.hours * 3600, args.interval, args.anomalies, start=args.start, seed=args.seed
    )
    frame = sim.frame.drop(columns=["label", "anomaly_type"]) if args.anomalies == 0 else sim.frame
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if args.output.suffix in (".parquet", ".pq"):
            frame.to_parquet(args.output, index=False)
        else:
            frame.to_csv(args.output, index=False)
        print(f"{len(frame)} readings, {len(sim.anomalies)} anomalies → {args.output}")
    if args.kafka:
        from streamae.broker import ensure_topics, publish, wait_for_broker

        k = _settings(args).kafka
        wait_for_broker(k)
        ensure_topics(k, [k.input_topic])
        n = publish(k, to_messages(frame, args.per_message))
        print(f"{len(frame)} readings in {n} messages → {k.bootstrap_servers} {k.input_topic}")
    if args.anomalies_out:
        sim.anomalies_frame().to_csv(args.anomalies_out, index=False)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streamae.broker import wait_for_broker
    from streamae.demo import run_demo

    wait_for_broker(_settings(args).kafka)

    summary = run_demo(
        _settings(args), args.workdir, entities=args.entities, stream_hours=args.hours, epochs=args.epochs
    )
    return 0 if summary.windows_scored > 0 else 1


def _schema(args: argparse.Namespace) -> int:
    from streamae.messages import write_schemas

    for path in write_schemas(args.output):
        print(path)
    return 0


def _config(args: argparse.Namespace) -> int:
    print(_settings(args).model_dump_json(indent=2))  # SecretStr prints masked
    return 0


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    if getattr(args, "bootstrap", None):
        overrides.setdefault("kafka", {})
        overrides["kafka"]["bootstrap_servers"] = args.bootstrap  # type: ignore[index]
    return load_settings(**overrides)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _add_train_flags(t: argparse.ArgumentParser) -> None:
    """One flag per :class:`~streamae.config.TrainSettings` field (``--batch-size`` for
    ``batch_size``); an unset flag keeps the configured value (``STREAMAE_TRAIN__*``)."""
    from streamae.config import TrainSettings

    for name, field in TrainSettings.model_fields.items():
        ann = field.annotation
        kind: dict[str, Any] = {"choices": get_args(ann)} if get_origin(ann) is Literal else {}
        if not kind:
            kind["type"] = int if ann in (int, int | None) else float if ann is float else str
        default = "the variant's" if field.default is None else field.default
        t.add_argument(
            "--" + name.replace("_", "-"),
            default=argparse.SUPPRESS,
            help=f"{field.description or name.replace('_', ' ')} (default: {default})".replace("%", "%%"),
            **kind,
        )


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    """Configured training settings with the given flags on top; errors name the flag."""
    flags = {name: getattr(args, name) for name in TrainSettings.model_fields if hasattr(args, name)}
    names = {("train", name): "--" + name.replace("_", "-") for name in flags}
    return load_settings(names, train=flags).train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamae",
        description="Streaming anomaly detection with ONNX autoencoders on Kafka. Settings come "
        "from STREAMAE_* environment variables (nested with __) and .env; see `streamae config`.",
    )
    p.add_argument("--version", action="version", version=f"streamae {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="fit an autoencoder on normal history; write a model bundle",
        description="Fit an autoencoder on normal-only history (CSV or Parquet: a "
        "'timestamp' column, an optional 'key' column, numeric feature columns; a "
        "'label' column is never a feature), calibrate the threshold on held-out "
        "windows, export ONNX and write BUNDLE_DIR (model.onnx + manifest.json).",
    )
    t.add_argument("history", type=Path, help="normal-only history, .csv or .parquet")
    t.add_argument("-o", "--output", type=Path, required=True, metavar="BUNDLE_DIR")
    _add_train_flags(t)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    s = sub.add_parser(
        "score",
        help="score a readings file offline (backfill, evaluation)",
        description="Score every window of INPUT (same format as training "
        "history) with BUNDLE; one row per window, stamped with the key and "
        "timestamp of its last reading, in the columns of the score message.",
    )
    s.add_argument("bundle", type=Path)
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", type=Path, required=True, metavar="SCORES.csv")
    s.add_argument("--top-features", type=int, default=3)
    s.add_argument("--plot", type=Path, metavar="PNG", help="also plot score vs time")
    s.set_defaults(func=_score)

    e = sub.add_parser(
        "evaluate",
        help="measure detection quality on a labelled readings file",
        description="Score DATA (same format as training history, plus a 'label' column: 0 normal, "
        ">0 anomalous) with BUNDLE. Each window takes the label of its last reading; the first "
        "window-1 readings of a key complete no window and are not counted. The configured alert "
        "policy (STREAMAE_ALERTS__*) runs over the scores. Point, point-adjusted, event and ranking "
        "metrics per series (key) and pooled go to OUT_DIR/report.json, a score plot per key to "
        "OUT_DIR/<key>.png, and a summary table to stdout.",
    )
    e.add_argument(
        "bundle", type=Path, metavar="BUNDLE", help="model bundle directory (model.onnx + manifest.json)"
    )
    e.add_argument(
        "data", type=Path, metavar="DATA", help="labelled readings, .csv or .parquet, with a 'label' column"
    )
    e.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="where report.json and plots go"
    )
    e.add_argument(
        "--top-features",
        type=_positive_int,
        default=3,
        metavar="K",
        help="features named per window (default: 3)",
    )
    e.set_defaults(func=_evaluate)

    i = sub.add_parser(
        "inspect",
        help="describe a bundle; plot its training curve, scores and latent space",
        description="Print BUNDLE's manifest readably (variant, features, windowing, scaler, "
        "threshold and its calibration, metrics, training, versions, extra files) and plot its "
        "training curve. With DATA, also plot a histogram of the window scores against the "
        "threshold and a 2-D view of the windows' latent codes (the code itself when it is 2-D, "
        "else its PCA projection); labelled windows are marked when DATA has a 'label' column.",
    )
    i.add_argument(
        "bundle", type=Path, metavar="BUNDLE", help="model bundle directory (model.onnx + manifest.json)"
    )
    i.add_argument(
        "data",
        type=Path,
        nargs="?",
        metavar="DATA",
        help="optional readings file, .csv or .parquet (label column optional)",
    )
    i.add_argument(
        "-o", "--output", type=Path, metavar="OUT_DIR", help="where the plots go (default: BUNDLE/inspect)"
    )
    i.set_defaults(func=_inspect)

    a = sub.add_parser(
        "sample",
        help="generate synthetic normal readings from a variational bundle",
        description="Draw N codes from the prior N(0, I), decode them with the bundle's "
        "decoder.onnx (variational bundles only) and unscale them. Sampled window i becomes "
        "as many readings as the bundle's window, of key 'sample-<i>', at START + j*INTERVAL, "
        "with the bundle's feature columns, so the file can be scored or trained on like any history.",
    )
    a.add_argument("bundle", type=Path, metavar="BUNDLE", help="variational model bundle (has decoder.onnx)")
    a.add_argument("-n", type=_positive_int, required=True, metavar="N", help="windows to sample")
    a.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.csv", help="readings file, .csv or .parquet"
    )
    a.add_argument("--seed", type=int, default=0, help="random seed of the codes (default: 0)")
    a.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between readings (default: 60)",
    )
    a.add_argument(
        "--start",
        type=float,
        default=1_767_225_600.0,
        metavar="EPOCH",
        help="epoch seconds of each window's first reading (default: 1767225600, 2026-01-01 UTC)",
    )
    a.set_defaults(func=_sample)

    v = sub.add_parser(
        "serve",
        help="run the Kafka scoring daemon",
        description="Consume readings, score windows, publish scores and alerts; "
        "commits offsets only after outputs are acknowledged. SIGTERM/SIGINT drain "
        "and exit 0.",
    )
    v.add_argument("--bundle", type=Path, help="model bundle (else STREAMAE_MODEL__BUNDLE)")
    v.add_argument("--bootstrap", help="Kafka bootstrap servers (else STREAMAE_KAFKA__...)")
    v.add_argument(
        "--create-topics", action="store_true", help="create missing input/output/DLQ topics first"
    )
    v.set_defaults(func=_serve)

    m = sub.add_parser(
        "simulate",
        help="generate a multi-sensor stream with labelled anomalies",
        description="Simulate machines with correlated sensors and a daily cycle; "
        "inject spikes, level shifts, drifts, stuck sensors and broken correlations. "
        "Write a file (-o) and/or publish to Kafka (--kafka).",
    )
    m.add_argument("-o", "--output", type=Path, help="write readings to .csv or .parquet")
    m.add_argument("--kafka", action="store_true", help="publish to STREAMAE_KAFKA__INPUT_TOPIC")
    m.add_argument("--bootstrap", help="Kafka bootstrap servers")
    m.add_argument("--entities", type=int, default=4)
    m.add_argument("--hours", type=float, default=24.0)
    m.add_argument("--interval", type=float, default=60.0, help="seconds between readings")
    m.add_argument("--anomalies", type=int, default=2, help="anomalies per entity (0: normal only)")
    m.add_argument("--start", type=float, default=1_767_225_600.0, help="epoch seconds")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--per-message", type=int, default=1, help="readings per Kafka message")
    m.add_argument("--anomalies-out", type=Path, help="write the injected anomalies as CSV")
    m.set_defaults(func=_simulate)

    d = sub.add_parser(
        "demo",
        help="end-to-end demo on a running broker",
        description="Simulate history, train, start the daemon, stream data with "
        "anomalies, print alerts as they arrive and a summary.",
    )
    d.add_argument("--bootstrap", help="Kafka bootstrap servers")
    d.add_argument("--workdir", type=Path, default=Path(".demo/run"))
    d.add_argument("--entities", type=int, default=4)
    d.add_argument("--hours", type=float, default=24.0, help="hours of stream to score")
    d.add_argument("--epochs", type=int, default=40)
    d.set_defaults(func=_demo)

    c = sub.add_parser(
        "schema",
        help="write the JSON Schemas of all messages",
        description="Write the JSON Schemas of the reading, score, alert and "
        "dead-letter messages (generated from the pydantic models in streamae.messages) as "
        "<name>.schema.json files; docs/messages.md explains them.",
    )
    c.add_argument("-o", "--output", type=Path, default=Path("docs/schemas"))
    c.set_defaults(func=_schema)

    g = sub.add_parser(
        "config",
        help="print the effective settings (secrets masked)",
        description="Print the settings resolved from STREAMAE_* environment variables "
        "(nested with __, e.g. STREAMAE_KAFKA__BOOTSTRAP_SERVERS) and .env, as JSON. Secrets are "
        "masked. An invalid or unknown variable fails with its name.",
    )
    g.set_defaults(func=_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs transient reconnects as warnings; its errors still show.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except (ConfigError, BundleError, DataError) as exc:
        print(f"streamae: error: {exc}", file=sys.stderr)
        return 2
    except (BrokerUnavailable, DeliveryError) as exc:
        # DeliveryError: outputs were not acknowledged, so their offsets were not committed;
        # a restart resumes from the last commit.
        print(f"streamae: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
