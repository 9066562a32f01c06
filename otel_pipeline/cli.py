"""The ``otel-pipeline`` command.

    otel-pipeline [--version] demo [--duration S] [--port P] [--host H]
                  [--exporter prometheus|otlp|pushgateway|...] [--otlp-endpoint URL]
                  [--pushgateway-url URL] [--remote-write-url URL] [--seed N]
                  [--summary PATH] [--quiet]

>>> main(["demo", "--duration", "0.2", "--port", "0", "--quiet"])
0
"""

from __future__ import annotations

import argparse
import math
import os
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
    from otel_pipeline._version import __version__

    main_parser = argparse.ArgumentParser(
        prog="otel-pipeline", description="OpenTelemetry instrumentation for services that process work."
    )
    main_parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a demo pipeline that exercises every hook, serving /metrics",
        description=(
            "Run a fetch -> process -> write pipeline over a flaky dependency that exercises every hook, "
            "serving /metrics the whole time (or exporting as --exporter says); print the run summary "
            "at the end. Runs until Ctrl-C "
            "(or SIGTERM) unless --duration is given."
        ),
    )
    demo.add_argument(
        "--duration", type=_positive_seconds, default=None, metavar="S", help="stop after S seconds"
    )
    demo.add_argument(
        "--port", type=_port, default=9464, metavar="P", help="port of /metrics (default 9464; 0: any)"
    )
    demo.add_argument(
        "--host", default="127.0.0.1", metavar="H", help="address of /metrics (default 127.0.0.1)"
    )
    demo.add_argument(
        "--exporter",
        type=_exporters,
        default="prometheus",
        metavar="NAME[,NAME...]",
        help=(
            "where metrics go: prometheus (default: serve /metrics, /health, /stats, /trends), "
            "otlp (push to --otlp-endpoint), pushgateway (push to --pushgateway-url), remote_write "
            "(to --remote-write-url), console (print them), none (keep them in the process: the "
            "summary only); several joined by commas"
        ),
    )
    demo.add_argument(
        "--otlp-endpoint", default=None, metavar="URL", help="OTLP endpoint URL (with --exporter otlp)"
    )
    demo.add_argument(
        "--pushgateway-url", default=None, metavar="URL", help="Pushgateway URL (with --exporter pushgateway)"
    )
    demo.add_argument(
        "--remote-write-url", default=None, metavar="URL", help="remote write URL (--exporter remote_write)"
    )
    demo.add_argument(
        "--seed", type=int, default=7, metavar="N", help="seed of the simulated world (default 7)"
    )
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
    except OSError as error:
        print(f"otel-pipeline demo: {_port_error(error, args.host, args.port) or error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"otel-pipeline demo: {error}", file=sys.stderr)
        return 1
    return 0


def _port_error(error: OSError, host: str, port: int) -> str | None:
    """The server's bind failure said in the command's terms (``--port``, not ``prometheus_port``)."""
    cause = error.__cause__
    if not isinstance(cause, OSError) or "/metrics" not in str(error):
        return None
    reason = os.strerror(cause.errno) if cause.errno else str(cause)
    return f"cannot serve /metrics on {host}:{port} ({reason}); choose another --port (0 picks a free one)"


if __name__ == "__main__":
    sys.exit(main())
