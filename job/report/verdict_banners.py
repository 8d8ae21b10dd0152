"""Put each AIDE run's verdict at the top of its journal page and its text report.

Journal pages and text reports are written by the parse stage, before any
verdict exists (the verdict needs the whole run folder and is decided in the
report stage, every night). So the report stage stamps them afterwards: a
banner right after the page's ``<main>`` (linking to the evidence line) and a
first line ``Run verdict: ...`` in the text report.

Cheap on a big drive: only the head of each file is read to see whether its
banner is already the current one; a file is rewritten (streamed to a temporary
sibling, then renamed, so readers never see half of it) only when its verdict
changed, which after the first night is rare.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from job.core.atomic import temp_sibling
from job.model.extras import journal_page_path
from job.model.verdict import MODE_LABELS
from job.report.collect import run_folder_of
from job.report.html import esc
from job.report.verdicts import RunVerdict

#: Bytes read from the start of a page to find ``<main>`` and any banner after it.
HEAD_BYTES = 64 * 1024
HTML_OPEN = b'<p class="verdict-banner"'
HTML_CLOSE = b"</p>"
TXT_PREFIX = b"Run verdict: "
_MAIN = b"<main>"
_STYLE = (
    "font-size:15px;border-radius:8px;padding:8px 12px;margin:6px 0 10px;"
    "background:#fdecea;border:1px solid #f5b7b1"
)


def html_banner(r: RunVerdict, page_rel: str) -> bytes:
    """The banner for a page at ``aide_journals/<page_rel>`` (escaped; links by relative path)."""
    v = r.verdict
    up = "../" * len(PurePosixPath(page_rel).parts)  # from the page's folder to ROOT
    style = (
        _STYLE if r.failed else _STYLE.replace("#fdecea", "#e9f7ef").replace("#f5b7b1", "#a9dfbf")
    )
    where = f"{v.evidence_file}, line {v.evidence_line}" if v.evidence_line else "the run's files"
    quote = f" · <code>{esc(v.evidence)}</code>" if v.evidence else ""
    text = (
        f'<p class="verdict-banner" id="verdict" style="{style}">Run verdict: '
        f"<b>{esc(MODE_LABELS.get(v.mode, v.mode))}</b>: {esc(v.cause)}<br>"
        f'<span class="small">evidence: <a href="{esc(up + r.evidence_href)}">{esc(where)}</a>'
        f"{quote}</span></p>"
    )
    return text.encode("utf-8")


def text_banner(r: RunVerdict) -> bytes:
    v = r.verdict
    where = f" (evidence: {v.evidence_file}:{v.evidence_line})" if v.evidence_line else ""
    line = f"{MODE_LABELS.get(v.mode, v.mode)}: {v.cause}{where}".replace("\n", " ")
    return TXT_PREFIX + line.encode("utf-8", errors="replace") + b"\n"


def stamp_all(
    aide_dir: Path,
    entries: Iterable[Mapping[str, Any]],
    verdicts: Iterable[RunVerdict],
    warn: Callable[[str], None],
) -> int:
    """Stamp every journal page and text report with its run's verdict; returns files rewritten."""
    by_folder = {v.record.run_folder: v for v in verdicts}
    rewritten = 0
    for entry in entries:
        report = entry.get("report")
        if (
            entry.get("error")
            or not isinstance(report, str)
            or not isinstance(entry.get("journal"), str)
        ):
            continue
        found = by_folder.get(run_folder_of(entry["journal"]))
        if found is None:
            continue
        page_rel = entry.get("html") if isinstance(entry.get("html"), str) else None
        page_rel = page_rel or journal_page_path(report)
        try:
            rewritten += stamp_html(aide_dir / page_rel, html_banner(found, page_rel))
            rewritten += stamp_text(aide_dir / report, text_banner(found))
        except OSError as exc:
            warn(f"{report}: cannot add the run's verdict ({exc.strerror or exc})")
    return rewritten


def stamp_html(path: Path, banner: bytes) -> bool:
    """Insert or replace the banner after ``<main>``; False when already current or no page."""
    head = _head(path)
    if head is None:
        return False
    at = head.find(_MAIN)
    if at < 0:
        return False
    start = at + len(_MAIN)
    end = start
    if head.startswith(HTML_OPEN, start):
        close = head.find(HTML_CLOSE, start)
        if close < 0:
            return False
        end = close + len(HTML_CLOSE)
        if head[start:end] == banner:
            return False
    _rewrite(path, head[:start] + banner, end)
    return True


def stamp_text(path: Path, banner: bytes) -> bool:
    """Make ``banner`` the report's first line; False when already current or no report."""
    head = _head(path)
    if head is None:
        return False
    end = 0
    if head.startswith(TXT_PREFIX):
        newline = head.find(b"\n")
        if newline < 0:
            return False
        end = newline + 1
        if head[:end] == banner:
            return False
    _rewrite(path, banner, end)
    return True


def _head(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except FileNotFoundError:
        return None


def _rewrite(path: Path, prefix: bytes, skip: int) -> None:
    """``prefix`` + the file from byte ``skip`` on, streamed into a sibling that replaces it."""
    tmp = temp_sibling(path)
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(prefix)
            src.seek(skip)
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
