"""job.report: the index page, failures.csv and the journal pages, checked from the outside.

Why these checks: the page is how the team decides what to fix, so its numbers
must be the index's numbers (not a second opinion), every failure must reach
the CSV exactly once, runs of other agents must not silently drop out, links
must lead somewhere, and nothing from a journal may ever run as script. The
data comes from a real parse of the real samples plus generated run groups of
every agent (see ``tests/browser/sites.py``); expectations are recomputed
independently from the journals with ``load_journal``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from job.core.atomic import iter_temporaries
from job.model.extras import MAX_MESSAGE, index_extras, journal_page_path
from job.model.journal import build_journal, load_journal
from job.model.layout import derive_layout
from job.report import site as site_module
from job.report.collect import (
    NO_ERROR_FOUND,
    NO_EXCEPTION,
    FailureRow,
    main_cause,
    time_buckets,
)
from job.report.html import script_hash
from job.report.journal_files import page_header
from job.report.journal_page import CHUNK, render_journal_page
from job.report.site import CSV_COLUMNS, build_site, failures_csv
from job.report.tree import layout
from tests.browser.sites import (
    EVIL_GROUP,
    HANDMADE_FAILED,
    HANDMADE_GROUP,
    HANDMADE_OK,
    PAYLOAD,
    SAMPLES,
    build_root,
    journal_doc,
    node,
    parse,
    write,
)

NOW = datetime(2025, 9, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parsed output folder nobody modifies (copy it to change anything)."""
    return build_root(tmp_path_factory.mktemp("site") / "root")


@pytest.fixture(scope="module")
def built(pristine: Path) -> tuple[Path, site_module.SiteSummary]:
    return pristine, build_site(pristine, now=NOW)


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "root"
    shutil.copytree(pristine, dest, symlinks=True)
    for leftover in ("index.html", "failures.csv"):
        (dest / leftover).unlink(missing_ok=True)
    for page in (dest / "aide_journals").rglob("*.html"):
        page.unlink()
    # An index from before the analysis fields existed (the parse stage now adds them).
    index = dest / "aide_journals" / "index.json"
    doc = json.loads(index.read_text())
    for entry in doc["journals"]:
        for name in ("failures", "valid_solution", "steps_by_stage", "html", "analysis_version"):
            entry.pop(name, None)
    index.write_text(json.dumps(doc))
    return dest


def entries(root: Path) -> list[dict[str, Any]]:
    return json.loads((root / "aide_journals" / "index.json").read_text())["journals"]


def journals(root: Path) -> dict[str, Any]:
    return {
        e["journal"]: load_journal(root / "failed_runs" / e["journal"])
        for e in entries(root)
        if not e["error"]
    }


def csv_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "failures.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def json_block(html: str, element_id: str) -> Any:
    found = re.search(
        rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S
    )
    assert found, f"no JSON block {element_id}"
    return json.loads(found.group(1))


def table(root: Path) -> list[dict[str, Any]]:
    data = json_block((root / "index.html").read_text(), "runs-data")
    keys = [c["key"] for c in data["cols"]]
    return [dict(zip(keys, row, strict=True)) for row in data["rows"]]


# --- totals -------------------------------------------------------------------------------


def test_totals_equal_the_index(built: tuple[Path, Any]) -> None:
    root, summary = built
    ok = [e for e in entries(root) if not e["error"]]
    assert summary.journals == len(ok) > 10
    assert summary.steps == sum(e["steps"] for e in ok)
    assert summary.buggy_steps == sum(e["buggy_steps"] for e in ok)
    assert summary.unreadable_journals == 0
    groups = {p.parent.name for p in (root / "failed_runs").rglob("metadata.json")}
    assert summary.run_groups == len(groups) == 12  # 4 samples + 6 generated + 2 hand-made


