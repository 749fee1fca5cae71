"""`transferd` command line: `export` writes backbones, `serve` serves them, `repair` re-imports
heads; the client commands (tenants, keys, heads, jobs, predict, embed) call a running server.

Flags override their `TRANSFERD_` environment twins, which override the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferd import cli as client_commands

if TYPE_CHECKING:
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
    export.add_argument(
        "--quantize",
        choices=["int8"],
        help="build BACKBONE-int8 from an exported float32 text backbone, behind an accuracy "
        "gate (README: int8 backbones)",
    )
    export.add_argument(
        "--backbone",
        default="all-minilm-l6-v2",
        help="the backbone --quantize starts from (default: all-minilm-l6-v2)",
    )
    hf = export.add_argument_group(
        "a local Hugging Face model instead of the default backbones",
        "text: bert, roberta, distilbert, gpt2; image: vit, resnet (from the folder's config.json)",
    )
    hf.add_argument("--hf-model", type=Path, metavar="PATH", help="the model folder")
    hf.add_argument("--name", help="its backbone name in the repository (with --hf-model)")
    hf.add_argument(
        "--pooling",
        choices=["mean", "cls", "last", "avg"],
        help="default: mean (bert, roberta, distilbert), last (gpt2), cls (vit), avg (resnet)",
    )
    hf.add_argument(
        "--max-sequence-length", type=int, metavar="N", help="text: truncate at N tokens"
    )
    hf.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        help="L2-normalise embeddings (default: on for text, off for images)",
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
    serve.add_argument(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://... (TRANSFERD_DATABASE_URL; unset: "
        "SQLite under the data folder)",
    )
    serve.add_argument("--model-repo", type=Path, help="backbones (TRANSFERD_MODEL_REPO)")
    serve.add_argument("--runtime", choices=["embedded", "triton"], help="(TRANSFERD_RUNTIME)")
    serve.add_argument("--triton-url", help="Triton gRPC host:port (TRANSFERD_TRITON_URL)")

    repair = commands.add_parser(
        "repair",
        help="with the server stopped: rebuild lost head rows (and tenants) from the head cards "
        "and bring back quarantined heads; never deletes anything, safe to run twice",
    )
    repair.add_argument("--data-dir", type=Path, help="state folder (TRANSFERD_DATA_DIR)")
    client_commands.add_commands(commands)
    return parser


def _repair(settings: Settings) -> None:
    """`repair`: prints what it did, line by line."""
    from service.store.repair import repair

    if settings.database_url is not None:
        # The files are only a replica's cache there: the database is the record, nothing to
        # rebuild from them.
        sys.exit(
            "transferd: repair rebuilds a SQLite store from its data directory; with "
            "TRANSFERD_DATABASE_URL set (PostgreSQL) the database holds every head's artifacts "
            "and there is nothing to repair from the files"
        )
    if not settings.data_dir.is_dir():
        sys.exit(f"transferd: no data directory at {settings.data_dir}")
    for line in repair(settings.data_dir).lines():
        print(line)


def _settings(args: argparse.Namespace, keys: tuple[str, ...]) -> Settings:
    # Imported here: the settings pull in scikit-learn (a second), which the client commands,
    # talking to a server, never need.
    from pydantic import ValidationError

    from service.config import Settings

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


def _export_defaults(args: argparse.Namespace, settings: Settings) -> None:
    """`export`: every default backbone, each skipped when its export is up to date."""
    from service.export import ExportVerificationError, export_default_backbones  # torch
    from service.export.hf_source import HfExportError

    try:
        outcomes = export_default_backbones(settings.model_repo, force=args.force, fp16=args.fp16)
    except (HfExportError, ExportVerificationError) as error:
        sys.exit(f"transferd: export failed: {error}")
    for outcome in outcomes:
        state = "exported" if outcome.written else "up to date"
        print(
            f"{outcome.name}: {state} in {outcome.folder} (fingerprint {outcome.card.fingerprint})"
        )


def _export_int8(args: argparse.Namespace, settings: Settings) -> None:
    """`export --quantize int8 [--backbone NAME]`: the gated int8 variant of one text backbone."""
    from service.export import ExportVerificationError, export_int8  # onnxruntime.quantization

    try:
        outcome = export_int8(settings.model_repo, args.backbone, force=args.force)
    except ExportVerificationError as error:
        sys.exit(f"transferd: cannot quantize {args.backbone}: {error}")
    state = "exported" if outcome.written else "up to date"
    gate = outcome.card.export["gate"]
    print(
        f"{outcome.name}: {state} in {outcome.folder} (gate on {gate['texts']} texts: "
        f"LR accuracy {gate['int8_lr_accuracy']} vs {gate['float_lr_accuracy']} float, "
        f"5-NN {gate['int8_knn_accuracy']} vs {gate['float_knn_accuracy']}, worst cosine "
        f"{gate['min_cosine']}; fingerprint {outcome.card.fingerprint})"
    )


def _export_hf(args: argparse.Namespace, settings: Settings) -> None:
    """`export --hf-model PATH --name NAME`: one model from a local Hugging Face folder."""
    if args.hf_model is None or args.name is None:
        sys.exit("transferd: --hf-model and --name go together")
    if getattr(args, "fp16", False):
        sys.exit("transferd: --fp16 applies to the default MiniLM export only")
    from service.export import ExportVerificationError
    from service.export.hf import HfExportError, export_hf_model

    try:
        outcome = export_hf_model(
            settings.model_repo,
            args.hf_model,
            args.name,
            pooling=args.pooling,
            max_sequence_length=args.max_sequence_length,
            normalize=args.normalize,
            force=args.force,
        )
    except (HfExportError, ExportVerificationError) as error:
        sys.exit(f"transferd: cannot export {args.hf_model}: {error}")
    state = "exported" if outcome.written else "up to date"
    card = outcome.card
    print(
        f"{outcome.name}: {state} in {outcome.folder} ({card.modality}, {card.dim}-d, "
        f"pooling {card.pooling}, min cosine {card.export['verified_min_cosine']}, "
        f"fingerprint {card.fingerprint})"
    )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in client_commands.COMMANDS:
        client_commands.run(args)
        return
    if args.command == "export":
        settings = _settings(args, ("model_repo",))
        _configure_logging(settings.log_level)
        if args.quantize is not None:
            if args.hf_model is not None or args.fp16:
                sys.exit("transferd: --quantize goes alone (with --backbone and --force)")
            _export_int8(args, settings)
            return
        if args.hf_model is not None or args.name is not None:
            _export_hf(args, settings)
            return
        if args.pooling or args.max_sequence_length or args.normalize is not None:
            sys.exit("transferd: --pooling, --max-sequence-length and --normalize need --hf-model")
        _export_defaults(args, settings)
        return
    if args.command == "repair":
        settings = _settings(args, ("data_dir",))
        _configure_logging(settings.log_level)
        _repair(settings)
        return
    settings = _settings(
        args,
        (
            "grpc_host",
            "grpc_port",
            "metrics_port",
            "data_dir",
            "database_url",
            "model_repo",
            "runtime",
            "triton_url",
        ),
    )
    _configure_logging(settings.log_level)
    from service import audit

    audit.configure()  # its JSON lines, bare, on the same stream as the log
    from service.api.tls import TlsSettingsError
    from service.backbones.repository import ModelRepositoryError
    from service.backbones.runtimes.base import BackboneLoadError
    from service.errors import Unavailable
    from service.metrics import MetricsPortError
    from service.server import serve
    from service.store.recovery import StoreNeedsRepair

    try:
        asyncio.run(serve(settings))
    except (
        ModelRepositoryError,
        BackboneLoadError,
        NotImplementedError,
        MetricsPortError,
        TlsSettingsError,
        Unavailable,
    ) as error:  # a PostgreSQL unreachable at start-up is Unavailable
        sys.exit(f"transferd: cannot serve: {error}")
    except StoreNeedsRepair as error:
        sys.exit(f"transferd: {error}")


if __name__ == "__main__":
    main()
