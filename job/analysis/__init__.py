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

from job.analysis.extras import index_extras, journal_page_path, page_header
from job.analysis.journal_page import render_journal_page
from job.analysis.site import SiteSummary, build_site
from job.analysis.taxonomy import LogError, failure_detail, last_error

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
