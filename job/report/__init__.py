"""Everything people read: text reports, journal pages, ``index.html`` and ``failures.csv``.

Reads the parse stage's ``index.json`` and the run groups under ``failed_runs/``;
writes ``ROOT/index.html``, ``ROOT/failures.csv`` and, handed to the parse stage as
its renderer (:data:`job.report.journal_files.JOURNAL_FILES`), each journal's
``.txt`` report and ``.html`` page. Entry point for the site:
:func:`job.report.site.build_site`. May use every layer below it.
"""
