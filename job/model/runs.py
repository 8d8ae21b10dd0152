"""Run groups on disk, and the failed runs that left no AIDE journal (read from their logs).

biomlbench writes ``<run_group>/metadata.json`` listing every run of the group
and whether it succeeded. Agents other than AIDE (biomni, stella,
mlagentbench), and AIDE runs that died before writing a journal, leave only
``run.log`` and their own logs; the error that ended the run is at the end of
those. This module finds the run groups below ``failed_runs/`` (at whatever
depth the download put them), lists their failed runs without a journal, and
reads only the tail of each log.

Everything read here comes from uploaded archives: metadata keys that would
lead outside the run group are ignored, symlinks are not followed, and logs
are read up to :data:`~job.model.taxonomy.LOG_TAIL_BYTES` from their end.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from job.core.atomic import TEMP_MARKER
from job.core.textsafe import scrub_surrogates
from job.model.layout import RUN_GROUP_MARKER
from job.model.taxonomy import LOG_TAIL_BYTES, LogError, last_error

METADATA = "metadata.json"
RUN_LOG = "run.log"
#: Folders of a run that never hold a run group (not descended into when searching).
_RUN_CONTENT = {"logs", "code", "submission", "input", "data", "workspaces", "__pycache__"}
#: A run group sits at most this deep below failed_runs (archive folder, cloud keys, tar top).
_MAX_DEPTH = 7
#: Agent logs read per run, besides run.log (newest first), and which files count as logs.
_MAX_AGENT_LOGS = 8
_LOG_SUFFIXES = {".log", ".txt", ".out", ".err", ""}
_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class RunGroupDir:
    rel: str  # POSIX path relative to failed_runs
    name: str
    metadata: dict[str, Any] | None
    problem: str | None = None  # why metadata is missing or unusable

    @property
    def agent(self) -> str | None:
        meta_agent = (self.metadata or {}).get("agent_id")
        if isinstance(meta_agent, str) and meta_agent:
            return meta_agent
        _, marker, agent = self.name.rpartition(RUN_GROUP_MARKER)
        return (agent or None) if marker else None

    @property
    def started(self) -> datetime | None:
        return group_time(self.name, (self.metadata or {}).get("created_at"))


@dataclass(frozen=True)
class OtherRun:
    """A failed run without a journal, and what its logs say ended it."""

    group: RunGroupDir
    run_key: str  # metadata key, ``<domain>/<task>_<uuid>``
    run_folder: str  # relative to failed_runs
    task_id: str | None
    agent: str | None
    seed: Any
    success: bool | None
    error: LogError | None
    log: str | None  # the log the error came from, relative to failed_runs
    run_log: str | None  # run.log relative to failed_runs, when present
    problems: tuple[str, ...] = field(default=())


def group_time(name: str, created_at: Any = None) -> datetime | None:
    """``2025-08-25T17-09-05-GMT_run-group_aide`` -> 2025-08-25 17:09:05 UTC."""
    for text in (name, created_at if isinstance(created_at, str) else ""):
        found = _STAMP.search(text)
        if found:
            try:
                return datetime(*map(int, found.groups()), tzinfo=UTC)
            except ValueError:
                continue
    return None


def find_run_groups(failed_runs: Path) -> list[RunGroupDir]:
    """Every run group below ``failed_runs``: a folder holding ``metadata.json``.

    A folder named ``*_run-group_*`` without metadata (an upload cut short) also
    counts, unless a run group was found inside it (the archive folder around
    the tar's top folder has the same name).
    """
    found: list[RunGroupDir] = []
    if not failed_runs.is_dir():
        return found
    _walk(failed_runs, "", 0, found)
    return sorted(found, key=lambda g: g.rel)


def _walk(folder: Path, rel: str, depth: int, found: list[RunGroupDir]) -> bool:
    """Search ``folder``; True when a run group was found in or below it."""
    names = _subfolders(folder)
    if (folder / METADATA).is_file() and rel:
        metadata, problem = _read_metadata(folder / METADATA)
        found.append(RunGroupDir(rel, folder.name, metadata, problem))
        return True
    below = False
    if depth < _MAX_DEPTH:
        for name in names:
            if name in _RUN_CONTENT:
                continue
            child_rel = f"{rel}/{name}" if rel else name
            below = _walk(folder / name, child_rel, depth + 1, found) or below
    if not below and RUN_GROUP_MARKER in folder.name and rel:
        found.append(RunGroupDir(rel, folder.name, None, "no metadata.json"))
        return True
    return below


def _subfolders(folder: Path) -> list[str]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(
        scrub_surrogates(e.name)
        for e in entries
        if e.is_dir(follow_symlinks=False)
        and not e.name.startswith(".")
        and TEMP_MARKER not in e.name
    )


def _read_metadata(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        if path.stat().st_size > 64 * 1024 * 1024:
            return None, "metadata.json is too large to read"
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return None, f"metadata.json unreadable: {exc}"
    if not isinstance(doc, dict):
        return None, "metadata.json is not an object"
    return doc, None


def failed_runs_without_journal(
    failed_runs: Path, groups: Iterable[RunGroupDir], journal_run_folders: set[str]
) -> list[OtherRun]:
    """Failed runs (per metadata) that have no journal in the index, with their last error.

    Without metadata every run folder holding a ``run.log`` is taken, outcome unknown.
    """
    out: list[OtherRun] = []
    for group in groups:
        for key, info in _group_runs(failed_runs, group):
            folder = f"{group.rel}/{key}"
            if folder in journal_run_folders or info.get("success") is True:
                continue
            out.append(_other_run(failed_runs, group, key, folder, info))
    return out


def run_outcomes(groups: Iterable[RunGroupDir]) -> dict[str, bool]:
    """run folder (relative to failed_runs) -> biomlbench's ``success`` flag."""
    outcomes: dict[str, bool] = {}
    for group in groups:
        runs = (group.metadata or {}).get("runs")
        if not isinstance(runs, dict):
            continue
        for key, info in runs.items():
            if _safe_key(key) and isinstance(info, dict) and isinstance(info.get("success"), bool):
                outcomes[f"{group.rel}/{key}"] = info["success"]
    return outcomes


def _group_runs(failed_runs: Path, group: RunGroupDir) -> list[tuple[str, dict[str, Any]]]:
    runs = (group.metadata or {}).get("runs")
    if isinstance(runs, dict):
        return [
            (key, info if isinstance(info, dict) else {})
            for key, info in sorted(runs.items())
            if _safe_key(key)
        ]
    # No usable metadata: <domain>/<run>/run.log two levels down.
    base = failed_runs / group.rel
    found = []
    for domain in _subfolders(base):
        for run in _subfolders(base / domain):
            if _regular_file(base / domain / run / RUN_LOG):
                found.append((f"{domain}/{run}", {}))
    return found


def _safe_key(key: Any) -> bool:
    if not isinstance(key, str) or not key:
        return False
    path = PurePosixPath(key)
    return (
        not path.is_absolute()
        and all(p not in ("", ".", "..") for p in path.parts)
        and "\\" not in key
    )


def _other_run(
    failed_runs: Path, group: RunGroupDir, key: str, folder: str, info: dict[str, Any]
) -> OtherRun:
    run_dir = failed_runs / folder
    problems: list[str] = []
    if group.problem:
        problems.append(group.problem)
    run_log = run_dir / RUN_LOG
    has_run_log = _regular_file(run_log)
    error, source = _run_error(run_dir, has_run_log)
    if not run_dir.is_dir():
        problems.append("run folder not in the archive")
    elif error is None:
        problems.append("no traceback or ERROR line in the run's logs")
    task_id = info.get("task_id") if isinstance(info.get("task_id"), str) else None
    agent = info.get("agent_id") if isinstance(info.get("agent_id"), str) else group.agent
    success = info.get("success") if isinstance(info.get("success"), bool) else None
    return OtherRun(
        group=group,
        run_key=key,
        run_folder=folder,
        task_id=task_id or _task_from_key(key),
        agent=agent,
        seed=info.get("seed"),
        success=success,
        error=error,
        log=None if source is None else f"{folder}/{source}",
        run_log=f"{folder}/{RUN_LOG}" if has_run_log else None,
        problems=tuple(problems),
    )


def _task_from_key(key: str) -> str | None:
    domain, _, run = key.rpartition("/")
    task = re.sub(r"_[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$", "", run)
    return f"{domain}/{task}" if domain else task or None


def _run_error(run_dir: Path, has_run_log: bool) -> tuple[LogError | None, str | None]:
    """run.log is biomlbench's account of how the run ended, so it decides first.

    When it has a traceback, that is the answer. When it only has an ERROR line
    naming an exception (or nothing), the agent's own logs may hold the
    traceback with the message: the newest agent log with an error is used then.
    """
    primary = last_error(read_tail(run_dir / RUN_LOG)) if has_run_log else None
    if primary is not None and primary.source == "traceback":
        return primary, RUN_LOG
    for rel in _agent_logs(run_dir):
        found = last_error(read_tail(run_dir / rel))
        if found is None:
            continue
        if primary is None:
            return found, rel
        if found.source == "traceback" and found.type and found.type == primary.type:
            return found, rel  # same failure, with its message
    return (primary, RUN_LOG) if primary is not None else (None, None)


def _agent_logs(run_dir: Path) -> list[str]:
    """Log files under ``<run>/logs/`` (newest first), relative to the run folder."""
    logs_dir = run_dir / "logs"
    found: list[tuple[float, str]] = []
    for dirpath, dirnames, filenames in os.walk(logs_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and TEMP_MARKER not in d]
        for name in filenames:
            if name == "journal.json" or TEMP_MARKER in name:
                continue
            if Path(name).suffix.lower() not in _LOG_SUFFIXES:
                continue
            path = Path(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(
                    (st.st_mtime, scrub_surrogates(str(path.relative_to(run_dir).as_posix())))
                )
    found.sort(key=lambda item: (-item[0], item[1]))
    return [rel for _, rel in found[:_MAX_AGENT_LOGS]]


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a regular file as text ("" when unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        start = max(0, st.st_size - limit)
        os.lseek(fd, start, os.SEEK_SET)
        chunks = []
        remaining = st.st_size - start
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError:
        return ""
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if start:
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else data  # drop the cut line
    return data.decode("utf-8", errors="replace")
