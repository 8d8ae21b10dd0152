"""HTML building blocks shared by the index page and the journal pages.

Every string that comes from a journal, a log or a path goes through :func:`esc`
(text and attribute values) or :func:`json_script` (data for the page's script),
so a plan containing ``</script><script>...`` is shown as text, never run.

As a second line of defence each page carries a Content-Security-Policy that
only allows the page's own script, identified by its SHA-256: even if some
markup slipped through unescaped, an injected ``<script>`` would not execute.
Nothing is loaded from anywhere (no CDN, no fonts), so pages open from a file
share or an e-mail attachment exactly as they were written.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import Any
from urllib.parse import quote

import orjson

from job.core.textsafe import INVISIBLE_RANGES, show_invisible, visible_escape


def esc(value: Any) -> str:
    """Text or attribute value, escaped (quotes included); None is empty."""
    if value is None:
        return ""
    return html.escape(show_invisible(str(value)), quote=True)


def _utf8_alternatives(ranges: tuple[tuple[int, int], ...]) -> bytes:
    """A bytes pattern for the UTF-8 encodings of every code point in ``ranges``.

    Derived from :data:`job.core.textsafe.INVISIBLE_RANGES`, so the page scan
    can never drift from what the text reports escape. Each alternative is a
    literal prefix and a class of last bytes (``\xc2[\x80-\x9f]``), so every
    branch starts with a literal byte, which lets ``re`` skip ahead to candidate
    bytes instead of trying every branch at every position.
    """
    last_bytes: dict[bytes, list[int]] = {}
    for first, last in ranges:
        for code in range(first, last + 1):
            encoded = chr(code).encode("utf-8")
            last_bytes.setdefault(encoded[:-1], []).append(encoded[-1])
    return b"|".join(
        re.escape(prefix) + b"[" + b"".join(re.escape(bytes([end])) for end in ends) + b"]"
        for prefix, ends in last_bytes.items()
    )


#: What :func:`job.core.textsafe.show_invisible` escapes, as it appears in orjson's
#: output: non-ASCII characters raw in UTF-8, C0 controls as ``\u00XX`` escapes
#: (shown as the text ``\u00XX`` once decoded, i.e. visibly), DEL raw. 300 MB/s;
#: journal pages run it over every byte of their journal (with a look-behind
#: first in the last branch it ran at 70 MB/s and was half of the parse's CPU).
_INVISIBLE_UTF8 = re.compile(
    _utf8_alternatives(INVISIBLE_RANGES)
    + rb"|\x7f"
    # A run of backslashes of odd length ends in an escape (\\\u001b is a backslash,
    # then ESC); the look-behind makes the match start where the run does.
    + rb"|\\(?<!\\\\)(?:\\\\)*u00(?:0[0-8be]|1[0-9a-f])"
)


def _may_hide(body: bytes) -> bool:
    """False when ``body`` cannot hold what :data:`_INVISIBLE_UTF8` finds (C-speed checks)."""
    return not body.isascii() or b"\x7f" in body or b"\\u00" in body


def _escaped(match: re.Match[bytes]) -> bytes:
    # A JSON-escaped backslash, so JSON.parse yields the visible text \u202e.
    found = match.group()
    if found.startswith(b"\\"):  # orjson's own \u001b (after escaped backslashes, if any)
        return found[:-6] + b"\\" + found[-6:]
    return visible_escape(found.decode("utf-8")).replace("\\", "\\\\").encode()


def sibling_href(name: str) -> str:
    """A link to the file ``name`` in the page's own folder, whatever the name holds.

    An experiment called ``javascript:alert(1)`` made the text report's link a
    script URL (only the CSP stopped it): the name is percent-encoded (``:``
    included) and starts with ``./``, so it is always a relative path.
    """
    return "./" + quote(name, safe="")


def json_script(element_id: str, data: Any) -> str:
    """:func:`json_script_bytes` as text, for pages assembled as str."""
    return json_script_bytes(element_id, data).decode("utf-8")


def json_script_bytes(element_id: str, data: Any) -> bytes:
    """``<script type="application/json">`` holding ``data``, safe inside HTML.

    Inside a script element only ``<`` can begin what HTML would act on
    (``</script``, ``<!--``, ``<script``), and in JSON it only occurs inside
    strings, where ``\\u003c`` means the same to ``JSON.parse``. So one pass over
    the UTF-8 bytes (memchr speed) makes any content inert; ``&`` and ``>`` mean
    nothing in script data and are left alone. The journal pages embed every
    step's code and output, so this pass runs over as many bytes as the journal.
    """
    body = orjson.dumps(data).replace(b"<", b"\\u003c")
    if _may_hide(body) and _INVISIBLE_UTF8.search(body) is not None:  # rare: bidi overrides...
        body = _INVISIBLE_UTF8.sub(_escaped, body)
    return (
        b'<script type="application/json" id="'
        + esc(element_id).encode()
        + b'">'
        + body
        + b"</script>"
    )


def script_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def page(*, title: str, css: str, body: str, script: str, lang: str = "en") -> str:
    """A complete self-contained document: inline CSS, inline script allowed by hash."""
    return page_bytes(
        title=title, css=css, body=[body.encode("utf-8")], script=script, lang=lang
    ).decode("utf-8")


def page_bytes(*, title: str, css: str, body: list[bytes], script: str, lang: str = "en") -> bytes:
    """:func:`page` for a body already in UTF-8 pieces (no decode/encode of megabytes)."""
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src {script_hash(script)}; base-uri 'none'; form-action 'none'"
    )
    head = (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
    )
    tail = f"\n<script>{script}</script>\n</body>\n</html>\n"
    return b"".join([head.encode("utf-8"), *body, tail.encode("utf-8")])


def fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 step``, ``2 steps``, ``1,000 runs``: counts on the pages read as English."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def fmt_pct(part: int, whole: int) -> str:
    if not whole:
        return "–"
    share = 100.0 * part / whole
    return f"{share:.0f}%" if share >= 10 or share == 0 else f"{share:.1f}%"


def fmt_metric(value: float | None) -> str:
    if value is None:
        return "–"
    if value != value:  # nan
        return "nan"
    return f"{value:.4g}"
