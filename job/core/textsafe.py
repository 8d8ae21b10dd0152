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
