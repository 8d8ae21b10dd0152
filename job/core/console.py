"""``--log-format console``: one short line per event, for a person at a terminal.

structlog's ConsoleRenderer prints every field as ``key=value`` after a full ISO
timestamp and a padded event name, so a ``download.archive`` event took two or
three rows even at 200 columns and showed the same path twice (``key=`` and
``folder=``). Here the common events fit one row of 120 columns: the time of
day, the level, the event, the item's relative path once (shortened in the
middle when the row is too narrow), then the remaining fields with sizes in
kB/MB/GB and durations like ``0.4s``. JSON (the default) is unchanged: this is
for people, not for machines.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from typing import Any, TextIO

#: The item an event is about, in order of preference; only the first present is shown.
#: ``key`` is the S3 key: the prefix, then the folder, then ``.tar.gz``; redundant with it.
_SUBJECTS = ("folder", "journal", "key", "bucket_path")
_SIZES = frozenset({"bytes", "bytes_extracted", "size"})
_DURATIONS = frozenset({"seconds", "wait", "elapsed"})
#: ``report`` mirrors the journal's path (see the README's output layout): shown once is enough.
#: ``failures_csv`` sits beside ``index_html``, which is shown.
_HIDDEN = frozenset({"stage", "timestamp", "level", "event", "exception", "report", "failures_csv"})
_OUTCOMES = {"succeeded": "ok", "failed": "FAILED", "skipped": "skipped"}
#: Tallies that are only worth a look when they are not zero (the JSON keeps them all).
_QUIET_WHEN_ZERO = frozenset(
    {
        "unreadable_journals",
        "entries_backfilled",
        "pages_written",
        "warnings",
        "evidence_pages",
        "verdicts_stamped",
        "verdicts_reused",
    }
)
#: Counts shown as "22 files" rather than "members=22".
_COUNTS = {"members": "files", "steps": "steps"}
_LEVELS = {"warning": "warn", "critical": "crit"}
_LEVEL_COLOURS = {"debug": "2", "info": "32", "warn": "33", "error": "31", "crit": "31"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
DEFAULT_WIDTH = 120


def human_size(n: int | float) -> str:
    """1536 -> '1.5 kB': decimal units, as the progress bar's MB/s."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def short_duration(seconds: float) -> str:
    """0.4321 -> '0.43s', 75 -> '1m15s', 4000 -> '1h06m'."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, keeping both ends (a path's root and leaf)."""
    if len(text) <= width:
        return text
    if width < 5:
        return text[:width]
    head = (width - 3) // 3
    tail = width - 3 - head
    return f"{text[:head]}...{text[-tail:]}"


def _value(name: str, value: Any) -> str:
    if name in _SIZES and isinstance(value, int | float):
        return human_size(value)
    if name in _DURATIONS and isinstance(value, int | float):
        return short_duration(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):  # a tally by kind: the kinds that occurred, biggest first
        seen = sorted(((k, v) for k, v in value.items() if v), key=lambda kv: -kv[1])
        return ",".join(f"{k}:{v}" for k, v in seen) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return f'"{text}"' if (" " in text or not text) and name != "outcome" else text


class ConsoleLines:
    """structlog processor that renders an event as one line (see the module's docstring)."""

    def __init__(self, stream: TextIO, *, colors: bool) -> None:
        self._stream = stream
        self._colors = colors

    def _width(self) -> int:
        try:
            if self._stream.isatty():
                return os.get_terminal_size(self._stream.fileno()).columns or DEFAULT_WIDTH
        except (OSError, ValueError, AttributeError):
            pass
        return DEFAULT_WIDTH

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
        fields = dict(event)
        stamp = str(fields.get("timestamp", ""))
        clock = stamp[11:19] if len(stamp) >= 19 else stamp
        level = str(fields.get("level", "info"))
        level = _LEVELS.get(level, level)
        name = str(fields.get("event", ""))
        subject = ""
        for candidate in _SUBJECTS:
            if fields.get(candidate) not in (None, ""):
                subject = str(fields[candidate])
                break
        parts: list[str] = []
        if "outcome" in fields:
            parts.append(_OUTCOMES.get(str(fields["outcome"]), str(fields["outcome"])))
        received, extracted = fields.get("bytes"), fields.get("bytes_extracted")
        if isinstance(received, int) and isinstance(extracted, int):
            parts.append(f"{human_size(received)}->{human_size(extracted)}")
            fields.pop("bytes"), fields.pop("bytes_extracted")
        duration = ""
        for key, value in fields.items():
            if key in _HIDDEN or key in _SUBJECTS or key == "outcome" or value is None:
                continue
            if key == "attempts" and value in (0, 1):
                continue  # the usual case; more than one is worth a look
            if key in _QUIET_WHEN_ZERO and value == 0:
                continue
            if key == "seconds" and isinstance(value, int | float):
                duration = short_duration(value) if value or not fields.get("error") else ""
                continue
            if key in _COUNTS and isinstance(value, int):
                parts.append(f"{value} {_COUNTS[key]}")
                continue
            parts.append(f"{key}={_value(key, value)}")
        if duration:
            parts.append(duration)
        rest = " ".join(parts)
        lead = f"{clock} {level:<5} {name}"
        if subject and level in ("debug", "info"):
            # Warnings and errors keep the whole path: they are what a person acts on.
            room = self._width() - len(lead) - len(rest) - 2
            subject = shorten_middle(subject, max(room, 24))
        line = " ".join(part for part in (lead, subject, rest) if part)
        if self._colors:
            colour = _LEVEL_COLOURS.get(level, "0")
            line = line.replace(
                f"{level:<5} {name}",
                f"\x1b[{colour}m{level:<5}\x1b[0m \x1b[1m{name}\x1b[0m",
                1,
            )
        exception = fields.get("exception")
        if exception:
            line += "\n" + str(exception).rstrip()
        return line


def visible_length(line: str) -> int:
    """Columns ``line`` takes on a terminal (colour codes take none)."""
    return len(_ANSI.sub("", line))
