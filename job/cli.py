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
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from job import __version__
from job.core.config import (
    DEFAULT_BUCKET_PATH,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_JOURNAL_BYTES,
    DEFAULT_MAX_MEMBERS,
    DownloadConfig,
    ParseConfig,
    RetrySettings,
    S3Settings,
    Shard,
    usable_cpus,
)
from job.core.errors import UsageError
from job.core.metrics import RunMetrics, write_metrics
from job.core.redact import redact_text
from job.core.runlock import EXIT_LOCKED, Locked

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10000000, got {text}")
    return value


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """A converter for a whole number in ``low..high``, saying what was wrong in one line."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return convert


_positive_int = _whole_number(1)
_count = _whole_number(0, 1024)


T = TypeVar("T")


def _choice(*allowed: str) -> Callable[[str], str]:
    """A converter that accepts one of ``allowed`` (how choices are checked in env values)."""

    def convert(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text

    return convert


def _env_default(variable: str, convert: Callable[[str], T], fallback: T) -> T:
    """The default a flag takes from ``variable``, checked exactly as the flag would be.

    argparse checks neither the type nor the choices of a default, so without
    this ``LOG_FORMAT=bogus`` quietly meant json and ``ANALYZE_FAILURES_RETRIES=abc``
    crashed with a traceback. Empty means unset, as in the container's entrypoint.
    """
    text = os.environ.get(variable, "").strip()
    if not text:
        return fallback
    try:
        return convert(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise UsageError(f"{variable}={text!r} is invalid: {exc}") from None


def _log_flags(parser: argparse.ArgumentParser) -> None:
    formats, levels = ("json", "console"), ("debug", "info", "warning", "error")
    parser.add_argument(
        "--log-format",
        choices=formats,
        default=_env_default("LOG_FORMAT", _choice(*formats), "json"),
        help="json lines on stdout, or readable console lines (env LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        choices=levels,
        default=_env_default("LOG_LEVEL", _choice(*levels), "info"),
        help="debug also shows botocore's own request logs on stderr, secrets redacted "
        "(env LOG_LEVEL)",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    _log_flags(parser)
    parser.add_argument(
        "--concurrent",
        type=_positive_int,
        default=_env_default("CONCURRENT", _positive_int, None),
        metavar="N",
        help="archives in flight (default: 2 per download process, 8 at least) / journal "
        "worker processes (default: the CPUs this container may use); env CONCURRENT",
    )
    _metrics_flag(parser)
    _lock_flag(parser)
    parser.add_argument(
        "--max-journal-bytes",
        type=_positive_int,
        default=_env_default("MAX_JOURNAL_BYTES", _positive_int, DEFAULT_MAX_JOURNAL_BYTES),
        metavar="N",
        help="(parse) larger journals fail unread, with the reason; a worker needs a "
        "few times the journal's size in memory (default: 536870912 = 512 MiB; env MAX_JOURNAL_BYTES)",
    )
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
        help="this worker's shard (default: JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX "
        "or SHARD_INDEX; unsharded)",
    )
    parser.add_argument(
        "--shard-count",
        type=_positive_int,
        default=None,
        metavar="N",
        help="number of shards (default: SHARD_COUNT; unsharded)",
    )


def _lock_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-lock",
        type=_seconds,
        default=_env_default("WAIT_LOCK", _seconds, 0.0),
        metavar="SECONDS",
        help="when another run holds the output dir, wait up to this long for it "
        "instead of exiting 75 at once (default: 0.0; env WAIT_LOCK)",
    )


def _metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-file",
        type=Path,
        default=os.environ.get("METRICS_FILE") or None,
        metavar="PATH",
        help="write Prometheus text-format metrics of this run there at the end, for "
        "node_exporter's textfile collector (default: METRICS_FILE; none)",
    )


def _download_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bucket-path",
        default=DEFAULT_BUCKET_PATH,
        metavar="s3://BUCKET/PREFIX/",
        help="every *.tar.gz under it, at any depth, is a failed-run archive",
    )
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
        help="largest total extracted size of one archive, in bytes (default: 64 GiB)",
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
        "--download-processes",
        type=_count,
        default=_env_default("DOWNLOAD_PROCESSES", _count, None),
        metavar="N",
        help="worker processes that receive archives (default: the CPUs this container may "
        "use, plus one; 0: threads of the job's own process); env DOWNLOAD_PROCESSES",
    )
    parser.add_argument(
        "--retries",
        type=_positive_int,
        default=_env_default("ANALYZE_FAILURES_RETRIES", _positive_int, 6),
        metavar="N",
        help="attempts per request before an archive fails (env ANALYZE_FAILURES_RETRIES)",
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (cron mails and CI logs read better), then exit 2."""

    def error(self, message: str) -> NoReturn:
        # Before logging is set up, so redacted here: a rejected value may be a URL
        # with credentials or a pasted key.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact_text(message)} (see --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows every default a flag has, unless its help already says it.

    Flags without a value (``--dry-run``) and defaults that are resolved later
    (None) are left alone: their help text says what happens instead.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and action.nargs != 0
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="analyze-failures",
        formatter_class=_HelpFormatter,
        description="Fetch failed biomlbench run groups from S3, extract them safely and report why the agents failed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, formatter_class=_HelpFormatter)

    dl = add("download", "fetch and extract new or changed failed-run archives")
    _common(dl)
    _download_flags(dl)
    dl.add_argument(
        "--output-dir",
        type=Path,
        default=Path("failed_runs"),
        help="where the archives are extracted, one folder each",
    )

    ps = add("parse", "turn every AIDE journal into a text report and an index")
    _common(ps)
    ps.add_argument(
        "--failed-runs-dir",
        type=Path,
        default=Path("failed_runs"),
        help="where the extracted runs are (download's --output-dir)",
    )
    ps.add_argument(
        "--output-dir",
        type=Path,
        default=Path("aide_journals"),
        help="where the reports and index.json go",
    )

    run = add("run", "download then parse, into ROOT/failed_runs and ROOT/aide_journals")
    _common(run)
    _download_flags(run)
    run.add_argument(
        "--output-dir",
        type=Path,
        default=Path("."),
        metavar="ROOT",
        help="writes ROOT/failed_runs, ROOT/aide_journals and ROOT/index.html",
    )

    for name, text in (
        ("merge", "combine the shard manifests and indexes of a run root, then write the report"),
        ("report", "write ROOT/index.html and ROOT/failures.csv from an existing output dir"),
    ):
        extra = add(name, text)
        _log_flags(extra)
        extra.add_argument(
            "--output-dir",
            type=Path,
            default=Path("."),
            metavar="ROOT",
            help="the run's output dir (the --output-dir of `run`)",
        )
        _metrics_flag(extra)
        _lock_flag(extra)
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
        concurrent=args.concurrent,
        processes=args.download_processes,
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
        concurrent=args.concurrent or usable_cpus(),
        max_journal_bytes=args.max_journal_bytes,
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
        with _locked(args, _report_folders(root), None):
            get_logger().info("merge.done", root=str(root), **merge_outputs(root))
            with _timed(metrics, "report"):
                write_site(root)
        return EXIT_OK
    if args.command == "report":
        _check_root(args.output_dir)
        with _locked(args, _report_folders(args.output_dir), None), _timed(metrics, "report"):
            write_site(args.output_dir)
        return EXIT_OK
    shard = _shard(args)
    if args.command == "download":
        from job.download.stage import run_download

        with _locked(args, [args.output_dir], shard), _timed(metrics, "download"):
            downloaded = run_download(_download_config(args, args.output_dir, shard))
        metrics.stages["download"] = downloaded
        return downloaded.exit_status
    if args.command == "parse":
        from job.parse.stage import run_parse
        from job.report.journal_files import JOURNAL_FILES

        cfg = _parse_config(args, args.failed_runs_dir, args.output_dir, shard)
        with _locked(args, [args.output_dir], shard), _timed(metrics, "parse"):
            parsed = run_parse(cfg, JOURNAL_FILES)
        metrics.stages["parse"] = parsed
        return parsed.exit_status
    if args.command == "run":
        from job.download.stage import run_download
        from job.parse.stage import ParseStage
        from job.report.journal_files import JOURNAL_FILES

        root = args.output_dir
        folders = [root, root / "failed_runs", root / "aide_journals"]
        with (
            _locked(args, folders, shard),
            ParseStage(
                _parse_config(args, root / "failed_runs", root / "aide_journals", shard),
                JOURNAL_FILES,
            ) as parse,
        ):
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