def test_cards_show_the_totals(built: tuple[Path, Any]) -> None:
    root, summary = built
    html = (root / "index.html").read_text()
    found = re.findall(r'data-total="\d+"><b>([^<]*)</b><span>([^<]*)</span>', html)
    cards = {label: value for value, label in reversed(found)}  # the all-agents copy comes first
    assert cards["run groups"] == f"{summary.run_groups:,}"
    assert cards["steps in the journals"] == f"{summary.steps:,}"
    assert cards["AIDE journals"] == f"{summary.journals:,}"
    share = 100 * summary.buggy_steps / summary.steps
    assert cards[f"of steps buggy ({summary.buggy_steps:,})"] == f"{share:.0f}%"
    assert cards["AIDE runs found ≥ 1 valid solution"] == (
        f"{summary.runs_with_valid_solution} of {summary.journals}"
    )


def test_valid_solutions_are_counted_from_the_journals(built: tuple[Path, Any]) -> None:
    root, summary = built
    valid = {
        rel: any(n.is_buggy is False and n.metric.value is not None for n in j.nodes)
        for rel, j in journals(root).items()
    }
    assert summary.runs_with_valid_solution == sum(valid.values())
    assert 0 < summary.runs_with_valid_solution < len(valid)
    expected = json.loads((SAMPLES / "expected.json").read_text())
    for archive in expected["archives"].values():
        for j in archive["journals"]:
            rel = next(r for r in valid if r.endswith(j["path"]))
            assert valid[rel] == (j["best_metric"] is not None)


# --- failures.csv ---------------------------------------------------------------------------


def test_csv_has_one_row_per_step_that_raised(built: tuple[Path, Any]) -> None:
    root, summary = built
    rows = csv_rows(root)
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    got = Counter((r["run"], r["experiment"]) for r in rows if r["source"] == "journal")
    want = Counter()
    for rel, j in journals(root).items():
        layout_ = derive_layout(rel)
        want[(layout_.run_id, layout_.experiment)] = sum(1 for n in j.nodes if n.error)
    assert got == +want
    assert summary.failures == len(rows)


def test_csv_matches_the_samples_ground_truth(built: tuple[Path, Any]) -> None:
    root, _ = built
    rows = csv_rows(root)
    expected = json.loads((SAMPLES / "expected.json").read_text())
    for archive in expected["archives"].values():
        for j in archive["journals"]:
            mine = [
                r for r in rows if r["experiment"] == j["exp"] and j["run_id"].endswith(r["run"])
            ]
            assert Counter(r["exception_type"] for r in mine) == Counter(j["exc_types"])
            assert all(
                r["run_group"] == archive["run_group"] and r["agent"] == "aide" for r in mine
            )


def test_csv_row_of_a_run_without_journal(built: tuple[Path, Any]) -> None:
    root, _ = built
    mine = [r for r in csv_rows(root) if r["run_group"] == HANDMADE_GROUP]
    assert mine == [
        {
            "run_group": HANDMADE_GROUP,
            "started_utc": "2025-09-01T10:00:00Z",
            "agent": "biomni",
            "task": "manual/handmade-task",
            "run": HANDMADE_FAILED.split("/")[1],
            "experiment": "",
            "step": "",
            "stage": "",
            "exception_type": "ModuleNotFoundError",
            "message": "No module named 'handmade_pkg'",
            "detail": "missing module: handmade_pkg",
            "cause": "missing module",
            "source": "log",
        }
    ]  # the successful run and the "../../../etc" key are not there


def test_csv_defuses_spreadsheet_formulas() -> None:
    row = FailureRow(
        None,
        None,
        "aide",
        "t",
        "r",
        "e",
        1,
        "draft",
        "ValueError",
        "=HYPERLINK(1)",
        None,
        "journal",
        "k",
    )
    out = list(csv.reader(io.StringIO(failures_csv([row]))))
    assert out[1][CSV_COLUMNS.index("message")] == "'=HYPERLINK(1)"


