"""Why one run failed: a run-level verdict from the evidence its archive holds.

The step-level taxonomy (:mod:`job.model.taxonomy`) answers "which exceptions did
AIDE's steps raise"; people deciding what to fix ask "why did this *run* fail".
biomlbench's authors labelled failed runs by hand with five failure modes; this
module gives every run (succeeded ones included) one mode from a fixed vocabulary,
a finer cause, and a pointer to the log line that justifies it, so every number
on the page can be checked against the line it came from.

Pure: the caller (:mod:`job.model.runs`) reads the files; this module only looks
at what it is handed (metadata flag, the ``submission/`` listing, numbered log
tail lines, the AIDE journal's facts and the run's duration).

Precedence when several signals are present (users read this order on the page):
infrastructure, time_limit, resource_exhaustion, submission_error,
code_exception, did_not_finish. A run that timed out is a timeout even when AIDE's
debug loop raised on the way; errors inside AIDE's search never decide a run.

All regexes avoid nested or overlapping quantifiers (linear time on hostile logs),
and lines are clipped to :data:`MAX_LINE` characters before matching.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Bump when the rules change: cached verdicts of an older version are decided again.
VERDICT_VERSION = 1

SUCCEEDED = "succeeded"
INFRASTRUCTURE = "infrastructure"
TIME_LIMIT = "time_limit"
RESOURCE_EXHAUSTION = "resource_exhaustion"
SUBMISSION_ERROR = "submission_error"
CODE_EXCEPTION = "code_exception"
DID_NOT_FINISH = "did_not_finish"
UNKNOWN = "unknown"
#: Failure modes, strongest signal first: the order that decides between signals.
PRECEDENCE = (
    INFRASTRUCTURE,
    TIME_LIMIT,
    RESOURCE_EXHAUSTION,
    SUBMISSION_ERROR,
    CODE_EXCEPTION,
    DID_NOT_FINISH,
)
#: Every value of the ``mode`` column.
MODES = (SUCCEEDED, *PRECEDENCE, UNKNOWN)
#: Words for the page.
MODE_LABELS = {
    SUCCEEDED: "succeeded",
    INFRASTRUCTURE: "infrastructure",
    TIME_LIMIT: "time limit",
    RESOURCE_EXHAUSTION: "resource exhaustion",
    SUBMISSION_ERROR: "submission error",
    CODE_EXCEPTION: "code exceptions",
    DID_NOT_FINISH: "failed to finish",
    UNKNOWN: "unknown",
}
#: Longest line matched or quoted (log lines can be megabytes of printed data).
MAX_LINE = 2000
#: Longest evidence quoted in the CSV and on the page.
MAX_EVIDENCE = 300
#: The agent's last words: a traceback or an OOM counts only within this many
#: meaningful lines from the end of a log (earlier ones were survived).
FINAL_WINDOW = 40
#: A run that lasted this share of its time limit ran into it.
LIMIT_SHARE = 0.98
#: Submissions biomlbench accepts (``submission/<name>``, non-empty).
VALID_SUBMISSIONS = ("submission.csv", "submission.h5ad")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a log: file relative to the run folder, 1-based number, text."""

    file: str
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class SubmissionFile:
    name: str  # relative to submission/
    size: int


@dataclass(frozen=True, slots=True)
class JournalFacts:
    """What AIDE's journal(s) say about the run (from the index entries)."""

    steps: int
    valid_solution: bool


@dataclass(frozen=True, slots=True)
class RunEvidence:
    """Everything :func:`decide` looks at, already read from disk."""

    agent: str | None
    success: bool | None  # metadata.json's flag
    submission: tuple[SubmissionFile, ...] | None  # None: no submission/ folder
    logs: tuple[tuple[LogLine, ...], ...] = ()  # run.log's tail first, then agent logs
    duration_s: float | None = None
    time_limit_s: float | None = None
    journal: JournalFacts | None = None
    missing: tuple[str, ...] = ()  # why some evidence could not be read


