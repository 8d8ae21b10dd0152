"""Why the agents fail, browsable: the index page, journal pages and failures.csv.

Entry points (the rest of the package is their implementation):

* :func:`index_extras` — per-journal fields for ``index.json``, called by the
  parse worker with the journal it has in memory.
* :func:`render_journal_page` — one journal as a self-contained HTML page,
  written by the parse worker beside the text report (see :func:`journal_page_path`
  and :func:`page_header`).
* :func:`build_site` — ``ROOT/index.html`` and ``ROOT/failures.csv``, at the end
  of every run and from ``analyze-failures report``.
* :func:`failure_detail` / :func:`last_error` — the taxonomy's building blocks.
"""

from __future__ import annotations

from typing import Any

# Imported lazily (PEP 562): job.index imports job.analysis.extras while job.analysis.site
# imports job.index, so eager imports here would make a cycle.
_WHERE = {
    "index_extras": "extras",
    "journal_page_path": "extras",
    "page_header": "extras",
    "render_journal_page": "journal_page",
    "SiteSummary": "site",
    "build_site": "site",
    "LogError": "taxonomy",
    "failure_detail": "taxonomy",
    "last_error": "taxonomy",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"job.analysis.{_WHERE[name]}"), name)


__all__ = [
    "LogError",
    "SiteSummary",
    "build_site",
    "failure_detail",
    "index_extras",
    "journal_page_path",
    "last_error",
    "page_header",
    "render_journal_page",
]
