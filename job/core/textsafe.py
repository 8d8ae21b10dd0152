"""Make text safe to encode as UTF-8 without losing it.

Python strings can hold lone surrogates (from ``\\ud800`` escapes in JSON written
by the stdlib, or from undecodable bytes in file names), which no UTF-8 writer
accepts. They are replaced with U+FFFD, so the surrounding text is kept and the
reader sees where something was unreadable.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Characters that change how text *looks* without being seen: bidirectional
#: overrides and isolates (a filename can read backwards), zero-width characters,
#: the BOM, and C1 controls. Agent output carries them; every report, page and CSV
#: shows them as visible escapes instead.
INVISIBLE_RANGES = (
    (0x80, 0x9F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x2069),
    (0xFEFF, 0xFEFF),
)
#: :data:`INVISIBLE_RANGES` as the inside of a regular-expression character class.
INVISIBLE_CLASS = "".join(f"{chr(first)}-{chr(last)}" for first, last in INVISIBLE_RANGES)
_INVISIBLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f{INVISIBLE_CLASS}]")
#: First characters with which a spreadsheet cell becomes a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def scrub_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced (the same object when there is none)."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(REPLACEMENT, text)


def scrub_document(doc: Any) -> Any:
    """Scrub every string (keys too) of a decoded JSON document, in place where possible.

    Iterative, because the document may be nested as deeply as the JSON decoder
    allowed, which can be deeper than what is left of Python's recursion limit.
    """
    if isinstance(doc, str):
        return scrub_surrogates(doc)
    stack: list[Any] = [doc]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            for i, value in enumerate(current):
                if isinstance(value, str):
                    current[i] = scrub_surrogates(value)
                elif isinstance(value, list | dict):
                    stack.append(value)
        elif isinstance(current, dict):
            for key in [k for k in current if _SURROGATE.search(k)]:
                current[scrub_surrogates(key)] = current.pop(key)
            for key, value in current.items():
                if isinstance(value, str):
                    current[key] = scrub_surrogates(value)
                elif isinstance(value, list | dict):
                    stack.append(value)
    return doc


def visible_escape(char: str) -> str:
    """``\\u202e`` for U+202E: what an invisible character is shown as."""
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def show_invisible(text: str) -> str:
    """``text`` with control and invisible characters replaced by visible escapes.

    Tab and newline stay (they lay text out); everything in :data:`INVISIBLE_CLASS`
    and the other C0 controls become ``\\xNN`` / ``\\uNNNN``.
    """
    if text.isprintable():  # C speed; false for every character the pattern matches
        return text
    return _INVISIBLE.sub(lambda m: visible_escape(m.group()), text)


def csv_cell(value: object) -> object:
    """A value as a spreadsheet should see it: escapes shown, no formula started.

    Excel, LibreOffice and Google Sheets evaluate a cell that starts with ``=``,
    ``+``, ``-`` or ``@`` (and tab or CR) as a formula; an exception message from
    agent output must not become one. Such text gets a leading ``'``, which the
    spreadsheets take as "this is text". Numbers (``-0.5``) are left as they are.
    """
    if not isinstance(value, str):
        return value
    value = show_invisible(value)
    if value.startswith(_FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def csv_row(row: list[object]) -> list[object]:
    """Every cell of a CSV row through :func:`csv_cell`."""
    return [csv_cell(v) for v in row]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