@dataclass(frozen=True, slots=True)
class Verdict:
    mode: str
    cause: str
    evidence_file: str | None = None  # relative to the run folder
    evidence_line: int | None = None
    evidence: str = ""


# --- line patterns (no nested quantifiers; see the module doc) ------------------------

#: ``[2025-08-25 17:09:05,123] [run.py:88] `` and the agent's ``[Container] `` prefix.
_HARNESS_PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]{8,12}\] \[[^\]\n]{0,200}\] ")
_CONTAINER = "[Container] "
_INFRA = (
    (re.compile(r"grading server failed to start", re.I), "grading server did not start"),
    (re.compile(r"ImageNotFound|No such image", re.I), "docker image missing"),
    (
        re.compile(r"\b(\w{0,80}(?:API_KEY|TOKEN))\b[^\n]{0,80}\bnot set", re.I),
        "API key missing",
    ),
    (re.compile(r"environment variable [^\n]{0,80}not set", re.I), "API key missing"),
    (
        re.compile(r"AuthenticationError|invalid[ _]api[ _]key|Incorrect API key", re.I),
        "API key rejected",
    ),
)
#: The start scripts' own words ("Timed out after 12hrs 0mins 0secs", "STELLA timed out after
#: 16 hours"), at the start of the agent's line: a tool's "timed out after 600 seconds"
#: somewhere in a conversation is not the run's time limit.
_TIMED_OUT = re.compile(
    r"^(?:[A-Za-z]{1,20} )?timed out after (\d{1,3}) ?h(?:ou)?r?s?\b(?: ?(\d{1,2}) ?m)?", re.I
)
_TIMEOUT_CMD = re.compile(r"^\+ timeout (?:-\S{1,20} ){0,3}(\d{2,7})\b")
_RESOURCE = (
    (
        re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|CUDA error: out of memory"),
        "GPU out of memory",
    ),
    (re.compile(r"No space left on device"), "disk full"),
    (re.compile(r"_ArrayMemoryError|\bMemoryError\b|Unable to allocate \d"), "out of memory"),
    (re.compile(r"REPL child process died unexpectedly"), "killed (out of memory)"),
    (
        re.compile(r"(?:^|\s)Killed(?:\s|$)|\bOOMKilled\b|Out of memory: Killed process"),
        "killed (out of memory)",
    ),
)
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):")
_EXC_LINE = re.compile(
    r"^([A-Za-z_][\w.]{0,150}(?:Error|Exception|Exit|Interrupt|Exceeded))(?::[ \t]?(.{0,2000}))?$"
)
_STEP_LIMIT = re.compile(
    r"AgentMaxStepsError|Reached max steps|GraphRecursionError|Recursion limit of \d|max(?:imum)? (?:number of )?(?:steps|actions) reached",
    re.I,
)
_FAILED_INTERNALLY = re.compile(r"Agent completed without exception but failed internally")
_NO_SUBMISSION = re.compile(r"Agent success unclear: No submission file found")
_RUN_FAILED = re.compile(r"Run failed for seed")
_CONTEXT_CODE = re.compile(r"context_length_exceeded|prompt is too long|maximum context length")


def strip_prefix(text: str) -> str:
    """The message of a run.log line, without the timestamp, source and ``[Container] ``."""
    text = text[:MAX_LINE]
    found = _HARNESS_PREFIX.match(text)
    if found:
        text = text[found.end() :]
    if text.startswith(_CONTAINER):
        text = text[len(_CONTAINER) :]
    return text.rstrip("\r\n")


def clip(text: str, limit: int = MAX_EVIDENCE) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verdict(mode: str, cause: str, line: LogLine | None) -> Verdict:
    if line is None:
        return Verdict(mode, cause)
    return Verdict(mode, cause, line.file, line.number, clip(strip_prefix(line.text)))


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} h" if abs(hours - round(hours)) < 0.05 else f"{hours:.1f} h"


