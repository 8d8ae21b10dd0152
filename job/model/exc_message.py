"""What an exception said, in one line, from what AIDE recorded about it.

The traceback's last line in the step's terminal output is what the agent (and a
person) actually saw, e.g. ``FileNotFoundError: [Errno 2] No such file or
directory: 'train.csv'``, file name included; ``exc_info["args"]`` lacks the
formatting (``["2", "No such file or directory"]``), so it is the fallback. AIDE's
timeouts have no args at all, only an output line ``TimeoutError: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: How far back in a step's terminal output to look for the exception's last line.
SEARCH_CHARS = 64 * 1024


def error_message(exc_type: str | None, info: Mapping[str, Any], term_out: str | None) -> str:
    """What the exception said, as the traceback's last line shows it, else from its args."""
    if exc_type and term_out:
        found = traceback_message(exc_type, term_out)
        if found:
            return found
    args = info.get("args")
    if isinstance(args, list) and args:
        return one_line(", ".join(a if isinstance(a, str) else repr(a) for a in args))
    if isinstance(info.get("msg"), str):
        return one_line(info["msg"])
    return ""


def traceback_message(exc_type: str, term_out: str) -> str | None:
    """The last ``[module.]ExcType: message`` line near the end of the output.

    Found by searching backwards for the type's name and testing only the lines
    that contain it: the line wanted is nearly always the last of those, and a
    regular-expression scan of the whole tail cost more than the rest of
    building the step did.
    """
    tail = term_out[-SEARCH_CHARS:]
    if not exc_type or "\n" in exc_type:
        return None  # no such line can exist
    pattern = re.compile(rf"(?:[\w.]+\.)?{re.escape(exc_type)}(?::(.*))?")
    end = len(tail)
    while (hit := tail.rfind(exc_type, 0, end)) >= 0:
        start = tail.rfind("\n", 0, hit) + 1
        stop = tail.find("\n", hit)
        match = pattern.fullmatch(tail, start, len(tail) if stop < 0 else stop)
        if match is not None:
            return one_line(match.group(1) or "")
        end = start  # the rest of this line cannot match either
    return None


def one_line(text: str) -> str:
    """Line breaks become spaces; spacing inside a line is kept (it can matter)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
