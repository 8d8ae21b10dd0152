"""Property-based: random JSON documents in and around AIDE's journal shape.

Whatever the document, reading it either yields a Journal whose report renders, or
one ItemError with a one-line reason; never any other exception.
"""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from job.core.errors import ItemError
from job.model.journal import build_journal
from job.model.layout import derive_layout
from job.report.text import render_report
from tests.support import ledger

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    "code": st.one_of(st.text(), ANY_JSON),
    "plan": st.one_of(st.text(), ANY_JSON),
    "step": st.one_of(st.integers(-3, 50), ANY_JSON),
    "id": st.one_of(st.sampled_from(["a", "b", "c", "d"]), ANY_JSON),
    "ctime": st.one_of(st.floats(allow_nan=True), ANY_JSON),
    "_term_out": st.one_of(st.lists(st.text()), ANY_JSON),
    "exec_time": st.one_of(st.floats(allow_nan=True), ANY_JSON),
    "exc_type": st.one_of(st.sampled_from(["KeyError", "ValueError", None]), ANY_JSON),
    "exc_info": st.one_of(st.fixed_dictionaries({"args": st.lists(st.text())}), ANY_JSON),
    "exc_stack": st.one_of(
        st.lists(st.tuples(st.text(), st.integers(), st.text(), st.text()).map(list)), ANY_JSON
    ),
    "analysis": st.one_of(st.text(), ANY_JSON),
    "metric": st.one_of(
        st.fixed_dictionaries(
            {
                "value": st.one_of(st.none(), st.floats(allow_nan=True)),
                "maximize": st.one_of(st.none(), st.booleans()),
            }
        ),
        ANY_JSON,
    ),
    "is_buggy": st.one_of(st.booleans(), ANY_JSON),
}
NODE = st.fixed_dictionaries({}, optional=FIELDS)
JOURNAL_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "nodes": st.one_of(st.lists(NODE, max_size=6), ANY_JSON),
        "node2parent": st.one_of(
            st.dictionaries(
                st.sampled_from(["a", "b", "c", "d", "zz"]),
                st.sampled_from(["a", "b", "c", "d", "zz"]),
            ),
            ANY_JSON,
        ),
        "__version": st.one_of(st.just("2"), ANY_JSON),
    },
)
DOCUMENTS = st.one_of(JOURNAL_LIKE, ANY_JSON)
LAYOUT = derive_layout(
    "G_run-group_aide/G_run-group_aide/dom/task_00000000-0000-0000-0000-000000000000/logs/exp/journal.json"
)


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "400")), deadline=None)
@given(doc=DOCUMENTS)
def test_any_document_is_a_journal_or_one_clear_failure(doc):
    # Round-trip through JSON text, as the file on disk would be.
    doc = json.loads(json.dumps(doc))
    ledger.add("journal_documents_generated")
    try:
        journal = build_journal(doc)
    except ItemError as exc:
        ledger.add("journal_documents_rejected")
        reason = exc.reason
        assert reason
        assert "\n" not in reason
        return
    text = render_report(journal, LAYOUT)
    assert isinstance(text, str)
    text.encode("utf-8")  # always writable
    assert journal.step_count == len(journal.nodes)