# --- deciding ---------------------------------------------------------------------------


def decide(ev: RunEvidence) -> Verdict:
    """The run's verdict; see the module doc for the vocabulary and the precedence."""
    valid = _valid_submission(ev.submission)
    if ev.success is True or (ev.success is None and valid is not None):
        if valid is not None:
            return Verdict(SUCCEEDED, f"valid {valid.name}", f"submission/{valid.name}")
        return Verdict(SUCCEEDED, "metadata.json says success", None)
    signals = _signals(ev)
    for mode in PRECEDENCE:
        if mode in signals:
            return signals[mode]
    if not any(ev.logs) and ev.journal is None:
        reason = "; ".join(ev.missing) or "no run.log and no agent logs in the archive"
        return Verdict(UNKNOWN, f"no evidence: {reason}")
    if ev.missing and not any(ev.logs):
        return Verdict(UNKNOWN, f"no evidence: {'; '.join(ev.missing)}")
    last = _last_meaningful(ev.logs[0]) if ev.logs and ev.logs[0] else None
    return _verdict(UNKNOWN, "no end-of-run message in the logs (cut short?)", last)


def _valid_submission(files: tuple[SubmissionFile, ...] | None) -> SubmissionFile | None:
    for f in files or ():
        if f.name in VALID_SUBMISSIONS and f.size > 0:
            return f
    return None


def _signals(ev: RunEvidence) -> dict[str, Verdict]:
    """Every mode some evidence points at, with the strongest line for each."""
    found: dict[str, Verdict] = {}
    limit = ev.time_limit_s
    for log in ev.logs:
        for line in log:
            text = strip_prefix(line.text)
            if INFRASTRUCTURE not in found:
                for pattern, cause in _INFRA:
                    if pattern.search(text):
                        found[INFRASTRUCTURE] = _verdict(INFRASTRUCTURE, cause, line)
                        break
            cmd = _TIMEOUT_CMD.match(text)
            if cmd:  # the start script's own `timeout N` beats the per-task defaults
                limit = float(cmd.group(1))
            hours = None if TIME_LIMIT in found else _TIMED_OUT.match(text)
            if hours:
                seconds = int(hours.group(1)) * 3600 + int(hours.group(2) or 0) * 60
                cause = f"timed out after {_hours(seconds)}"
                found[TIME_LIMIT] = _verdict(TIME_LIMIT, cause, line)
        final = _final_window(log)
        _final_signals(final, found)
    lasted = ev.duration_s is not None and bool(limit) and ev.duration_s >= LIMIT_SHARE * limit
    if TIME_LIMIT not in found and limit and lasted:
        last = _last_meaningful(ev.logs[0]) if ev.logs and ev.logs[0] else None
        found[TIME_LIMIT] = _verdict(
            TIME_LIMIT, f"ran its whole time limit ({_hours(limit)})", last
        )
    _submission_signal(ev, found)
    _journal_signals(ev, found)
    return found


def _final_window(log: Sequence[LogLine]) -> list[LogLine]:
    """The last :data:`FINAL_WINDOW` lines of the agent's own output (harness lines left out)."""
    out: list[LogLine] = []
    for line in reversed(log):
        raw = line.text[:MAX_LINE]
        harness = _HARNESS_PREFIX.match(raw)
        if harness and _CONTAINER not in raw[:300] and not _TRACEBACK.match(raw[harness.end() :]):
            continue  # biomlbench's own bookkeeping, not the agent's last words
        if not raw.strip():
            continue
        out.append(line)
        if len(out) >= FINAL_WINDOW:
            break
    out.reverse()
    return out


