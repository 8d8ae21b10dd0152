"""What one parsed journal becomes on the drive: its text report and its HTML page.

The parse stage decides *which* journals to (re)parse and runs them in worker
processes; what a parsed journal turns into is this module's business. The
stage receives :data:`JOURNAL_FILES` from the CLI (it never imports the report
layer), so the worker writes both files in the same pass, while the decoded
journal is still in memory, and re-reading tens of MB per journal is never needed.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.core.atomic import atomic_write_bytes
from job.core.atomic_stream import atomic_binary_file
from job.core.errors import ItemError
from job.model.journal import Journal
from job.model.layout import Layout
from job.report.journal_page import render_journal_page
from job.report.text import REPORT_FORMAT, write_report


def page_path(report: Path) -> Path:
    """The journal's HTML page lives beside its text report (same name, .html)."""
    return report.with_suffix(".html")


def page_header(layout: Layout) -> dict[str, Any]:
    """What the journal page shows above the tree, from the journal's path.

    ``index_href`` is the relative link from the page back to ``ROOT/index.html``:
    the page sits at ``ROOT/aide_journals/<run folder>/<experiment>.html``.
    """
    depth = len([p for p in layout.run_folder.split("/") if p]) + 1  # + aide_journals/
    return {
        "Run group": layout.run_group,
        "Agent": layout.agent,
        "Task": layout.task_id,
        "Run": layout.run_id,
        "Experiment": layout.experiment,
        "Journal": layout.journal,
        "index_href": "../" * depth + "index.html",
    }


@dataclass(frozen=True)
class JournalFiles:
    """The parse stage's renderer: a text report plus an HTML page per journal.

    Frozen and field-less, so it pickles as a reference to this class and costs
    nothing to send with every task to a worker process.
    """

    @property
    def version(self) -> int:
        """Bumped when the files' format changes, so every journal is rendered again."""
        return REPORT_FORMAT

    def outputs(self, report: Path) -> tuple[Path, ...]:
        """Every file :meth:`write` publishes for the report path ``report``."""
        return (report, page_path(report))

    def write(
        self,
        journal: Journal,
        layout: Layout,
        report: Path,
        details: Sequence[str | None],
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Publish both files atomically; a write failure is this journal's ItemError."""
        try:
            with atomic_binary_file(report) as out:
                write_report(out, journal, layout, should_stop=should_stop)
            atomic_write_bytes(
                page_path(report),
                render_journal_page(
                    journal,
                    header=page_header(layout),
                    report_name=report.name,
                    details=list(details),
                ),
                durable=False,
            )
        except OSError as exc:
            raise ItemError(_write_failure(exc)) from None


JOURNAL_FILES = JournalFiles()


def _write_failure(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "cannot write report: no space left on the output drive"
    if exc.errno == errno.EFBIG:
        return "cannot write report: file too large for the output drive"
    return f"cannot write report: {exc.strerror or exc} ({exc.filename})"
