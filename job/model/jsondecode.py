"""Decode a journal file's bytes: fast path with orjson, lenient fallback with the stdlib.

AIDE writes journals with the stdlib's ``json``, which happily emits things orjson
refuses: ``NaN``/``Infinity`` (a metric that came out as nan) and lone surrogate
escapes such as ``"\\ud800"`` (terminal output cut in the middle of a character).
Those files are valid to the program that wrote them, so they are decoded again
with the stdlib, and lone surrogates are replaced with U+FFFD so the text can be
written out. Only files neither decoder accepts are "not valid JSON".
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from job.core.errors import ItemError
from job.core.textsafe import scrub_document


def decode_json(data: bytes) -> Any:
    """The decoded document; raises :class:`ItemError` with a one-line reason."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # the stdlib decides; its error, if any, is the one reported
    try:
        doc = _stdlib_loads(data)
    except json.JSONDecodeError as exc:
        raise ItemError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise ItemError("not valid JSON: nested too deeply to read") from None
    return scrub_document(doc)


def _stdlib_loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        # Raw invalid UTF-8 (not escapes): keep the text, mark the bad bytes.
        return json.loads(data.decode("utf-8", errors="replace"))