def _final_signals(final: list[LogLine], found: dict[str, Verdict]) -> None:
    """Resource exhaustion, crashes and step limits: only when they are the last word."""
    in_traceback = False
    exc: LogLine | None = None
    for line in final:
        text = strip_prefix(line.text)
        if RESOURCE_EXHAUSTION not in found:
            for pattern, cause in _RESOURCE:
                if pattern.search(text):
                    found[RESOURCE_EXHAUSTION] = _verdict(RESOURCE_EXHAUSTION, cause, line)
                    break
        if _TRACEBACK.match(text):
            in_traceback = True
            continue
        if in_traceback and _EXC_LINE.match(text):
            exc = line
            in_traceback = False
        if DID_NOT_FINISH not in found and _STEP_LIMIT.search(text):
            found[DID_NOT_FINISH] = _verdict(DID_NOT_FINISH, "hit the agent's step limit", line)
    if exc is not None and CODE_EXCEPTION not in found:
        text = strip_prefix(exc.text)
        if _STEP_LIMIT.search(text):
            return  # giving up at the step limit is not a crash
        match = _EXC_LINE.match(text)
        assert match is not None
        name, message = match.group(1), (match.group(2) or "").strip()
        context = _CONTEXT_CODE.search(message)
        cause = f"{name}: {context.group(0)}" if context else clip(text, 120)
        if not message:
            cause = name
        found[CODE_EXCEPTION] = _verdict(CODE_EXCEPTION, cause, exc)


def _submission_signal(ev: RunEvidence, found: dict[str, Verdict]) -> None:
    files = ev.submission or ()
    if not files:
        return
    for f in files:
        if f.name in VALID_SUBMISSIONS and f.size == 0:
            cause = f"empty {f.name}"
            break
    else:
        names = ", ".join(sorted(f.name for f in files)[:3])
        cause = f"no submission.csv or submission.h5ad (found {clip(names, 100)})"
    found[SUBMISSION_ERROR] = Verdict(
        SUBMISSION_ERROR, cause, f"submission/{files[0].name}", None, cause
    )


def _journal_signals(ev: RunEvidence, found: dict[str, Verdict]) -> None:
    """AIDE: no valid step means its code never worked; a valid one unsubmitted means it stopped."""
    facts = ev.journal
    end = _harness_end(ev.logs[0]) if ev.logs else None
    if facts is None:
        if DID_NOT_FINISH not in found and end is not None:
            found[DID_NOT_FINISH] = _verdict(
                DID_NOT_FINISH, "ended without an error and without a submission", end
            )
        return
    if not facts.valid_solution and CODE_EXCEPTION not in found:
        found[CODE_EXCEPTION] = _verdict(
            CODE_EXCEPTION,
            f"no valid solution in {facts.steps} steps, nothing submitted",
            end,
        )
    elif facts.valid_solution and DID_NOT_FINISH not in found:
        found[DID_NOT_FINISH] = _verdict(
            DID_NOT_FINISH,
            f"found a valid solution in {facts.steps} steps but submitted nothing",
            end,
        )


def _harness_end(log: Sequence[LogLine]) -> LogLine | None:
    """biomlbench's "failed internally" / "no submission" / "Run failed" line, newest."""
    for line in reversed(log):
        text = line.text[:MAX_LINE]
        if _FAILED_INTERNALLY.search(text) or _NO_SUBMISSION.search(text):
            return line
        if _RUN_FAILED.search(text):
            return line
    return None


def _last_meaningful(log: Sequence[LogLine]) -> LogLine | None:
    for line in reversed(log):
        if line.text.strip():
            return line
    return None


def time_limit_for(agent: str | None, task_id: str | None) -> float:
    """biomlbench's ``TIME_LIMIT_SECS`` for a run: 12 h (16 h STELLA), tasks override.

    Most polarishub, proteingym and manual tasks are 8 h; kaggle tasks 16 h. Used
    only when the log has no ``+ timeout N`` trace of the start script.
    """
    source = (task_id or "").split("/", 1)[0].lower()
    if source == "kaggle":
        return 16 * 3600.0
    if source.startswith(("polarishub", "proteingym")) or source == "manual":
        return 8 * 3600.0
    return (16 if (agent or "").lower() == "stella" else 12) * 3600.0
