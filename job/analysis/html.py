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
from typing import Any

import orjson


def esc(value: Any) -> str:
    """Text or attribute value, escaped (quotes included); None is empty."""
    if value is None:
        return ""
    return html.escape(str(value), quote=True)


def json_script(element_id: str, data: Any) -> str:
    """``<script type="application/json">`` holding ``data``, safe inside HTML.

    ``<``, ``>`` and ``&`` only occur inside JSON strings, where ``\\u003c`` etc.
    mean the same; escaping them means no content can close the element or
    open a comment.
    """
    # Replacing on the UTF-8 bytes is several times faster than on the decoded str
    # (memchr instead of wide-character scans); U+2028/9 are e2 80 a8/a9 in UTF-8.
    text = (
        orjson.dumps(data)
        .replace(b"<", b"\\u003c")
        .replace(b">", b"\\u003e")
        .replace(b"&", b"\\u0026")
        .replace(b"\xe2\x80\xa8", b"\\u2028")
        .replace(b"\xe2\x80\xa9", b"\\u2029")
        .decode("utf-8")
    )
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def script_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def page(*, title: str, css: str, body: str, script: str, lang: str = "en") -> str:
    """A complete self-contained document: inline CSS, inline script allowed by hash."""
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src {script_hash(script)}; base-uri 'none'; form-action 'none'"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{css}</style>\n</head>\n"
        f"<body>\n{body}\n<script>{script}</script>\n</body>\n</html>\n"
    )


def fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


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