@pytest.mark.parametrize(
    ("type_", "message", "detail", "cause", "label"),
    [
        (
            "ModuleNotFoundError",
            "m",
            "missing module: xgb",
            "missing module",
            "missing module: xgb",
        ),
        ("KeyError", "'x'", None, "KeyError", "KeyError"),
        ("KeyError", "'x'", ": odd", "KeyError", ": odd"),  # a detail without a category
        (None, "ERROR: out of memory", None, NO_EXCEPTION, NO_EXCEPTION),
        (None, "", None, NO_ERROR_FOUND, NO_ERROR_FOUND),
    ],
)
def test_a_failure_is_counted_by_its_category_then_type_then_what_is_missing(
    type_: str | None, message: str, detail: str | None, cause: str, label: str
) -> None:
    row = FailureRow(
        None, None, "aide", "t", "r", "e", 1, "draft", type_, message, detail, "j", "k"
    )
    assert (row.cause, row.label) == (cause, label)


def test_csv_stamps_each_failure_with_its_own_run_group_start() -> None:
    first, second = (
        datetime(2025, 8, 26, 8, 41, 52, tzinfo=UTC),
        datetime(2025, 8, 27, 1, 2, 3, tzinfo=UTC),
    )
    rows = [
        FailureRow("g1", first, "aide", "t", "r", "e", 1, "draft", "E", "m", None, "j", "k1"),
        FailureRow("g2", second, "aide", "t", "r", "e", 1, "draft", "E", "m", None, "j", "k2"),
        FailureRow("g1", first, "aide", "t", "r", "e", 2, "debug", "E", "m", None, "j", "k1"),
        FailureRow("g3", None, "biomni", "t", "r", None, None, None, "E", "m", None, "log", "k3"),
    ]
    out = list(csv.reader(io.StringIO(failures_csv(rows))))
    column = CSV_COLUMNS.index("started_utc")
    assert [line[column] for line in out[1:]] == [
        "2025-08-26T08:41:52Z",
        "2025-08-27T01:02:03Z",
        "2025-08-26T08:41:52Z",
        "",
    ]


# --- the table and the taxonomy ---------------------------------------------------------------


def test_every_run_is_a_row_and_non_aide_runs_appear(built: tuple[Path, Any]) -> None:
    root, summary = built
    rows = table(root)
    assert len(rows) == summary.journals + summary.runs_without_journal
    agents = Counter(r["agent"] for r in rows if r["steps"] is None)
    assert {"biomni", "stella", "mlagentbench"} <= set(agents)
    handmade = [r for r in rows if r["group"] == HANDMADE_GROUP]
    assert len(handmade) == 1
    assert handmade[0]["cause"] == "missing module: handmade_pkg"
    assert handmade[0]["result"] == "failed"
    assert HANDMADE_OK.split("/")[1][:8] not in {r["run"] for r in rows}


def test_non_aide_failures_reach_the_taxonomy(built: tuple[Path, Any]) -> None:
    root, _ = built
    html = (root / "index.html").read_text()
    # One count per run, in its own chart: not ranked together with AIDE's step errors.
    finals = re.search(r'<h2 id="final-errors">(.*?)</svg>', html, re.S)
    assert finals
    assert "missing module" in finals.group(1)
    steps = re.search(r"<h3>Missing modules</h3>(.*?)</svg>", html, re.S)
    assert steps
    assert "handmade_pkg" not in steps.group(1)
    rows = [r for r in csv_rows(root) if r["source"] == "log"]
    assert any(r["detail"] and r["exception_type"] for r in rows)


def test_causes_are_biggest_first(built: tuple[Path, Any]) -> None:
    root, _ = built
    html = (root / "index.html").read_text()
    chart = re.search(r'<h3 id="causes">.*?(<svg.*?</svg>)', html, re.S)
    assert chart
    values = [int(v.replace(",", "")) for v in re.findall(r'class="val">([\d,]+)', chart.group(1))]
    assert values == sorted(values, reverse=True)
    steps = [r for r in csv_rows(root) if r["source"] == "journal"]
    top = Counter(r["cause"] for r in steps).most_common(1)[0]
    assert re.search(rf'class="lbl">{re.escape(top[0])}</text>', chart.group(1))