def _report_folders(root: Path) -> list[Path]:
    """What ``report`` and ``merge`` hold: the root, and ``aide_journals/`` when there is one.

    They rewrite ``aide_journals/index.json`` (verdicts, merged shards); a
    ``parse`` writing it at the same time would lose one side's entries.
    """
    journals = root / "aide_journals"
    return [root, journals] if journals.is_dir() else [root]


@contextlib.contextmanager
def _locked(args: argparse.Namespace, folders: list[Path], shard: Shard | None) -> Iterator[None]:
    """This run's hold on its output folders (none for a dry run, which writes nothing)."""
    if getattr(args, "dry_run", False):
        yield
        return
    from job.core.logs import get_logger
    from job.core.runlock import output_lock

    log = get_logger()
    label = shard.suffix.lstrip(".") if shard is not None and shard.active else None
    with contextlib.ExitStack() as stack:
        for folder in folders:
            try:
                stack.enter_context(
                    output_lock(
                        folder,
                        label,
                        wait=args.wait_lock,
                        on_wait=lambda f: log.info("lock.waiting", folder=str(f)),
                    )
                )
            except OSError as exc:
                raise UsageError(
                    f"cannot create output dir {folder}: {exc.strerror or exc}"
                ) from None
        yield


def _usage_exit(exc: UsageError, log: Any = None) -> int:
    """One line on stderr (and the event, once logging is set up), then exit status 2."""
    if log is not None:
        log.error("usage_error", error=str(exc))  # the log chain redacts it
    print(f"analyze-failures: error: {redact_text(str(exc))}", file=sys.stderr)
    return EXIT_USAGE


