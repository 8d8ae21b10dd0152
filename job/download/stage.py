"""The download stage: list, plan, fetch concurrently, record, summarise.

This module only orchestrates; the pieces live in :mod:`job.download.listing` (what is in
the bucket), :mod:`job.model.manifest` (what was done before), :mod:`job.download.fetch` (one
archive, all-or-nothing) and :mod:`job.download.throttle` (how hard to push S3).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from job.core.atomic import is_temporary, remove_tree, temp_prefix
from job.core.config import DownloadConfig, shard_of, usable_cpus
from job.core.errors import Cancelled, UsageError
from job.core.logs import get_logger
from job.core.progress import Progress
from job.core.safe_fs import is_real_dir
from job.core.signals import raise_if_stopped, stop_requested
from job.core.summary import Outcome, StageSummary
from job.download.extract import Limits
from job.download.fetch import Fetcher, FetchResult, InFlight, InProcess, Transport
from job.download.listing import Archive, list_archives, nearest_prefixes, parse_bucket_path
from job.download.reasons import failure_reason
from job.download.receive import Receiver
from job.download.retrying import diagnose
from job.download.s3client import ClientMaker
from job.download.throttle import AdaptiveThrottle
from job.download.workers import WorkerPool, WorkerSpec
from job.model.manifest import Manifest, Record, load, manifest_path, now_iso

#: How long in-flight archives get to notice a stop before the stage gives up on them.
STOP_GRACE_SECONDS = 5.0
#: Archives in flight at least, by default: enough to hide the network's latency.
DEFAULT_IN_FLIGHT = 8


class Status(StrEnum):
    NEW = "new"
    CHANGED = "changed"
    RETRY = "failed before"
    MISSING = "missing on disk"
    UP_TO_DATE = "up to date"


@dataclass(frozen=True)
class Planned:
    archive: Archive
    status: Status


def plan(
    archives: list[Archive],
    records: dict[str, Record],
    output_dir: Path,
    force: bool,
    keep_compressed: bool = False,
) -> list[Planned]:
    """Decide per archive whether it needs fetching, from the manifest and the disk."""
    planned = []
    for archive in archives:
        rec = records.get(archive.key)
        if rec is None:
            status = Status.NEW
        elif rec.etag != archive.etag or rec.size != archive.size:
            status = Status.CHANGED
        elif rec.outcome != Outcome.SUCCEEDED:
            status = Status.RETRY
        elif not _on_disk(output_dir, archive.folder, keep_compressed):
            status = Status.MISSING
        else:
            status = Status.UP_TO_DATE
        if force and status is Status.UP_TO_DATE:
            status = Status.CHANGED
        planned.append(Planned(archive, status))
    return planned


def _on_disk(output_dir: Path, folder: str, keep_compressed: bool) -> bool:
    """Is the archive's published folder (and kept archive) there? False if it can't be told.

    ``Path.is_dir`` raises on some errors (ENAMETOOLONG, EACCES); one odd record
    must not stop the planning of every other archive, and refetching is safe.
    """
    try:
        return is_real_dir(output_dir, folder) and (
            not keep_compressed or (output_dir / f"{folder}.tar.gz").is_file()
        )
    except OSError:
        return False


def _remove_stale(output_dir: Path, archives: list[Archive], manifest_file: Path) -> int:
    """Delete temporaries a killed run left for *these* archives (and this manifest).

    Only the folders that can hold archive folders are scanned (never the extracted
    trees), so this stays cheap with many thousands of runs; and only names that
    belong to this worker's archives are touched, because shard workers on other
    machines may be writing their own temporaries into the same folders right now.
    """
    wanted: dict[Path, set[str]] = {output_dir: {temp_prefix(manifest_file)}}
    for archive in archives:
        target = output_dir / archive.folder
        wanted.setdefault(target.parent, set()).update(
            {temp_prefix(target), temp_prefix(target.with_name(target.name + ".tar.gz"))}
        )
    removed = 0
    for parent, prefixes in wanted.items():
        if not is_real_dir(output_dir, os.path.relpath(parent, output_dir)):
            continue  # missing, or a planted link: never scanned (or deleted in) through
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            if is_temporary(entry.name) and entry.name.startswith(tuple(prefixes)):
                remove_tree(Path(entry.path))
                removed += 1
    return removed


def _check_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output dir {output_dir}: {exc.strerror}") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise UsageError(
            f"output dir {output_dir} is not writable: fix its permissions or choose another"
        )


def run_download(
    cfg: DownloadConfig, on_published: Callable[[Path], None] | None = None
) -> StageSummary:
    """List, plan and fetch; ``on_published(folder)`` hears of each archive folder published.

    ``on_published`` runs in this thread (the one collecting results), so it
    may start other work but must not take long: fetch threads wait for it.
    """
    log = get_logger(stage="download")
    summary = StageSummary("download")
    where = parse_bucket_path(cfg.bucket_path)
    if not cfg.dry_run:
        _check_output_dir(cfg.output_dir)
    maker = ClientMaker(cfg.s3)
    most = archives_in_flight(cfg, _wanted_processes(cfg))
    client = maker.client(pool_size=most)
    throttle = AdaptiveThrottle(most, adaptive=cfg.adaptive)

    def on_list_retry(attempt: int, exc: BaseException, wait_s: float) -> None:
        log.warning(
            "download.retry",
            key=None,
            operation="list",
            attempt=attempt,
            cause=diagnose(exc).cause,
            wait=round(wait_s, 3),
        )

    listing_throttle_slot = _ListingThrottle(throttle)
    archives, rejected = list_archives(
        client,
        where,
        retry=cfg.retry,
        shard=cfg.shard,
        on_retry=on_list_retry,
        before_request=listing_throttle_slot,
    )
    records = load(cfg.output_dir)
    planned = plan(archives, records, cfg.output_dir, cfg.force, cfg.keep_compressed)
    log.info(
        "download.listed",
        bucket_path=str(where),
        archives=len(archives),
        bytes=sum(a.size for a in archives),
        shard=f"{cfg.shard.index}/{cfg.shard.count}" if cfg.shard.active else None,
        to_fetch=sum(p.status is not Status.UP_TO_DATE for p in planned),
    )
    if not archives and not rejected and not cfg.shard.active:
        # Exit 0 is right (nothing failed), but a typo in the prefix must not pass as
        # "nothing new": say so, with the prefixes that do exist next to it.
        log.warning(
            "download.empty",
            bucket_path=str(where),
            problem="no *.tar.gz archives under this path: check --bucket-path",
            nearest=nearest_prefixes(client, where),
        )
    if cfg.dry_run:
        for p in planned:
            log.info(
                "download.plan",
                key=p.archive.key,
                size=p.archive.size,
                status=p.status.value,
                folder=p.archive.folder,
            )
        for key, reason in rejected:
            log.warning("download.plan", key=key, status="rejected", error=reason)
        return summary

    removed = _remove_stale(
        cfg.output_dir, archives, manifest_path(cfg.output_dir, cfg.shard.suffix)
    )
    if removed:
        log.info("download.cleanup", removed_temporaries=removed)
    manifest = Manifest(
        cfg.output_dir,
        suffix=cfg.shard.suffix,
        bucket_path=str(where),
        keep=_own_records(records, cfg),
    )
    for key, reason in rejected:
        summary.record(Outcome.FAILED)
        log.error(
            "download.archive",
            key=key,
            outcome=Outcome.FAILED.value,
            error=reason,
            bytes=0,
            attempts=0,
            seconds=0.0,
        )
    for p in planned:
        if p.status is Status.UP_TO_DATE:
            summary.record(Outcome.SKIPPED)
    todo = [p.archive for p in planned if p.status is not Status.UP_TO_DATE]
    transport, pool, lanes = _transport(cfg, maker, client, where.bucket, len(todo), log)
    progress = Progress(total=len(todo), enabled=cfg.progress)
    registry = InFlight()
    fetcher = Fetcher(cfg, throttle, log, registry, transport)
    finished = False
    try:
        _fetch_all(fetcher, lanes, todo, manifest, summary, log, progress, registry, on_published)
        finished = True
    finally:
        if pool is not None:
            pool.close(kill=not finished)
        registry.remove_all()
        progress.close()
        manifest.save(force=True)
    summary.emit(log)
    return summary


def _transport(
    cfg: DownloadConfig, maker: ClientMaker, client: Any, bucket: str, todo: int, log: Any
) -> tuple[Transport, WorkerPool | None, int]:
    """Where attempts will run, the worker pool if one was forked, and archives in flight.

    Worker processes when there is work for them (:func:`worker_processes`),
    forked here, before the stage starts any thread; this process otherwise,
    and as the fallback when none is left.
    """
    processes = worker_processes(cfg, todo)
    lanes = archives_in_flight(cfg, processes)
    limits = Limits(max_bytes=cfg.max_bytes, max_members=cfg.max_members)
    here = InProcess(Receiver(client, bucket, limits, slots=cfg.extract_slots or usable_cpus() + 1))
    pool: WorkerPool | None = None
    if processes:
        pool = WorkerPool(
            WorkerSpec(maker, bucket, limits), spread(min(lanes, todo), processes), here, log
        )
        refused = pool.start()  # before any thread of ours: see job.download.workers
        if refused is not None:
            log.warning(
                "download.workers_refused",
                asked=processes,
                started=len(pool.workers),
                problem=refused,
            )
    started = len(pool.workers) if pool is not None else 0
    log.info("download.workers", processes=started, in_flight=lanes)
    return (pool if pool is not None and started else here), pool, lanes


class _ListingThrottle:
    """Lets list requests take part in the adaptive throttle's rate limit."""

    def __init__(self, throttle: AdaptiveThrottle) -> None:
        self.throttle = throttle

    def __call__(self) -> None:
        self.throttle.acquire(cancelled=stop_requested)
        self.throttle.release()