def test_links_lead_to_files(built: tuple[Path, Any]) -> None:
    root, _ = built
    for row in table(root):
        for key in ("href", "txt"):
            if row[key]:
                assert (root / unquote(row[key])).is_file(), row[key]
        if row["steps"] is not None:
            assert row["href"].endswith(".html")


def test_journal_pages_link_back_to_the_index(built: tuple[Path, Any]) -> None:
    root, _ = built
    for entry in entries(root)[:5]:
        page = root / "aide_journals" / journal_page_path(entry["report"])
        back = re.search(r'<a href="([^"]*)">← All runs</a>', page.read_text())
        assert back
        assert (page.parent / back.group(1)).resolve() == (root / "index.html").resolve()


# --- escaping ----------------------------------------------------------------------------------


def own_scripts(html: str) -> int:
    return len(re.findall(r"<script[ >]", html))


def test_journal_text_never_becomes_markup(built: tuple[Path, Any]) -> None:
    root, _ = built
    index = (root / "index.html").read_text()
    [evil] = [e for e in entries(root) if e["run_group"] == EVIL_GROUP]
    page = (root / "aide_journals" / journal_page_path(evil["report"])).read_text()
    for html in (index, page):
        assert "<img" not in html
        assert "<b>task" not in html
        assert PAYLOAD not in html
    assert own_scripts(index) == 2  # the table's data and the page's script
    assert own_scripts(page) == 3  # steps meta, one body chunk, the script
    body = json_block(page, "body-0")
    assert body[0]["p"] == PAYLOAD  # the text itself survives, as data


def test_csp_allows_exactly_the_page_script(built: tuple[Path, Any]) -> None:
    root, _ = built
    html = (root / "index.html").read_text()
    script = re.search(r"<script>(.*?)</script>", html, re.S)
    assert script
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp
    assert f"script-src {script_hash(script.group(1))}".replace("'", "&#x27;") in csp.group(1)


# --- index extras and old index files -----------------------------------------------------------


def test_index_extras(built: tuple[Path, Any]) -> None:
    root, _ = built
    rel, journal = next((r, j) for r, j in journals(root).items() if j.best_index is not None)
    report = derive_layout(rel).report
    extras = index_extras(journal, report=report)
    raised = [n for n in journal.nodes if n.error]
    assert [f["step"] for f in extras["failures"]] == [n.step for n in raised]
    assert all(set(f) == {"step", "stage", "type", "message", "detail"} for f in extras["failures"])
    assert extras["valid_solution"] is True
    assert sum(extras["steps_by_stage"].values()) == journal.step_count
    assert extras["html"] == report.removesuffix(".txt") + ".html"
    assert extras["analysis_version"] == 1
    json.dumps(extras)  # JSON-safe


def test_long_messages_are_cut_in_the_index() -> None:
    doc = journal_doc(
        [node(0, "a", exc_type="ValueError", exc_info={"args": ["x" * 5000]}, is_buggy=True)], {}
    )
    [failure] = index_extras(build_journal(doc))["failures"]
    assert len(failure["message"]) == MAX_MESSAGE
    assert failure["message"].endswith("…")


