"""`transferd` command line: `export` writes backbones, `serve` serves them.

Flags override their `TRANSFERD_` environment twins, which override the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.config import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export", help="export pretrained backbones to the model repository"
    )
    export.add_argument("--model-repo", type=Path, help="target repository (TRANSFERD_MODEL_REPO)")
    export.add_argument("--force", action="store_true", help="export even when up to date")
    export.add_argument(
        "--fp16", action="store_true", help="MiniLM in float16, for GPUs (README: Triton)"
    )

    serve = commands.add_parser("serve", help="serve the gRPC API")
    serve.add_argument("--grpc-host", help="bind address (TRANSFERD_GRPC_HOST)")
    serve.add_argument(
        "--grpc-port", type=int, help="gRPC port, default 50051 (TRANSFERD_GRPC_PORT)"
    )
    serve.add_argument(
        "--metrics-port", type=int, help="Prometheus port, default 9464 (TRANSFERD_METRICS_PORT)"
    )
    serve.add_argument("--data-dir", type=Path, help="state folder (TRANSFERD_DATA_DIR)")
    serve.add_argument("--model-repo", type=Path, help="backbones (TRANSFERD_MODEL_REPO)")
    serve.add_argument("--runtime", choices=["embedded", "triton"], help="(TRANSFERD_RUNTIME)")
    serve.add_argument("--triton-url", help="Triton gRPC host:port (TRANSFERD_TRITON_URL)")
    return parser


def _settings(args: argparse.Namespace, keys: tuple[str, ...]) -> Settings:
    overrides: dict[str, Any] = {
        k: getattr(args, k) for k in keys if getattr(args, k, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as error:
        # Fail loudly at start-up, naming every bad setting.
        sys.exit(f"transferd: invalid settings:\n{error}")


def _configure_logging(level: str) -> None:
    """Our loggers at `level`; third-party ones (ONNX fusion, torch export) at WARNING only."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("service").setLevel(level)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "export":
        settings = _settings(args, ("model_repo",))
        _configure_logging(settings.log_level)
        from service.backbones.export import export_default_backbones  # torch: export only

        for outcome in export_default_backbones(
            settings.model_repo, force=args.force, fp16=args.fp16
        ):
            state = "exported" if outcome.written else "up to date"
            print(
                f"{outcome.name}: {state} in {outcome.folder} (fingerprint {outcome.card.fingerprint})"
            )
        return
    settings = _settings(
        args,
        (
            "grpc_host",
            "grpc_port",
            "metrics_port",
            "data_dir",
            "model_repo",
            "runtime",
            "triton_url",
        ),
    )
    _configure_logging(settings.log_level)
    from service.backbones.embedded import BackboneLoadError
    from service.backbones.repository import ModelRepositoryError
    from service.server import serve

    try:
        asyncio.run(serve(settings))
    except (ModelRepositoryError, BackboneLoadError, NotImplementedError) as error:
        sys.exit(f"transferd: cannot serve: {error}")


if __name__ == "__main__":
    main()
