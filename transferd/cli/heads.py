"""`transferd heads ...` and `transferd jobs ...`: training heads and looking at them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transferd.cli import confusion
from transferd.cli.common import EXIT_FAILED, EXIT_USAGE, CliError, client, print_json, version_flag
from transferd.cli.datafile import read_examples
from transferd.cli.progress import JobProgress, head_ref
from transferd.client import HeadInfo, Job, JobStatus, TransferdError

TEXT_BACKBONE = "all-minilm-l6-v2"  # the client's default, for text examples
IMAGE_BACKBONE = "auto"  # images: the served image backbone(s), best one chosen
EXIT_INTERRUPTED = 130  # Ctrl-C while following a job (the job itself goes on)


def add(commands: Any, flags: argparse.ArgumentParser) -> None:
    """Adds `heads` and `jobs` to the `transferd` subcommands."""
    heads = commands.add_parser("heads", help="train, list, show and delete heads")
    actions = heads.add_subparsers(dest="action", required=True)

    train = actions.add_parser(
        "train",
        parents=[flags],
        help="train a head (a new version of NAME) from a JSON Lines or CSV file",
        description="FILE: JSON Lines or CSV with a header; columns text or image (a path "
        "relative to FILE) and one of label, labels (JSON list; in CSV separated by |) or "
        "value. Every bad row is reported with its line number before anything is sent.",
    )
    train.add_argument("name")
    train.add_argument("--data", type=Path, required=True, metavar="FILE")
    train.add_argument(
        "--backbone",
        help=f"a served backbone, A+B, or auto (default: {TEXT_BACKBONE} for text, "
        f"{IMAGE_BACKBONE} for images)",
    )
    train.add_argument("--kind", default="", help="logistic_regression (default), ..., or auto")
    train.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a hyper-parameter of the kind, e.g. C=0.5 (repeatable)",
    )
    train.add_argument("--validation-fraction", type=float, metavar="F", help="0.2 when unset")
    train.add_argument(
        "--no-wait", action="store_true", help="print the queued job and return at once"
    )
    train.set_defaults(run=_train)

    listing = actions.add_parser("list", parents=[flags], help="the tenant's heads")
    listing.add_argument(
        "--all-versions", action="store_true", help="every version, not the latest"
    )
    listing.set_defaults(run=_list)

    show = actions.add_parser(
        "show", parents=[flags], help="a head's metrics and validation confusion matrix"
    )
    show.add_argument("name")
    version_flag(show, "the version")
    show.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw the confusion matrix and class scores"
    )
    show.set_defaults(run=_show)

    delete = actions.add_parser("delete", parents=[flags], help="delete a head, or one version")
    delete.add_argument("name")
    delete.add_argument("--version", type=int, default=0, metavar="N", help="(default: every one)")
    delete.set_defaults(run=_delete)

    jobs = commands.add_parser("jobs", help="follow or cancel a training job")
    job_actions = jobs.add_subparsers(dest="action", required=True)
    show_job = job_actions.add_parser("show", parents=[flags], help="a job's state")
    show_job.add_argument("job_id", metavar="JOB_ID")
    show_job.add_argument("--wait", action="store_true", help="follow it to its end")
    show_job.set_defaults(run=_show_job)
    cancel = job_actions.add_parser("cancel", parents=[flags], help="cancel a job")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.set_defaults(run=_cancel_job)


def _params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise CliError(f"--param {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        params[key.strip()] = value.strip()
    return params


def _train(args: argparse.Namespace) -> None:
    params = _params(args.param)
    data = read_examples(args.data, targets=True)
    first = data.examples[0]
    backbone = args.backbone or (IMAGE_BACKBONE if first.image is not None else TEXT_BACKBONE)
    try:
        with client(args) as c:
            job = c.train_head(
                args.name,
                data.examples,
                backbone=backbone,
                kind=args.kind,
                params=params,
                validation_fraction=args.validation_fraction,
            )
            if args.no_wait:
                _print_job(args, job.status)
                return
            _follow(args, job)
    except TransferdError as error:  # the server names a bad example by index: add its line
        raise TransferdError(error.code, data.locate(error.message)) from None
    except CliError as error:  # the job failed, naming an example
        raise CliError(data.locate(str(error)), error.exit_code) from None


def _follow(args: argparse.Namespace, job: Job) -> None:
    """Waits for the job with a progress display; exits non-zero unless it succeeded."""
    progress = JobProgress(quiet=args.json)
    try:
        final = job.wait(on_progress=progress)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\ntransferd: stopped following job {job.job_id}; it goes on on the server "
            f"(transferd jobs show {job.job_id} --wait, or jobs cancel)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    progress.close()
    if args.json or final.state == "SUCCEEDED":  # a failure is told on stderr, below
        _print_job(args, final)
    if final.state != "SUCCEEDED":
        reason = f": {final.error}" if final.error else ""
        raise CliError(f"job {final.job_id} {final.state.lower()}{reason}", EXIT_FAILED)


def _print_job(args: argparse.Namespace, status: JobStatus) -> None:
    if args.json:
        print_json(asdict(status))
        return
    line = f"{head_ref(status)}: {status.state.lower()} (job {status.job_id})"
    shown = [f"{k} {v:.4g}" for k, v in sorted(status.metrics.items()) if "/" not in k]
    print(line + (": " + ", ".join(shown) if shown and status.state == "SUCCEEDED" else ""))


def _show_job(args: argparse.Namespace) -> None:
    with client(args) as c:
        job = c.job(args.job_id)
        if args.wait and not job.status.done:
            _follow(args, job)
        else:
            _print_job(args, job.status)


def _cancel_job(args: argparse.Namespace) -> None:
    with client(args) as c:
        _print_job(args, c.job(args.job_id).cancel())


def _headline_score(head: HeadInfo) -> str:
    for metric in ("accuracy", "micro_f1", "r2", "mae"):
        if metric in head.metrics:
            return f"{metric} {head.metrics[metric]:.3f}"
    return "-"


def _list(args: argparse.Namespace) -> None:
    with client(args) as c:
        heads = c.heads(all_versions=args.all_versions)
    if args.json:
        for head in heads:
            print_json(asdict(head))
        return
    rows = [("NAME", "VERSION", "TASK", "KIND", "BACKBONE", "EXAMPLES", "VALIDATION")]
    rows += [
        (
            h.name,
            str(h.version),
            h.task,
            h.kind,
            h.backbone,
            str(h.num_examples),
            _headline_score(h),
        )
        for h in heads
    ]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _show(args: argparse.Namespace) -> None:
    with client(args) as c:
        head = c.head(args.name, args.version)
    if args.plot is not None:
        _plot(head, args.plot)
    if args.json:
        print_json(asdict(head))
        return
    print(f"{head.name} v{head.version}")
    facts = {
        "task": head.task,
        "kind": head.kind,
        "backbone": head.backbone,
        "cost": f"{head.relative_cost:g}x the cheapest backbone's, per input",
        "examples": str(head.num_examples),
        "labels": ", ".join(head.labels) or "-",
        "params": ", ".join(f"{k}={v}" for k, v in sorted(head.params.items())) or "-",
    }
    if head.fusion_weights:
        facts["fusion"] = ", ".join(f"{p} x{w:.3f}" for p, w in head.fusion_weights.items())
    for key, fact in facts.items():
        print(f"  {key:<10}{fact}")
    print("validation metrics")
    for key, value in sorted(head.metrics.items()):
        if not key.startswith("support/"):  # the confusion matrix shows supports
            print(f"  {key:<16}{value:.4g}")
    if head.confusion_matrix:
        print("validation confusion matrix (rows: true label, columns: predicted)")
        print(confusion.table(head.labels, head.confusion_matrix))


def _plot(head: HeadInfo, out: Path) -> None:
    if not head.confusion_matrix:
        why = (
            "it is not a classification head"
            if head.task != "classification"
            else ("it was trained without validation examples")
        )
        raise CliError(f"{head.name} v{head.version} has no confusion matrix to plot: {why}")
    title = f"{head.name} v{head.version}: validation confusion matrix"
    if "accuracy" in head.metrics:
        title += f" (accuracy {head.metrics['accuracy']:.3f})"
    try:
        confusion.plot(head.labels, head.confusion_matrix, title, out)
    except OSError as error:
        raise CliError(f"--plot {out}: {error.strerror or error}", EXIT_USAGE) from None
    print(f"wrote {out}", file=sys.stderr)


def _delete(args: argparse.Namespace) -> None:
    with client(args) as c:
        c.delete_head(args.name, args.version)
    what = f"{args.name} v{args.version}" if args.version else f"{args.name} (every version)"
    if args.json:
        print_json({"head": args.name, "version": args.version, "deleted": True})
    else:
        print(f"deleted {what}")
