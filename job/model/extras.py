"""What the index page needs from each journal, computed once when the journal is parsed.

The site is rebuilt on every run from ``index.json``; re-reading thousands of
journals (tens of MB each) for that would dominate the run. So the parse worker,
which has the :class:`~job.model.journal.Journal` in memory anyway, calls
:func:`index_extras` and stores the result in the journal's index entry.

Fields (all JSON-safe):

``failures``
    One ``{"step", "stage", "type", "message", "detail"}`` per step that raised,
    in step order. ``message`` is cut to :data:`MAX_MESSAGE` characters; ``detail``
    is :func:`job.model.taxonomy.failure_detail` (None when the type says all).
``valid_solution``
    True when some step is not buggy and has a metric value: the run produced at
    least one usable solution.
``steps_by_stage``
    ``{"draft": n, "debug": n, "improve": n}`` (plus ``"unknown"`` when present).
``html``
    The journal page's path relative to the output folder (only when ``report`` is
    given): ``<run folder>/<experiment>.html``, beside the text report.
``analysis_version``
    :data:`EXTRAS_VERSION`; entries without it predate this module.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Sequence
from typing import Any

from job.model.journal import Journal, Node
from job.model.taxonomy import step_details

EXTRAS_VERSION = 1
#: Longest exception message stored per failure (the index stays small; the page has all).
MAX_MESSAGE = 300
HTML_SUFFIX = ".html"
EXTRA_FIELDS = ("failures", "valid_solution", "steps_by_stage", "html", "analysis_version")


def index_extras(
    journal: Journal,
    *,
    report: str | None = None,
    details: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The per-journal fields the site reads from ``index.json`` (see module doc).

    ``report`` is the text report's path relative to the output folder
    (``Layout.report``); when given, ``html`` says where the journal page goes.
    ``details`` is :func:`~job.model.taxonomy.step_details` of the journal, when
    the caller has it already.
    """
    if details is None:
        details = step_details(journal)
    extras: dict[str, Any] = {
        "failures": [
            failure_record(n, details[n.index]) for n in journal.nodes if n.error is not None
        ],
        "valid_solution": has_valid_solution(journal),
        "steps_by_stage": dict(Counter(str(n.stage) for n in journal.nodes)),
        "analysis_version": EXTRAS_VERSION,
    }
    if report is not None:
        extras["html"] = journal_page_path(report)
    return extras


def failure_record(node: Node, detail: str | None) -> dict[str, Any]:
    """One step that raised, as the index and ``failures.csv`` carry it.

    ``detail`` is the step's :func:`~job.model.taxonomy.failure_detail`.
    """
    error = node.error
    assert error is not None
    message = error.message
    return {
        "step": node.step,
        "stage": str(node.stage),
        "type": error.type,
        "message": message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…",
        "detail": detail,
    }


def has_valid_solution(journal: Journal) -> bool:
    """AIDE produced a usable solution: a non-buggy step with a metric value."""
    return any(n.is_buggy is False and n.metric.value is not None for n in journal.nodes)


def journal_page_path(report: str) -> str:
    """``a/b/run/exp.txt`` -> ``a/b/run/exp.html`` (the page sits beside its report)."""
    root, _ext = posixpath.splitext(report)
    return root + HTML_SUFFIX
