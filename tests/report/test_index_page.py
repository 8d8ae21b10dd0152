"""The index page's words and structure, from the rendered HTML: plural forms, the card
grid, and the sections that follow the agent picker."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from job.report.collect import FailureRow, RunRow, SiteData, Totals, for_agent
from job.report.index_page import card_columns, render_index

NOW = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


def _run(n: int, agent: str, failures: int) -> RunRow:
    return RunRow(
        key=f"k{n}",
        run_group=f"g{n}",
        started=datetime(2025, 9, 1, n, tzinfo=UTC),
        agent=agent,
        task=f"domain/task-{n}",
        run=f"task-{n}_{n:08d}",
        experiment=None,
        steps=None,
        buggy=None,
        valid=None,
        best_metric=None,
        failures=failures,
        cause="missing module: xgboost" if failures else "",
        href=None,
        txt_href=None,
        success=False,
        source="log",
        run_folder=f"g{n}/domain/task-{n}_{n:08d}",
    )


def _failure(n: int, agent: str) -> FailureRow:
    return FailureRow(
        run_group=f"g{n}",
        started=datetime(2025, 9, 1, n, tzinfo=UTC),
        agent=agent,
        task=f"domain/task-{n}",
        run=f"task-{n}_{n:08d}",
        experiment=None,
        step=None,
        stage=None,
        type="ModuleNotFoundError",
        message="No module named 'xgboost'",
        detail="missing module: xgboost",
        source="journal",
        run_key=f"k{n}",
    )


def _data(runs: list[RunRow], failures: list[FailureRow]) -> SiteData:
    everything = SiteData(Totals(), runs, failures)
    totals = Totals()
    for agent in {r.agent for r in runs}:
        part = for_agent(everything, agent or "").totals
        for name in vars(totals):
            setattr(totals, name, getattr(totals, name) + getattr(part, name))
    return SiteData(totals, runs, failures, warnings=["one problem"])


def _render(data: SiteData) -> str:
    return render_index(data, generated_at=NOW, root_name="root", version="test")


def _visible_text(html: str) -> str:
    body = html.split("<body>", 1)[1].split('<script type="application/json"', 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_one_of_everything_is_singular() -> None:
    data = _data([_run(1, "aide", 1)], [_failure(1, "aide")])
    text = _visible_text(_render(data))
    for wrong in ("1 runs", "1 failures", "1 problems", "1 run groups", "(s)"):
        assert wrong not in text, wrong
    assert "in 1 run)" in text  # the headline
    assert "1 · in 1 run " in text  # a bar's note
    assert "1 failure · 1 run" in text  # the by-agent bar's note
    assert "1 problem while building this page" in text
    labels = re.findall(r'data-total="\d+"><b>[^<]*</b><span>([^<]*)</span>', _render(data))
    assert "run group" in labels
    assert any(label.startswith("run (") for label in labels)
    assert any(label.startswith("failure (") for label in labels)


def test_many_of_everything_is_plural() -> None:
    runs = [_run(n, "aide", 1) for n in (1, 2, 3)]
    data = _data(runs, [_failure(n, "aide") for n in (1, 2, 3)])
    text = _visible_text(_render(data))
    assert "in 3 runs)" in text
    assert "3 · in 3 runs " in text
    assert "3 failures · 3 runs" in text
    labels = re.findall(r'data-total="\d+"><b>[^<]*</b><span>([^<]*)</span>', _render(data))
    assert "run groups" in labels
    assert any(label.startswith("failures (") for label in labels)


@pytest.mark.parametrize("count", range(2, 25))
def test_the_card_grid_leaves_no_card_alone(count: int) -> None:
    cols = int(card_columns(count).removeprefix("cols-"))
    assert 2 <= cols <= 5
    assert count % cols != 1


def test_the_seven_cards_sit_in_two_rows() -> None:
    data = _data([_run(1, "aide", 1)], [_failure(1, "aide")])
    html = _render(data)
    assert 'class="cards grid cols-4" id="totals"' in html
    assert html.count('class="card"') >= 7


def test_each_agent_gets_its_own_copy_of_every_section() -> None:
    runs = [_run(1, "aide", 1), _run(2, "aide", 1), _run(3, "stella", 1)]
    failures = [_failure(1, "aide"), _failure(2, "aide"), _failure(3, "stella")]
    html = _render(_data(runs, failures))
    copies = re.findall(r'<div class="by-agent" data-agent="([^"]*)"( hidden)?>', html)
    by_name: dict[str, list[str]] = {}
    for name, hidden in copies:
        by_name.setdefault(name, []).append(hidden)
    assert set(by_name) == {"", "aide", "stella"}
    assert len({len(v) for v in by_name.values()}) == 1  # the same sections for each
    assert set(by_name[""]) == {""}
    assert set(by_name["stella"]) == {" hidden"}
    # Each copy shows its agent's numbers: the failures card counts that agent's failures.
    failures_card = re.findall(r'data-total="6"><b>([^<]*)</b>', html)
    assert failures_card == ["3", "2", "1"]
    # Ids stay unique.
    ids = re.findall(r' id="([^"]*)"', html)
    assert len(ids) == len(set(ids))
    assert '<option value="stella">stella (1 run)</option>' in html
    assert '<option value="aide">aide (2 runs)</option>' in html


def test_an_agent_without_journals_gets_no_aide_cards_or_step_sections() -> None:
    """Picking STELLA must not show "0 AIDE journals", "0 steps", "–% buggy" and empty charts."""
    stella_failure = replace(_failure(3, "stella"), source="log", type="RuntimeError")
    runs = [_run(1, "aide", 1), _run(3, "stella", 1)]
    html = _render(_data(runs, [_failure(1, "aide"), stella_failure]))
    sections = re.split(r'<div class="by-agent" data-agent="', html)[1:]
    stella = "".join(s for s in sections if s.startswith('stella"'))
    aide = "".join(s for s in sections if s.startswith('aide"'))
    assert stella  # the page has a copy of its sections for stella
    assert "AIDE journal" not in re.sub(r"<[^>]+>", " ", stella.split("Inside AIDE")[0])
    assert 'data-total="3"' not in stella  # no steps card...
    assert 'data-total="6"' in stella  # ...but its failures card, at the same index
    assert "None of these runs kept an AIDE journal" in stella
    assert "AIDE step errors by cause" not in stella
    assert 'data-total="3"' in aide
    assert "AIDE step errors by cause" in aide
