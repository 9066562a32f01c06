"""The ``otel-pipeline`` command.

    otel-pipeline demo [--duration S] [--port P] [--exporter prometheus|otlp|pushgateway|...]
                       [--otlp-endpoint URL] [--pushgateway-url URL] [--remote-write-url URL]

>>> main(["demo", "--duration", "0.2", "--port", "0", "--quiet"])
0
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; use a number of seconds > 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not valid; use a port from 0 to 65535 (0: any free one)"
        )
    return value


def _exporters(text: str) -> str:
    from otel_pipeline.config import EXPORTERS

    for name in text.split(","):
        if name.strip() not in EXPORTERS:
            choices = ", ".join(EXPORTERS)
            raise argparse.ArgumentTypeError(
                f"invalid choice: {name.strip()!r} (choose from {choices}; several joined by commas)"
            )
    return text


def parser() -> argparse.ArgumentParser:
    """The command line: ``otel-pipeline demo ...``."""
    main_parser = argparse.ArgumentParser(
        prog="otel-pipeline", description="OpenTelemetry instrumentation for services that process work."
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a demo pipeline that exercises every hook, serving /metrics",
        description=(
            "Run a fetch -> process -> write pipeline over a flaky dependency that exercises every hook, "
            "serving /metrics the whole time; print the run summary at the end. Runs until Ctrl-C "
            "(or SIGTERM) unless --duration is given."
        ),
    )
    demo.add_argument("--duration", type=_positive_seconds, default=None, help="stop after S seconds")
    demo.add_argument("--port", type=_port, default=9464, help="port of /metrics (default 9464; 0: any)")
    demo.add_argument("--host", default="127.0.0.1", help="address of /metrics (default 127.0.0.1)")
    demo.add_argument(
        "--exporter",
        type=_exporters,
        default="prometheus",
        help="prometheus, otlp, pushgateway, remote_write, console or none; several joined by commas",
    )
    demo.add_argument("--otlp-endpoint", default=None, help="OTLP endpoint URL (with --exporter otlp)")
    demo.add_argument("--pushgateway-url", default=None, help="Pushgateway URL (with --exporter pushgateway)")
    demo.add_argument("--remote-write-url", default=None, help="remote write URL (--exporter remote_write)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated world (default 7)")
    demo.add_argument("--summary", default=None, metavar="PATH", help="also write the summary JSON here")
    demo.add_argument("--quiet", action="store_true", help="print nothing (no banner, no summary)")
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    from otel_pipeline.demo import run_demo

    try:
        run_demo(
            duration=args.duration,
            port=args.port,
            host=args.host,
            exporter=args.exporter,
            otlp_endpoint=args.otlp_endpoint,
            pushgateway_url=args.pushgateway_url,
            remote_write_url=args.remote_write_url,
            seed=args.seed,
            summary_path=args.summary,
            quiet=args.quiet,
        )
    except (OSError, ValueError) as error:
        print(f"otel-pipeline demo: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