def _own_records(records: dict[str, Record], cfg: DownloadConfig) -> dict[str, Record]:
    """Records this worker's manifest file carries forward (all of them when unsharded)."""
    if not cfg.shard.active:
        return records
    return {k: r for k, r in records.items() if shard_of(k, cfg.shard.count) == cfg.shard.index}


def worker_processes(cfg: DownloadConfig, todo: int) -> int:
    """How many worker processes to fork for ``todo`` archives (0: none, threads only).

    One per usable CPU plus one, so a CPU whose worker waits for the network
    has another to run. None on one CPU (processes add nothing there) or for a
    single archive (forking costs more than it gives); never more than
    ``--concurrent`` (a worker without a lane would only cost memory).
    """
    if todo < 2:
        return 0
    # Never more workers than archives, nor than archives in flight (each needs a lane).
    return min(_wanted_processes(cfg), todo, cfg.concurrent or todo)


def _wanted_processes(cfg: DownloadConfig) -> int:
    """``--download-processes``, or usable CPUs + 1 (none on one CPU), before any cap."""
    if cfg.processes is not None:
        return cfg.processes
    cpus = usable_cpus()
    return cpus + 1 if cpus > 1 else 0


def archives_in_flight(cfg: DownloadConfig, processes: int) -> int:
    """Archives in flight at once: ``--concurrent``, else two per worker process (8 at least)."""
    return cfg.concurrent or max(DEFAULT_IN_FLIGHT, 2 * processes)


