"""The run-level verdicts in a real browser: the chart, its click-through and the evidence links.

Why: "every verdict links to its evidence line" and "click a bar for those
runs" only hold if a browser follows them. A segment of the per-agent chart
must filter the run table to exactly that agent's runs of that mode (as many
as the chart says), a verdict cell must open the run's evidence page at the
evidence line (``#L<n>`` targets a numbered line holding the evidence), and
the Content-Security-Policy must let the page's own script do it. Built from
the generator's run groups of all four agents; nothing here waits by sleeping.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from job.report.site import build_site
from tests.browser.conftest import Watched
from tests.browser.sites import build_root
from tests.browser.test_pages import column


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_root(tmp_path_factory.mktemp("verdicts") / "root", synthetic_groups=12, seed=11)
    build_site(root)
    return root


def runs(root: Path) -> list[dict[str, str]]:
    with open(root / "runs.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_chart_is_run_level_and_clicks_through_to_the_table(site: Path, watched: Watched) -> None:
    watched.open((site / "index.html").as_uri())
    expect(watched.page.locator("#headline")).to_contain_text("failed runs")
    segments = watched.page.locator("#mode-chart a.seg")
    assert segments.count() >= 4
    rows = runs(site)
    # The segment with the most runs behind it: click it, the table shows exactly those.
    best = max(
        range(segments.count()),
        key=lambda i: sum(
            1
            for r in rows
            if r["agent"] == segments.nth(i).get_attribute("data-agent")
            and r["mode"] == segments.nth(i).get_attribute("data-mode")
        ),
    )
    segment = segments.nth(best)
    agent, mode = segment.get_attribute("data-agent"), segment.get_attribute("data-mode")
    expected = sum(1 for r in rows if r["agent"] == agent and r["mode"] == mode)
    assert expected > 0
    segment.click()
    expect(watched.page).to_have_url(re.compile("#filter:"))
    expect(watched.page.locator("#runs-body tr")).to_have_count(expected)
    assert set(column(watched, "mode")) == {mode}
    assert set(column(watched, "agent")) == {agent}
    assert watched.page.locator("#runs-mode").input_value() == mode
    watched.assert_clean()


def test_a_verdict_opens_its_evidence_line(site: Path, watched: Watched) -> None:
    watched.open((site / "index.html").as_uri())
    watched.page.select_option("#runs-mode", "time_limit")
    expect(watched.page.locator("#runs-count")).to_contain_text("runs match")
    link = watched.page.locator("#runs-body tr td a[href*='evidence.html#L']").first
    target = link.get_attribute("href")
    assert target is not None
    line = int(target.rsplit("#L", 1)[1])
    link.click()
    expect(watched.page.locator("#verdict")).to_contain_text("time limit")
    numbered = watched.page.locator(f"[id='L{line}']")
    expect(numbered).to_have_class("hit")
    assert watched.page.evaluate("location.hash") == f"#L{line}"
    run_folder = target.split("runs/", 1)[1].rsplit("/evidence.html", 1)[0]
    row = next(r for r in runs(site) if r["evidence_line"] == str(line) and r["run"] in run_folder)
    assert row["evidence"].rstrip("…") in numbered.inner_text()
    watched.assert_clean()
