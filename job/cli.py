"""Command line: a thin layer that turns flags into configs and calls the stages.

Exit status (the same for every subcommand, relied on by cron and CI):
  0  nothing failed (also when there was nothing new to do)
  1  some archives or journals failed; the rest were processed
  2  usage or configuration error (bad flags, unreachable endpoint, missing
     bucket, no credentials); nothing was processed
  130/143  interrupted by SIGINT/SIGTERM; in-flight work was discarded cleanly
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from job import __version__
from job.core.config import (
    DEFAULT_BUCKET_PATH,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    DownloadConfig,
    ParseConfig,
    RetrySettings,
    S3Settings,
    Shard,
)
from job.core.errors import UsageError
from job.core.metrics import RunMetrics, write_metrics

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=os.environ.get("LOG_FORMAT", "json"),
        help="json lines on stdout (default) or human-readable console lines",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=os.environ.get("LOG_LEVEL", "info"),
        help="debug also shows botocore's own request logs on stderr (secrets redacted)",
    )
    parser.add_argument("--concurrent", type=_positive_int, default=None, metavar="N")
    _metrics_flag(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be done; touch nothing"
    )
    parser.add_argument(
        "--force", action="store_true", help="redo everything, ignoring what is up to date"
    )
    parser.add_argument(
        "--shard-index",
        type=int,
        default=None,
        metavar="I",
        help="this worker's shard (also JOB_COMPLETION_INDEX / AWS_BATCH_JOB_ARRAY_INDEX)",
    )
    parser.add_argument(
        "--shard-count",
        type=_positive_int,
        default=None,
        metavar="N",
        help="number of shards (also SHARD_COUNT)",
    )


def _metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-file",
        type=Path,
        default=os.environ.get("METRICS_FILE") or None,
        metavar="PATH",
        help="write Prometheus text-format metrics of this run there at the end "
        "(node_exporter textfile collector; also METRICS_FILE)",
    )


def _download_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket-path", default=DEFAULT_BUCKET_PATH, metavar="s3://BUCKET/PREFIX/")
    parser.add_argument(
        "--keep-compressed",
        action="store_true",
        help="also keep each .tar.gz beside its extracted folder",
    )
    parser.add_argument(
        "--endpoint-url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint (default: the AWS chain, AWS_ENDPOINT_URL included)",
    )
    parser.add_argument(
        "--no-sign-request", action="store_true", help="anonymous access to a public bucket"
    )
    parser.add_argument(
        "--max-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BYTES,
        help="largest total extracted size of one archive, in bytes",
    )
    parser.add_argument(
        "--max-members",
        type=_positive_int,
        default=DEFAULT_MAX_MEMBERS,
        help="most members one archive may hold",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    parser.add_argument(
        "--retries",
        type=_positive_int,
        default=int(os.environ.get("ANALYZE_FAILURES_RETRIES", "6")),
        metavar="N",
        help="attempts per request before an archive fails (default 6)",
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (cron mails and CI logs read better), then exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="analyze-failures",
        description="Fetch failed biomlbench run groups from S3, extract them safely and report why the agents failed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dl = sub.add_parser("download", help="fetch and extract new or changed failed-run archives")
    _common(dl)
    _download_flags(dl)
    dl.add_argument("--output-dir", type=Path, default=Path("failed_runs"))

    ps = sub.add_parser("parse", help="turn every AIDE journal into a text report and an index")
    _common(ps)
    ps.add_argument("--failed-runs-dir", type=Path, default=Path("failed_runs"))
    ps.add_argument("--output-dir", type=Path, default=Path("aide_journals"))

    run = sub.add_parser(
        "run", help="download then parse, into ROOT/failed_runs and ROOT/aide_journals"
    )
    _common(run)
    _download_flags(run)
    run.add_argument("--output-dir", type=Path, default=Path("."), metavar="ROOT")

    for name, text in (
        ("merge", "combine the shard manifests and indexes of a run root, then write the report"),
        ("report", "write ROOT/index.html and ROOT/failures.csv from an existing output dir"),
    ):
        extra = sub.add_parser(name, help=text)
        extra.add_argument(
            "--log-format",
            choices=("json", "console"),
            default=os.environ.get("LOG_FORMAT", "json"),
        )
        extra.add_argument(
            "--log-level",
            choices=("debug", "info", "warning", "error"),
            default=os.environ.get("LOG_LEVEL", "info"),
        )
        extra.add_argument("--output-dir", type=Path, default=Path("."), metavar="ROOT")
        _metrics_flag(extra)
    return parser


def _check_root(root: Path) -> None:
    if not (root / "failed_runs").is_dir() and not (root / "aide_journals").is_dir():
        raise UsageError(
            f"{root} holds no failed_runs/ or aide_journals/: pass the run's --output-dir"
        )


def write_site(root: Path) -> None:
    """The browsable analysis (index.html, failures.csv) of a run root."""
    from job.core.logs import get_logger
    from job.report.site import build_site

    log = get_logger(stage="report")
    try:
        summary = build_site(root)
    except OSError as exc:
        raise UsageError(f"cannot write the report into {root}: {exc.strerror or exc}") from None
    log.info("report.site", **summary.as_log())
    for warning in summary.warnings[:50]:
        log.warning("report.problem", problem=warning)


def _shard(args: argparse.Namespace) -> Shard:
    index = args.shard_index
    if index is None:
        for var in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SHARD_INDEX"):
            if os.environ.get(var, "").strip():
                try:
                    index = int(os.environ[var])
                except ValueError:
                    raise UsageError(f"{var}={os.environ[var]!r} is not a whole number") from None
                break
    count = args.shard_count
    if count is None and os.environ.get("SHARD_COUNT", "").strip():
        try:
            count = int(os.environ["SHARD_COUNT"])
        except ValueError:
            raise UsageError(
                f"SHARD_COUNT={os.environ['SHARD_COUNT']!r} is not a whole number"
            ) from None
    if count is None:
        if index not in (None, 0) and args.shard_index is not None:
            raise UsageError("--shard-index needs --shard-count (or SHARD_COUNT)")
        return Shard()
    if count < 1:
        raise UsageError(f"shard count must be at least 1, got {count}")
    index = 0 if index is None else index
    if not 0 <= index < count:
        raise UsageError(f"shard index {index} is outside 0..{count - 1}")
    return Shard(index=index, count=count)


def _download_config(args: argparse.Namespace, output_dir: Path, shard: Shard) -> DownloadConfig:
    return DownloadConfig(
        bucket_path=args.bucket_path,
        output_dir=output_dir,
        concurrent=args.concurrent or 8,
        keep_compressed=args.keep_compressed,
        dry_run=args.dry_run,
        force=args.force,
        max_bytes=args.max_bytes,
        max_members=args.max_members,
        s3=S3Settings(endpoint_url=args.endpoint_url, no_sign_request=args.no_sign_request),
        retry=RetrySettings(attempts=args.retries),
        shard=shard,
        progress=not args.no_progress and sys.stderr.isatty() and args.log_format == "console",
    )


def _parse_config(args: argparse.Namespace, runs: Path, out: Path, shard: Shard) -> ParseConfig:
    return ParseConfig(
        failed_runs_dir=runs,
        output_dir=out,
        concurrent=args.concurrent or 2,
        dry_run=args.dry_run,
        force=args.force,
        shard=shard,
    )


_COMMAND_MODULES = {
    "download": ("job.download.stage",),
    "parse": ("job.parse.stage",),
    "run": ("job.download.stage", "job.parse.stage"),
}


def _load_command(command: str) -> None:
    """Import what ``command`` needs, then freeze it all and let the collector run again.

    :func:`main` pauses the cyclic collector because imports create ~150,000
    objects that live as long as the process; collections triggered meanwhile,
    and every full collection later, would walk all of them for nothing (about a
    tenth of the download's CPU time in ``perf``). Frozen objects are skipped.
    """
    for name in _COMMAND_MODULES.get(command, ()):
        importlib.import_module(name)
    gc.freeze()
    gc.enable()


def _dispatch(args: argparse.Namespace, metrics: RunMetrics) -> int:
    _load_command(args.command)
    if args.command == "merge":
        from job.core.logs import get_logger
        from job.merge import merge_outputs

        root: Path = args.output_dir
        _check_root(root)
        get_logger().info("merge.done", root=str(root), **merge_outputs(root))
        with _timed(metrics, "report"):
            write_site(root)
        return EXIT_OK
    if args.command == "report":
        _check_root(args.output_dir)
        with _timed(metrics, "report"):
            write_site(args.output_dir)
        return EXIT_OK
    shard = _shard(args)
    if args.command == "download":
        from job.download.stage import run_download

        with _timed(metrics, "download"):
            downloaded = run_download(_download_config(args, args.output_dir, shard))
        metrics.stages["download"] = downloaded
        return downloaded.exit_status
    if args.command == "parse":
        from job.parse.stage import run_parse
        from job.report.journal_files import JOURNAL_FILES

        cfg = _parse_config(args, args.failed_runs_dir, args.output_dir, shard)
        with _timed(metrics, "parse"):
            parsed = run_parse(cfg, JOURNAL_FILES)
        metrics.stages["parse"] = parsed
        return parsed.exit_status
    if args.command == "run":
        from job.download.stage import run_download
        from job.parse.stage import ParseStage
        from job.report.journal_files import JOURNAL_FILES

        root = args.output_dir
        with ParseStage(
            _parse_config(args, root / "failed_runs", root / "aide_journals", shard),
            JOURNAL_FILES,
        ) as parse:
            # Journals are parsed as their archives arrive, by workers forked now,
            # before the download starts its threads (see ParseStage).
            early = parse.start_early()
            with _timed(metrics, "download"):
                downloaded = run_download(
                    _download_config(args, root / "failed_runs", shard),
                    on_published=parse.offer if early else None,
                )
            metrics.stages["download"] = downloaded
            with _timed(metrics, "parse"):
                parsed = parse.finish()
            metrics.stages["parse"] = parsed
        if not args.dry_run and not shard.active:
            # Sharded workers leave the page to `merge`, which sees every shard's index.
            with _timed(metrics, "report"):
                write_site(root)
        return max(downloaded.exit_status, parsed.exit_status)
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    gc.disable()  # until the modules are in: see _load_command
    from job.core.logs import configure_logging, get_logger
    from job.core.signals import Interrupted, handle_stop_signals

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, level=getattr(logging, args.log_level.upper()))
    log = get_logger()
    metrics = RunMetrics(args.command, started=time.time())
    try:
        with handle_stop_signals():
            status = _dispatch(args, metrics)
    except UsageError as exc:
        log.error("usage_error", error=str(exc))
        print(f"analyze-failures: error: {exc}", file=sys.stderr)
        status = EXIT_USAGE
    except Interrupted as exc:
        log.warning("interrupted", signal=exc.signal_name, exit_status=exc.exit_status)
        _write_metrics(args, metrics, exc.exit_status)
        if threading.active_count() > 1:
            # A worker may still sit in a socket read; its temporary folder is already
            # gone and nothing it could finish would be published, so don't wait for it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_status)
        return exc.exit_status
    _write_metrics(args, metrics, status)
    return status


def _write_metrics(args: argparse.Namespace, metrics: RunMetrics, status: int) -> None:
    """The metrics file, whatever the outcome: an operator alerts on failures too."""
    if args.metrics_file is None:
        return
    from job.core.logs import get_logger

    try:
        write_metrics(args.metrics_file, metrics, ended=time.time(), exit_status=status)
    except OSError as exc:  # the run's own outcome stands; say why the file is stale
        get_logger().error(
            "metrics.unwritable", path=str(args.metrics_file), error=exc.strerror or str(exc)
        )


@contextlib.contextmanager
def _timed(metrics: RunMetrics, stage: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        metrics.durations[stage] = round(time.monotonic() - started, 3)