def spread(lanes: int, processes: int) -> list[int]:
    """``lanes`` shared out over ``processes`` as evenly as can be (each gets one at least)."""
    lanes = max(lanes, processes)
    return [lanes // processes + (i < lanes % processes) for i in range(processes)]


def _fetch_all(
    fetcher: Fetcher,
    concurrent: int,
    todo: list[Archive],
    manifest: Manifest,
    summary: StageSummary,
    log: Any,
    progress: Progress,
    in_flight: InFlight,
    on_published: Callable[[Path], None] | None,
) -> None:
    pool = ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="fetch")
    pending: dict[Future[FetchResult], Archive] = {}
    queue = list(reversed(todo))
    stop_deadline: float | None = None
    try:
        while queue or pending:
            while queue and len(pending) < concurrent * 2 and not stop_requested():
                archive = queue.pop()
                pending[pool.submit(fetcher.fetch, archive)] = archive
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                archive = pending.pop(future)
                published = _record(future, archive, manifest, summary, log, progress)
                if published and on_published is not None:
                    _tell(on_published, fetcher.cfg.output_dir / archive.folder, archive, log)
            if stop_requested():
                queue.clear()
                now = time.monotonic()
                stop_deadline = stop_deadline or now + STOP_GRACE_SECONDS
                if now >= stop_deadline:
                    break
        raise_if_stopped()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=not stop_requested(), cancel_futures=True)


def _tell(on_published: Callable[[Path], None], folder: Path, archive: Archive, log: Any) -> None:
    """Hand a published folder on; a failure there is logged, never the download's end.

    The folder is published and recorded either way; whoever listens (the parse
    stage) finds it again on its own walk of the drive.
    """
    try:
        on_published(folder)
    except Exception as exc:
        log.error(
            "download.published_callback_failed",
            key=archive.key,
            folder=archive.folder,
            error=failure_reason(exc),
        )


def _record(
    future: Future[FetchResult],
    archive: Archive,
    manifest: Manifest,
    summary: StageSummary,
    log: Any,
    progress: Progress,
) -> bool:
    """Record one archive's outcome; True when its folder was published."""
    exc = future.exception()
    if isinstance(exc, Cancelled):
        return False  # discarded because of a stop; not a failure, nothing recorded
    if exc is None:
        result = future.result()
        manifest.put(
            Record(
                key=archive.key,
                etag=result.etag or archive.etag,
                size=archive.size,
                outcome=Outcome.SUCCEEDED.value,
                time=now_iso(),
                folder=archive.folder,
                bytes_extracted=result.bytes_extracted,
                members=result.members,
            )
        )
        summary.record(Outcome.SUCCEEDED, result.bytes_received)
        log.info(
            "download.archive",
            key=archive.key,
            outcome=Outcome.SUCCEEDED.value,
            bytes=result.bytes_received,
            bytes_extracted=result.bytes_extracted,
            members=result.members,
            attempts=result.attempts,
            seconds=result.seconds,
            folder=archive.folder,
        )
        progress.advance(result.bytes_received)
        return True
    reason = failure_reason(exc)
    attempts = getattr(exc, "attempts", None)
    seconds = getattr(exc, "seconds", None)
    manifest.put(
        Record(
            key=archive.key,
            etag=archive.etag,
            size=archive.size,
            outcome=Outcome.FAILED.value,
            time=now_iso(),
            folder=archive.folder,
            error=reason,
        )
    )
    summary.record(Outcome.FAILED)
    log.error(
        "download.archive",
        key=archive.key,
        outcome=Outcome.FAILED.value,
        error=reason,
        bytes=0,
        attempts=attempts,
        seconds=seconds,
        folder=archive.folder,
    )
    progress.advance(0, failed=True)
    return False
