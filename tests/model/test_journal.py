"""Reading and normalising AIDE journals into the typed model (issue #3, points 3 and 6)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from job.core.errors import ItemError
from job.model.exc_message import SEARCH_CHARS, one_line, traceback_message
from job.model.journal import ExcFrame, Metric, Stage, build_journal, load_journal
from job.model.jsondecode import decode_json
from tests.journal_builders import expected_journals, extract_samples, failing, journal, node


def build(doc: dict[str, Any]):  # type: ignore[no-untyped-def]
    return build_journal(json.loads(json.dumps(doc)))


def load_bytes(tmp_path: Path, data: bytes):  # type: ignore[no-untyped-def]
    path = tmp_path / "journal.json"
    path.write_bytes(data)
    return load_journal(path)


# -- the real samples ---------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_samples(tmp_path_factory.mktemp("samples") / "failed_runs")


@pytest.mark.parametrize("expected", expected_journals(), ids=lambda e: e["exp"])
def test_sample_journals_match_expected_json(samples: Path, expected: dict[str, Any]) -> None:
    j = load_journal(samples / expected["rel"])
    assert j.step_count == expected["steps"]
    assert j.buggy_count == expected["buggy_steps"]
    assert dict(j.exception_counts) == expected["exc_types"]
    assert j.best_metric == expected["best_metric"]
    assert [n.id for n in j.nodes] == expected["node_ids"]
    assert [n.plan for n in j.nodes] == expected["plans"]
    assert j.version == "2"
    assert j.warnings == ()


def test_sample_stages_follow_node2parent(samples: Path) -> None:
    expected = next(e for e in expected_journals() if e["exp"] == "6-quiet-amber-heron")
    raw = json.loads((samples / expected["rel"]).read_text())
    j = load_journal(samples / expected["rel"])
    by_id = {n.id: n for n in j.nodes}
    for node_ in j.nodes:
        parent = raw["node2parent"].get(node_.id)
        assert node_.parent_id == parent
        if parent is None:
            assert node_.stage is Stage.DRAFT
        else:
            assert node_.stage is (Stage.DEBUG if by_id[parent].is_buggy else Stage.IMPROVE)
            assert node_.id in by_id[parent].children_ids
    assert {n.stage for n in j.nodes} == {Stage.DRAFT, Stage.DEBUG, Stage.IMPROVE}


# -- tree, stages, best node --------------------------------------------------------


def test_stage_parent_and_children_come_from_node2parent() -> None:
    j = build(
        journal(
            [
                failing(0, "KeyError", "'x'"),
                node(1, value=0.5),
                failing(2, "ValueError", "bad"),
                node(3, value=0.6),
                node(4, value=0.7),
            ],
            edges={2: 0, 3: 1, 4: 1},
        )
    )
    stages = [(n.step, n.stage, n.parent_step) for n in j.nodes]
    assert stages == [
        (0, Stage.DRAFT, None),
        (1, Stage.DRAFT, None),
        (2, Stage.DEBUG, 0),  # parent is buggy
        (3, Stage.IMPROVE, 1),  # parent is good
        (4, Stage.IMPROVE, 1),
    ]
    assert j.nodes[1].children_ids == (j.nodes[3].id, j.nodes[4].id)
    assert j.nodes[2].parent_id == j.nodes[0].id
    assert [n.step for n in j.drafts] == [0, 1]
    assert j.node_by_id(j.nodes[3].id or "") is j.nodes[3]


def test_node2parent_wins_over_a_nodes_own_parent_field() -> None:
    doc = journal([node(0), node(1), node(2)], edges={2: 0})
    doc["nodes"][2]["parent"] = doc["nodes"][1]["id"]  # disagrees with node2parent
    doc["nodes"][1]["parent"] = doc["nodes"][0]["id"]  # node2parent says nothing about 1
    j = build(doc)
    assert j.nodes[2].parent_step == 0
    assert j.nodes[1].parent_step == 0
    assert any("disagrees with node2parent" in w for w in j.warnings)


def test_parent_missing_from_the_journal_is_unknown_stage_with_warning() -> None:
    doc = journal([node(0), node(1)])
    doc["node2parent"] = {doc["nodes"][1]["id"]: "f" * 32}
    j = build(doc)
    assert j.nodes[1].stage is Stage.UNKNOWN
    assert j.nodes[1].parent_id == "f" * 32
    assert j.nodes[1].parent_step is None
    assert any("is not in the journal" in w for w in j.warnings)


def test_a_null_is_buggy_parent_makes_an_improve_step_as_in_aide() -> None:
    j = build(journal([node(0) | {"is_buggy": None}, node(1)], edges={1: 0}))
    assert j.nodes[0].is_buggy is None
    assert j.nodes[1].stage is Stage.IMPROVE  # AIDE: "debug" only if parent.is_buggy


@pytest.mark.parametrize(
    ("values", "maximize", "best_step"),
    [
        ([0.2, 0.9, 0.5], True, 1),
        ([0.2, 0.9, 0.5], False, 0),
        ([0.5, 0.5, 0.1], True, 0),  # ties: the first, as AIDE's max() picks
    ],
)
def test_best_node_respects_direction(values: list[float], maximize: bool, best_step: int) -> None:
    j = build(journal([node(i, value=v, maximize=maximize) for i, v in enumerate(values)]))
    assert j.best_node is not None
    assert j.best_node.step == best_step
    assert j.best_metric == values[best_step]
    assert j.best_node_id == j.nodes[best_step].id


def test_buggy_steps_never_count_as_best() -> None:
    j = build(journal([node(0, value=0.1), node(1, value=0.99, is_buggy=True)]))
    assert j.best_metric == 0.1


def test_no_good_step_means_no_best() -> None:
    j = build(journal([failing(0, "KeyError", "'x'"), failing(1, "KeyError", "'y'")]))
    assert j.best_node is None
    assert j.best_metric is None
    assert j.best_node_id is None


def test_unknown_or_conflicting_direction_gives_no_best_and_says_why() -> None:
    unknown = build(journal([node(0, value=0.1) | {"metric": {"value": 0.1, "maximize": None}}]))
    assert unknown.best_node is None
    assert any("say whether" in w for w in unknown.warnings)
    mixed = build(journal([node(0, value=0.1, maximize=True), node(1, value=0.2, maximize=False)]))
    assert mixed.best_node is None
    assert any("disagree" in w for w in mixed.warnings)


def test_nan_metric_is_kept_but_never_best(tmp_path: Path) -> None:
    doc = json.dumps(journal([node(0, value=0.3), node(1, value=0.4)]))
    doc = doc.replace('"value": 0.4', '"value": NaN')  # what json.dump writes for nan
    j = load_bytes(tmp_path, doc.encode())
    assert j.nodes[1].metric.value is not None
    assert math.isnan(j.nodes[1].metric.value)
    assert j.best_metric == 0.3


# -- per-step content ---------------------------------------------------------------


def test_fields_are_carried_over() -> None:
    raw = failing(
        3,
        "KeyError",
        "'label'",
        plan="the plan",
        code="the code",
        analysis="it broke",
        exec_time=1.25,
        ctime=1_756_141_745.5,
        exc_stack=[
            ["runfile.py", 5, "<module>", "y = df['label']"],
            ["pandas.py", 10, "get", None],
        ],
    )
    n = build(journal([raw])).nodes[0]
    assert (n.step, n.plan, n.code, n.analysis, n.exec_time) == (
        3,
        "the plan",
        "the code",
        "it broke",
        1.25,
    )
    assert n.term_out == "".join(raw["_term_out"])
    assert n.is_buggy is True
    assert n.created_at == datetime(2025, 8, 25, 17, 9, 5, 500000, tzinfo=UTC)
    assert n.metric == Metric(None, None)
    assert n.error is not None
    assert n.error.type == "KeyError"
    assert n.error.info == {"args": ["'label'"]}
    assert n.error.stack == (
        ExcFrame("runfile.py", 5, "<module>", "y = df['label']"),
        ExcFrame("pandas.py", 10, "get", None),
    )
    assert n.error.stack[0].location == "runfile.py:5 in <module>"


@pytest.mark.parametrize(
    ("exc_type", "term_out", "info", "message"),
    [
        (  # the traceback's last line is what the user saw (errno and file name included)
            "FileNotFoundError",
            [
                "Traceback...\n",
                "FileNotFoundError: [Errno 2] No such file: 'a.csv'\n",
                "Execution time: 1s",
            ],
            {"args": ["2", "No such file or directory"]},
            "[Errno 2] No such file: 'a.csv'",
        ),
        (  # qualified exception names in the traceback
            "ParserError",
            ["pandas.errors.ParserError: Error tokenizing data\n"],
            {"args": ["Error tokenizing data. C error"]},
            "Error tokenizing data",
        ),
        (  # AIDE's timeout: no args, the reason is the output's last line
            "TimeoutError",
            ["epoch 1\n", "TimeoutError: Execution exceeded the time limit of 2 seconds"],
            {"args": []},
            "Execution exceeded the time limit of 2 seconds",
        ),
        ("KeyError", ["no traceback here"], {"args": ["label"]}, "label"),
        ("OSError", None, {"args": ["2", "No such file"]}, "2, No such file"),
        ("ModuleNotFoundError", None, {"msg": "No module named 'x'"}, "No module named 'x'"),
        ("TimeoutError", None, {"args": []}, ""),
        ("ValueError", None, {"args": ["line one\nline two"]}, "line one line two"),
    ],
)
def test_error_message(
    exc_type: str, term_out: list[str] | None, info: dict[str, Any], message: str
) -> None:
    raw = node(0, exc_type=exc_type, exc_info=info, term_out=term_out)
    if term_out is None:
        raw["_term_out"] = None
    err = build(journal([raw])).nodes[0].error
    assert err is not None
    assert err.message == message


def _last_traceback_line(exc_type: str, term_out: str) -> str | None:
    """The definition: the last line of the tail matching the pattern, found by a full scan."""
    pattern = re.compile(rf"^(?:[\w.]+\.)?{re.escape(exc_type)}(?::(.*))?$", re.MULTILINE)
    matches = list(pattern.finditer(term_out[-SEARCH_CHARS:]))
    return one_line(matches[-1].group(1) or "") if matches else None


_OUTPUT_PIECES = st.sampled_from(
    [
        *("\n", "Error", "KeyError", "KeyError: 'x'", ": ", "pandas.errors.", "a.KeyError"),
        *(" ", "x", "print(KeyError)", " KeyError: 'y'"),
    ]
)


@example(exc_type="KeyError", pieces=["KeyError: 'x'", "\n", "print(KeyError)"])
@given(
    exc_type=st.sampled_from(["KeyError", "Error", "errors.Error", "K", "a.b"]),
    pieces=st.lists(st.one_of(_OUTPUT_PIECES, st.text(max_size=5)), max_size=30),
)
def test_traceback_message_equals_the_full_scan(exc_type: str, pieces: list[str]) -> None:
    # The backwards search must find exactly the line a forward scan of the tail finds.
    term_out = "".join(pieces)
    assert traceback_message(exc_type, term_out) == _last_traceback_line(exc_type, term_out)


def test_traceback_message_looks_only_at_the_tail() -> None:
    early = "KeyError: 'early'\n"
    assert traceback_message("KeyError", early + "x" * SEARCH_CHARS) is None
    assert traceback_message("KeyError", early + "x" * (SEARCH_CHARS - len(early))) == "'early'"


def test_missing_and_null_fields_are_fine() -> None:
    j = build({"nodes": [{"step": 0}, {}], "node2parent": None})
    a, b = j.nodes
    assert (a.step, b.step) == (0, 1)  # no step: its position
    for n in j.nodes:
        assert (n.id, n.plan, n.code, n.term_out, n.analysis) == (None, None, None, None, None)
        assert (n.error, n.is_buggy, n.exec_time, n.created_at) == (None, None, None, None)
        assert n.metric == Metric()
        assert n.stage is Stage.DRAFT
    assert j.version is None
    assert j.best_node is None


def test_journal_with_no_nodes() -> None:
    j = build({"nodes": [], "node2parent": {}, "__version": "2"})
    assert (j.step_count, j.buggy_count, dict(j.exception_counts), j.best_metric) == (
        0,
        0,
        {},
        None,
    )


def test_exception_counts_most_frequent_first() -> None:
    j = build(
        journal(
            [
                failing(0, "KeyError", "a"),
                failing(1, "TypeError", "b"),
                failing(2, "TypeError", "c"),
                node(3, is_buggy=True),  # buggy without an exception: not counted
            ]
        )
    )
    assert list(j.exception_counts.items()) == [("TypeError", 2), ("KeyError", 1)]
    assert j.buggy_count == 4


def test_bare_number_metric_and_version_and_duplicate_id_warnings() -> None:
    doc = journal([node(0) | {"metric": 0.5}, node(1, node_id="a" * 32), node(2, node_id="a" * 32)])
    doc["__version"] = "3"
    j = build(doc)
    assert j.nodes[0].metric == Metric(0.5, None)
    assert any("version '3'" in w for w in j.warnings)
    assert any("more than once" in w for w in j.warnings)


def test_building_releases_the_raw_nodes() -> None:
    """Why it matters: the model must not sit beside a second decoded copy of a big journal."""
    doc = json.loads(json.dumps(journal([node(0), node(1)])))
    raw_nodes = doc["nodes"]
    build_journal(doc)
    assert raw_nodes == [None, None]


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "journal is not a JSON object (found a list)"),
        ({"node2parent": {}}, "journal has no 'nodes' list"),
        ({"nodes": {"a": 1}}, "journal has no 'nodes' list"),
        ({"nodes": [1]}, "node 0 is not an object (found a number)"),
        ({"nodes": [{"step": "3"}]}, "node 0: 'step' should be a whole number, found text"),
        ({"nodes": [{"is_buggy": "yes"}]}, "node 0: 'is_buggy' should be true/false, found text"),
        ({"nodes": [{}, {"plan": 5}]}, "node 1: 'plan' should be text, found a number"),
        ({"nodes": [{"_term_out": ["a", 1]}]}, "node 0: '_term_out' should be a list of text"),
        ({"nodes": [{"exc_info": "boom"}]}, "node 0: 'exc_info' should be an object"),
        ({"nodes": [{"exc_stack": [["f", "x", "g", "s"]]}]}, "frame has a field of the wrong type"),
        ({"nodes": [{"exc_stack": "f:1"}]}, "'exc_stack' should be a list"),
        ({"nodes": [{"metric": "high"}]}, "'metric' should be an object"),
        ({"nodes": [{"metric": {"value": "0.5"}}]}, "metric 'value' should be a number"),
        ({"nodes": [{"ctime": True}]}, "'ctime' should be a number, found true/false"),
        ({"nodes": [], "node2parent": []}, "'node2parent' is not an object"),
        ({"nodes": [{"metric": {"value": 10**400}}]}, "node 0: metric 'value' is too large"),
        ({"nodes": [{"ctime": 10**400}]}, "node 0: 'ctime' is too large a number"),
    ],
)
def test_wrong_shape_is_one_line_reason(doc: Any, reason: str) -> None:
    with pytest.raises(ItemError) as info:
        build(doc)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"nodes": [', "not valid JSON: Expecting value at line 1, column 12"),
        (b"", "not valid JSON: Expecting value at line 1, column 1"),
        (b'{"nodes": []} trailing', "not valid JSON: Extra data at line 1, column 15"),
        (b'{"nodes": [{"plan": "a\n"}]}', "not valid JSON: Invalid control character"),
    ],
)
def test_invalid_json_is_one_line_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(ItemError) as info:
        load_bytes(tmp_path, data)
    assert info.value.reason.startswith(reason)
    assert "\n" not in info.value.reason


def test_unreadable_file_is_an_item_error(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match="cannot read journal"):
        load_journal(tmp_path / "missing.json")


# -- text that is not valid Unicode -------------------------------------------------


def test_lone_surrogate_escapes_become_replacement_characters(tmp_path: Path) -> None:
    # What stdlib json.dump writes for a string holding a lone surrogate.
    doc = json.dumps(
        journal([node(0, term_out=["half an emoji: \ud83d", "\n"], plan="p\udc00q")]),
    )
    assert "\\ud83d" in doc
    j = load_bytes(tmp_path, doc.encode())
    assert j.nodes[0].term_out == "half an emoji: \ufffd\n"
    assert j.nodes[0].plan == "p\ufffdq"


def test_valid_surrogate_pairs_are_kept(tmp_path: Path) -> None:
    j = load_bytes(tmp_path, json.dumps(journal([node(0, plan="ok \U0001f600")])).encode())
    assert j.nodes[0].plan == "ok \U0001f600"


def test_raw_invalid_utf8_bytes_become_replacement_characters(tmp_path: Path) -> None:
    data = json.dumps(journal([node(0, plan="caf__")]), ensure_ascii=False).encode()
    data = data.replace(b"caf__", b"caf\xe9!")  # latin-1 byte in a UTF-8 file
    j = load_bytes(tmp_path, data)
    assert j.nodes[0].plan == "caf\ufffd!"


def test_decoder_scrubs_keys_and_nested_values() -> None:
    doc = decode_json(b'{"k\\udc80": [{"deep": ["\\ud800"]}], "nodes": []}')
    assert doc == {"k\ufffd": [{"deep": ["\ufffd"]}], "nodes": []}
