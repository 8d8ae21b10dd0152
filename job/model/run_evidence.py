"""Read what a run's verdict rests on: numbered log tails, the submission folder, timing.

:mod:`job.model.verdict` is pure; this module does the reading, with the same
care as :mod:`job.model.runs`: no symlinks followed, logs read only from their
tail (:data:`TAIL_BYTES`), and line numbers found by streaming
``bytes.count(b"\\n")`` over the part before the tail, so a 2 GB run.log costs
one sequential read and never sits in memory.

Every run listed in a group's ``metadata.json`` is read, succeeded ones included
(a failed group's archive holds its successful runs too).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from job.model.runs import RUN_LOG, RunGroupDir, _agent_logs, _group_runs, _task_from_key
from job.model.verdict import (
    VERDICT_VERSION,
    JournalFacts,
    LogLine,
    RunEvidence,
    SubmissionFile,
    time_limit_for,
)

#: How much of the end of each log is read (the verdict is in the last words).
TAIL_BYTES = 128 * 1024
#: How much of the start of run.log is read for its first timestamp.
HEAD_BYTES = 4096
#: Agent logs read besides run.log (newest first).
AGENT_LOGS = 2
#: Most submission/ entries listed.
MAX_SUBMISSION_FILES = 50
_CHUNK = 1 << 20
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_COMPLETED = re.compile(r"Run completed in (\d{1,9}(?:\.\d{1,6})?) seconds")


@dataclass(frozen=True)
class RunRecord:
    """One run of a group and the evidence read for it."""

    group: RunGroupDir
    run_key: str  # ``<domain>/<task>_<uuid>``
    run_folder: str  # relative to failed_runs
    task_id: str | None
    agent: str | None
    seed: Any
    success: bool | None
    evidence: RunEvidence


@dataclass(frozen=True)
class NumberedTail:
    lines: tuple[LogLine, ...]
    problem: str | None = None


#: Called with (run folder, fingerprint) before a run's logs are read; a RunEvidence
#: returned stands in for reading them (the caller has the verdict from last night).
Reuse = Callable[[str, str], RunEvidence | None]


def group_runs(
    failed_runs: Path,
    group: RunGroupDir,
    journals: dict[str, JournalFacts],
    reuse: Reuse | None = None,
) -> Iterator[RunRecord]:
    """Every run of ``group`` with its evidence; ``journals``: run folder -> AIDE facts."""
    for key, info in _group_runs(failed_runs, group):
        folder = f"{group.rel}/{key}"
        task = info.get("task_id") if isinstance(info.get("task_id"), str) else None
        task = task or _task_from_key(key)
        agent = info.get("agent_id") if isinstance(info.get("agent_id"), str) else group.agent
        success = info.get("success") if isinstance(info.get("success"), bool) else None
        run_dir = failed_runs / folder
        journal = journals.get(folder)
        evidence = None
        if reuse is not None:
            evidence = reuse(folder, fingerprint(run_dir, agent, success, journal))
        yield RunRecord(
            group=group,
            run_key=key,
            run_folder=folder,
            task_id=task,
            agent=agent,
            seed=info.get("seed"),
            success=success,
            evidence=evidence or read_evidence(run_dir, agent, task, success, journal),
        )


def fingerprint(
    run_dir: Path, agent: str | None, success: bool | None, journal: JournalFacts | None
) -> str:
    """What a run's verdict depends on, cheaply: file sizes and mtimes, not contents.

    Archives are immutable once extracted (a changed archive is extracted anew,
    with new mtimes), so equal fingerprints mean the same verdict; the rules'
    version is part of it, so changed rules decide every run again.
    """
    parts = [VERDICT_VERSION, repr(agent), repr(success), repr(journal)]
    logs = [RUN_LOG]
    if (agent or "").lower() != "aide":
        logs += _agent_logs(run_dir)[:AGENT_LOGS]
    for rel in logs:
        try:
            st = os.lstat(run_dir / rel)
            parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{rel}:-")
    parts.append(repr(list_submission(run_dir / "submission")))
    return hashlib.sha256("\0".join(map(str, parts)).encode("utf-8", "replace")).hexdigest()[:32]


def read_evidence(
    run_dir: Path,
    agent: str | None,
    task_id: str | None,
    success: bool | None,
    journal: JournalFacts | None,
) -> RunEvidence:
    """What :func:`job.model.verdict.decide` needs from one run folder."""
    missing: list[str] = []
    if not run_dir.is_dir():
        missing.append("run folder not in the archive")
    logs: list[tuple[LogLine, ...]] = []
    duration = None
    run_log = run_dir / RUN_LOG
    tail = numbered_tail(run_log, RUN_LOG)
    if tail.problem:
        missing.append(tail.problem)
    if tail.lines:
        logs.append(tail.lines)
        duration = _duration(run_log, tail.lines)
    elif not tail.problem:
        logs.append(())
    is_aide = (agent or "").lower() == "aide"
    if not is_aide:  # AIDE's own logs carry its search's step errors: the journal stands in
        for rel in _agent_logs(run_dir)[:AGENT_LOGS]:
            agent_tail = numbered_tail(run_dir / rel, rel)
            if agent_tail.lines:
                logs.append(agent_tail.lines)
    return RunEvidence(
        agent=agent,
        success=success,
        submission=list_submission(run_dir / "submission"),
        logs=tuple(logs),
        duration_s=duration,
        time_limit_s=time_limit_for(agent, task_id),
        journal=journal,
        missing=tuple(missing),
    )


def numbered_tail(path: Path, rel: str, limit: int = TAIL_BYTES) -> NumberedTail:
    """The last ``limit`` bytes of a log as numbered lines (1-based, as an editor counts).

    A missing or non-regular file, and one that is not text (NUL bytes, mostly
    undecodable), give no lines and a one-line reason.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return NumberedTail((), f"no {rel}")
    except OSError as exc:
        return NumberedTail((), f"{rel} unreadable ({exc.strerror or exc})")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return NumberedTail((), f"{rel} is not a regular file")
        start = max(0, st.st_size - limit)
        before = 0
        done = 0
        while done < start:  # count the lines before the tail without keeping them
            chunk = os.read(fd, min(_CHUNK, start - done))
            if not chunk:
                break
            before += chunk.count(b"\n")
            done += len(chunk)
        data = bytearray()
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        return NumberedTail((), f"{rel} unreadable ({exc.strerror or exc})")
    finally:
        os.close(fd)
    raw = bytes(data)
    if start and b"\n" in raw:
        cut = raw.index(b"\n") + 1  # the first line is cut: drop it, it is line before+1
        raw = raw[cut:]
        before += 1
    if not raw:
        return NumberedTail((), f"{rel} is empty" if st.st_size == 0 else None)
    text = raw.decode("utf-8", errors="replace")
    if "\x00" in text or text.count("\ufffd") > len(text) // 10:
        return NumberedTail((), f"{rel} is not text (binary or garbled)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return NumberedTail(tuple(LogLine(rel, before + i + 1, line) for i, line in enumerate(lines)))


def _duration(run_log: Path, tail: tuple[LogLine, ...]) -> float | None:
    """Seconds the run took: biomlbench's "Run completed in N seconds", else first to last stamp."""
    for line in reversed(tail):
        found = _COMPLETED.search(line.text[:2000])
        if found:
            return float(found.group(1))
    first = _first_stamp(run_log)
    last = next((m.group(1) for line in reversed(tail) if (m := _STAMP.match(line.text))), None)
    if first is None or last is None:
        return None
    try:
        a = datetime.strptime(first, "%Y-%m-%d %H:%M:%S")
        b = datetime.strptime(last, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return max((b - a).total_seconds(), 0.0)


def _first_stamp(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        head = os.read(fd, HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in head.split("\n"):
        found = _STAMP.match(line)
        if found:
            return found.group(1)
    return None


def list_submission(folder: Path) -> tuple[SubmissionFile, ...] | None:
    """Regular files in ``submission/`` (and one level below), name and size; None: no folder."""
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    out: list[SubmissionFile] = []
    pending = [(folder, "")]
    while pending and len(out) < MAX_SUBMISSION_FILES:
        path, prefix = pending.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or len(out) >= MAX_SUBMISSION_FILES:
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    out.append(SubmissionFile(prefix + entry.name, size))
                elif entry.is_dir(follow_symlinks=False) and not prefix:
                    pending.append((Path(entry.path), entry.name + "/"))
            except OSError:
                continue
    return tuple(out)