def test_extras_in_the_index_mean_no_journal_is_read(
    copy: Path, built: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the lead's wiring will produce: the site is built from the index alone."""
    doc = json.loads((copy / "aide_journals" / "index.json").read_text())
    for e in doc["journals"]:
        if not e["error"]:
            journal = load_journal(copy / "failed_runs" / e["journal"])
            e.update(index_extras(journal, report=e["report"]))
    (copy / "aide_journals" / "index.json").write_text(json.dumps(doc))

    def forbidden(path: Path) -> None:
        raise AssertionError(f"journal read: {path}")

    monkeypatch.setattr(site_module, "load_journal", forbidden)
    summary = build_site(copy, now=NOW)
    assert summary.entries_backfilled == 0
    assert (copy / "failures.csv").read_text() == (built[0] / "failures.csv").read_text()


def test_old_entries_are_completed_and_get_their_page(copy: Path) -> None:
    summary = build_site(copy, now=NOW)
    ok = [e for e in entries(copy) if not e["error"]]
    assert summary.entries_backfilled == summary.pages_written == len(ok)
    assert all((copy / "aide_journals" / journal_page_path(e["report"])).is_file() for e in ok)


def test_backfill_classifies_each_failing_step_once(
    copy: Path, classify_calls: list[str | None]
) -> None:
    """An old entry's extras and its new page share one classification per failing step."""
    summary = build_site(copy, now=NOW)
    ok = [e for e in entries(copy) if not e["error"]]
    assert summary.entries_backfilled == summary.pages_written == len(ok)
    rows = csv_rows(copy)
    assert summary.failures == len(rows) > 0
    # Runs whose logs hold no error (a run that hit its time limit) have nothing to classify.
    assert len(classify_calls) == sum(1 for r in rows if r["exception_type"] or r["message"])


def test_null_or_outdated_analysis_fields_are_recomputed(copy: Path) -> None:
    """Once IndexEntry has the fields, old entries carry them as null; they count as missing."""
    doc = json.loads((copy / "aide_journals" / "index.json").read_text())
    ok = [e for e in doc["journals"] if not e["error"]]
    for i, e in enumerate(ok):
        if i % 2:
            e |= {"failures": None, "valid_solution": None, "html": None, "analysis_version": None}
        else:
            e |= {"failures": [], "valid_solution": False, "analysis_version": 0}
    (copy / "aide_journals" / "index.json").write_text(json.dumps(doc))
    summary = build_site(copy, now=NOW)
    assert summary.entries_backfilled == len(ok)
    assert summary.failures == len(csv_rows(copy)) > 0


def test_missing_journal_of_an_old_entry_is_a_warning(copy: Path) -> None:
    victim = entries(copy)[0]
    (copy / "failed_runs" / victim["journal"]).unlink()
    summary = build_site(copy, now=NOW)
    assert any(victim["journal"] in w for w in summary.warnings)
    assert summary.journals == len(entries(copy))  # still listed, from the index
    assert "1 problem while building this page" in (copy / "index.html").read_text()


def test_unreadable_journal_is_listed(copy: Path) -> None:
    run = (
        copy
        / "failed_runs"
        / EVIL_GROUP
        / EVIL_GROUP
        / "manual"
        / f"broken_{'9' * 8}-9999-9999-9999-{'9' * 12}"
    )
    write(run / "logs" / "exp" / "journal.json", "{not json")
    parse(copy)
    summary = build_site(copy, now=NOW)
    assert summary.unreadable_journals == 1
    [row] = [r for r in table(copy) if r["task"] == "manual/broken"]
    assert row["cause"].startswith("(journal unreadable): not valid JSON")
    assert row["href"] is None


def test_run_group_without_metadata(copy: Path) -> None:
    group = copy / "failed_runs" / "2025-09-03T00-00-00-GMT_run-group_stella"
    write(
        group / "polarishub" / f"p1_{'a' * 8}-aaaa-aaaa-aaaa-{'a' * 12}" / "run.log",
        "[Worker 0] start\nERROR: Agent stella timed out after 4h; container killed\n",
    )
    summary = build_site(copy, now=NOW)
    assert any("no metadata.json" in w for w in summary.warnings)
    [row] = [r for r in table(copy) if r["group"] == group.name]
    assert (row["agent"], row["task"], row["cause"], row["result"]) == (
        "stella",
        "polarishub/p1",
        "timeout",
        "",
    )


def test_shard_index_files_are_read(copy: Path, built: tuple[Path, Any]) -> None:
    index = copy / "aide_journals" / "index.json"
    doc = json.loads(index.read_text())
    half = len(doc["journals"]) // 2
    for i, part in enumerate((doc["journals"][:half], doc["journals"][half:])):
        shard = dict(doc, journals=part, shard={"index": i, "count": 2})
        (copy / "aide_journals" / f"index.shard-{i}-of-2.json").write_text(json.dumps(shard))
    index.unlink()
    summary = build_site(copy, now=NOW)
    assert (summary.journals, summary.steps) == (built[1].journals, built[1].steps)


def test_outputs_are_replaced_whole(copy: Path) -> None:
    first = build_site(copy, now=NOW)
    (copy / "index.html").write_text("stale")
    second = build_site(copy, now=NOW + timedelta(hours=1))
    assert first.failures == second.failures
    assert "Why do the agents fail?" in (copy / "index.html").read_text()
    assert list(iter_temporaries(copy)) == []


def test_empty_root(tmp_path: Path) -> None:
    summary = build_site(tmp_path, now=NOW)
    assert (summary.runs, summary.journals, summary.failures) == (0, 0, 0)
    assert (tmp_path / "failures.csv").read_text() == ",".join(CSV_COLUMNS) + "\n"
    assert "No runs found under failed_runs/." in (tmp_path / "index.html").read_text()


# --- journal pages -------------------------------------------------------------------------------


def big_journal(steps: int) -> Any:
    """A wide, deep AIDE-shaped tree: 5 drafts, then chains with branches, 1 in 3 buggy."""
    nodes, parents = [], {}
    for i in range(steps):
        buggy = i % 3 == 1
        fields: dict[str, Any] = {
            "code": f"# step {i}\n" + "x = 1\n" * 40,
            "_term_out": [f"out {i}\n" * 20],
        }
        if buggy:
            fields |= {
                "exc_type": "KeyError",
                "exc_info": {"args": [f"col{i % 7}"]},
                "metric": {"value": None, "maximize": None},
                "is_buggy": True,
            }
        nodes.append(node(i, f"n{i}", **fields))
        if i >= 5:
            parents[f"n{i}"] = f"n{(i - 5) // 2 + (i % 2) * 2}"
    return build_journal(journal_doc(nodes, parents))


def test_a_5000_step_page_renders_lazily() -> None:
    journal = big_journal(5000)
    html = render_journal_page(journal, header={"Task": "t"}, report_name="r.txt").decode()
    assert "<circle" not in html  # tree nodes are drawn by the script, in view only
    assert '<details class="step' not in html  # so are step summaries, a chunk at a time
    chunks = 5000 // CHUNK
    assert f'id="body-{chunks - 1}"' in html
    assert f'id="body-{chunks}"' not in html
    last_code = journal.nodes[-1].code
    assert html.index("# step 4999") > html.index(f'id="body-{chunks - 1}"')
    assert last_code is not None
    meta = json_block(html, "steps-meta")
    assert len(meta["steps"]) == 5000
    assert meta["chunk"] == CHUNK
    raw = sum(len(n.code or "") + len(n.term_out or "") + len(n.plan or "") for n in journal.nodes)
    assert len(html) < 2 * raw + 2_000_000  # proportional to the journal


def test_page_meta_matches_the_journal() -> None:
    journal = big_journal(60)
    meta = json_block(
        render_journal_page(journal, header={}, report_name="r.txt").decode(), "steps-meta"
    )["steps"]
    classes = Counter(m["c"] for m in meta)
    assert classes["best"] == 1
    assert meta[journal.best_index]["c"] == "best"
    assert classes["buggy"] == journal.buggy_count
    for n in journal.nodes:
        if n.parent_step is not None:
            assert meta[n.index]["ps"] == n.parent_step
        assert ("e" in meta[n.index]) == (n.error is not None)
    assert meta[1]["d"] == "missing key: 'col1'"


def test_tree_layout_places_parents_over_children() -> None:
    journal = big_journal(200)
    pos, children, width, height = layout(journal)
    assert len({(p.x, p.y) for p in pos}) == 200  # no two nodes on top of each other
    for parent, kids in enumerate(children):
        if kids:
            xs = [pos[k].x for k in kids]
            assert min(xs) <= pos[parent].x <= max(xs)
            assert all(pos[k].y > pos[parent].y for k in kids)
    assert all(0 < p.x < width and 0 < p.y < height for p in pos)


def test_tree_layout_survives_cycles_and_missing_parents() -> None:
    doc = journal_doc(
        [node(0, "a"), node(1, "b"), node(2, "c"), node(3, "d")],
        {"a": "b", "b": "a", "c": "ghost"},  # a<->b cycle; c's parent is not in the journal
    )
    pos, _children, _w, _h = layout(build_journal(doc))
    assert len({(p.x, p.y) for p in pos}) == 4


def test_journal_page_is_deterministic_and_escapes_header() -> None:
    journal = big_journal(20)
    header = {"Task": "<b>x</b>", "index_href": "../index.html", "Run": None}
    a = render_journal_page(journal, header=header, report_name="a&b.txt").decode()
    assert a == render_journal_page(journal, header=header, report_name="a&b.txt").decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in a
    assert "<b>x</b>" not in a
    assert 'href="./a%26b.txt"' in a
    assert "<dt>Run</dt>" not in a


def test_a_hostile_experiment_name_links_as_a_relative_path() -> None:
    html = render_journal_page(
        big_journal(3), header={}, report_name="javascript:alert(1)//.txt"
    ).decode()
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs
    assert all(not h.lower().startswith("javascript") for h in hrefs), hrefs
    assert 'href="./javascript%3Aalert%281%29%2F%2F.txt"' in html


def test_page_header_links_back_to_the_index() -> None:
    layout_ = derive_layout(
        "arch/G_run-group_aide/dom/task_"
        + "0" * 8
        + "-0000-0000-0000-"
        + "0" * 12
        + "/logs/e/journal.json"
    )
    header = page_header(layout_)
    assert header["index_href"] == "../" * 5 + "index.html"
    assert header["Agent"] == "aide"


# --- small pure pieces ---------------------------------------------------------------------------


def failure(label_detail: str | None, exc: str = "KeyError") -> FailureRow:
    return FailureRow(
        "g", None, "aide", "t", "r", "e", 0, "draft", exc, "m", label_detail, "journal", "k"
    )


def test_main_cause_counts_and_breaks_ties_by_first_seen() -> None:
    assert main_cause([]) == ""
    assert main_cause([failure("missing key: 'a'"), failure("timeout")]) == "missing key: 'a'"
    assert main_cause([failure("timeout"), failure(None), failure(None)]) == "KeyError ×2"


def test_time_buckets_are_days_then_weeks() -> None:
    start = datetime(2025, 8, 25, 17, tzinfo=UTC)
    labels, bucket = time_buckets([start, start + timedelta(days=3)])
    assert labels == ["2025-08-25", "2025-08-26", "2025-08-27", "2025-08-28"]
    assert bucket(start + timedelta(days=1)) == "2025-08-26"
    labels, _ = time_buckets([start, start + timedelta(days=200)])
    assert (labels[0], labels[-1], len(labels)) == ("wk 2025-08-25", "wk 2026-03-09", 29)


def test_tree_edges_never_cross_a_metric_label() -> None:
    """Labels sit in a band under each node; every edge crosses that band vertically."""
    from job.report.html import fmt_metric
    from job.report.tree import LABEL, R, edges_svg, shows_metric

    journal = big_journal(120)
    pos, children, _w, _h = layout(journal)
    labels = []  # (left, top, right, bottom) of each metric label, 5.5 px per character
    for n in journal.nodes:
        if shows_metric(n):
            half = len(fmt_metric(n.metric.value)) * 5.5 / 2
            p = pos[n.index]
            labels.append((p.x - half, p.y + R + 2, p.x + half, p.y + R + LABEL - 1))
    assert labels, "the journal must have labelled nodes for this test to mean anything"
    segments = []
    for d in re.findall(r'd="([^"]+)"', edges_svg(journal, pos, children)):
        x = y = 0.0
        for cmd, args in re.findall(r"([MVL])([^MVL]+)", d):
            values = [float(v) for v in args.split()]
            if cmd == "M":
                x, y = values
                continue
            nx, ny = (x, values[0]) if cmd == "V" else (values[0], values[1])
            segments.append((x, y, nx, ny))
            x, y = nx, ny
    assert segments

    def crosses(seg: tuple[float, float, float, float], box: tuple[float, ...]) -> bool:
        x0, y0, x1, y1 = seg
        left, top, right, bottom = box
        for i in range(101):  # sample the segment finely (boxes are 11 px tall)
            x, y = x0 + (x1 - x0) * i / 100, y0 + (y1 - y0) * i / 100
            if left < x < right and top < y < bottom:
                return True
        return False

    hits = [(s, b) for s in segments for b in labels if crosses(s, b)]
    assert hits == []


def test_the_over_time_chart_uses_its_width_with_round_ticks() -> None:
    from job.report.svg import Stack, column_chart

    stacks = [Stack(f"2025-08-{d:02d}", {"a": v, "b": 3}) for d, v in ((1, 20), (2, 52), (3, 7))]
    svg = column_chart(stacks, title="Failures over time", series=["a", "b"])
    width = float(re.search(r'viewBox="0 0 (\d+)', svg).group(1))
    xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)"', svg)]
    assert max(xs) - min(xs) > width / 2, "three columns spread over the plot, not huddled left"
    ticks = [int(v.replace(",", "")) for v in re.findall(r'class="val">([\d,]+)</text>', svg)]
    assert ticks == [20, 40, 60]  # round steps up past the largest column (55)