def _configuration_error(exc: Exception) -> UsageError | None:
    """A botocore configuration exception that escaped the stages, as a usage error.

    The stages map these where they talk to botocore; this is the net under them,
    so that no AWS configuration problem ever ends in a traceback and exit 1.
    """
    if not type(exc).__module__.startswith("botocore"):
        return None
    from job.download.awserrors import explain_config_error

    return explain_config_error(exc)


def main(argv: Sequence[str] | None = None) -> int:
    gc.disable()  # until the modules are in: see _load_command
    from job.core.logs import configure_logging, get_logger
    from job.core.signals import Interrupted, handle_stop_signals

    try:
        parser = build_parser()  # reads and checks the environment's defaults
    except UsageError as exc:
        return _usage_exit(exc)
    args = parser.parse_args(argv)
    configure_logging(args.log_format, level=getattr(logging, args.log_level.upper()))
    log = get_logger()
    metrics = RunMetrics(args.command, started=time.time())
    try:
        with handle_stop_signals():
            status = _dispatch(args, metrics)
    except UsageError as exc:
        status = _usage_exit(exc, log)
    except Locked as exc:
        log.error("lock.held", error=str(exc))
        print(f"analyze-failures: {exc}", file=sys.stderr)
        status = EXIT_LOCKED
    except Interrupted as exc:
        if exc.signum == signal.SIGPIPE and getattr(args, "dry_run", False):
            return EXIT_OK  # the reader of a dry run's plan has read enough; nothing was touched
        log.warning("interrupted", signal=exc.signal_name, exit_status=exc.exit_status)
        _write_metrics(args, metrics, exc.exit_status)
        if threading.active_count() > 1:
            # A worker may still sit in a socket read; its temporary folder is already
            # gone and nothing it could finish would be published, so don't wait for it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_status)
        return exc.exit_status
    except Exception as exc:
        explained = _configuration_error(exc)
        if explained is None:
            raise
        status = _usage_exit(explained, log)
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