def test_pages_and_reports_show_bidi_overrides_as_escapes() -> None:
    from job.report.text import render_report
    from tests.journal_builders import journal as jdoc
    from tests.journal_builders import node as jnode

    rlo = "\u202e"
    doc = jdoc([jnode(0, plan=f"rename to evil{rlo}txt.exe", term_out=[f"out{rlo}\x1b[0m x\n"])])
    built = build_journal(doc)
    page = render_journal_page(built, header={"Task": f"t{rlo}"}, report_name="r.txt").decode()
    assert rlo not in page
    assert "evil\\\\u202etxt.exe" in page  # JSON-escaped backslash: the page shows \u202e
    assert "t\\u202e" in page  # the header, server-rendered
    report = render_report(
        built, derive_layout("G_run-group_aide/d/t_" + "0" * 36 + "/logs/e/journal.json")
    )
    assert rlo not in report
    assert "evil\\u202etxt.exe" in report


_TRICKY = 'ab\\"<\t\n\x00\x1b\x7f\x80\x85\x9f\u200b\u200e\u202e\u2060\u2066\u2069\ufeffé’—'


@given(st.lists(st.text(alphabet=_TRICKY, max_size=30), max_size=5))
def test_script_data_never_holds_an_invisible_character(texts: list[str]) -> None:
    """Whatever the text, the page's JSON decodes to visible characters only (tab and newline aside).

    Also pins the shortcut that skips the scan: it may only skip bodies the scan
    would find nothing in.
    """
    from job.core.textsafe import show_invisible
    from job.report.html import _INVISIBLE_UTF8, _may_hide, json_script_bytes

    html_bytes = json_script_bytes("d", texts)
    body = html_bytes[html_bytes.index(b">") + 1 : html_bytes.rindex(b"</script>")]
    decoded = json.loads(body)
    assert len(decoded) == len(texts)
    assert all(show_invisible(text) == text for text in decoded)  # nothing left to show
    raw = orjson.dumps(texts)
    assert _may_hide(raw) or _INVISIBLE_UTF8.search(raw) is None
