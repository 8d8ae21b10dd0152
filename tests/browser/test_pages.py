"""The pages in a real browser: they load from disk cleanly, and the interactive parts work.

Why these checks: the Python tests prove the markup and data are right, but
only a browser proves the page *works*: that the Content-Security-Policy lets
the page's own script run (and nothing else), that the table really sorts and
filters, that a click on a tree node opens and scrolls to its step, that a
5,000-step journal is drawn lazily, and that script payloads in a journal stay
text. Synchronisation is by Playwright's waiting on conditions, never sleeps.
Screenshots land in ``test-artifacts/`` (git-ignored) for humans to look at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from job.model.extras import index_extras, journal_page_path
from job.model.journal import load_journal
from job.report.journal_page import CHUNK, render_journal_page
from job.report.site import build_site
from tests.browser.conftest import Watched
from tests.browser.sites import (
    EVIL_GROUP,
    HANDMADE_GROUP,
    PAYLOAD,
    add_handmade_group,
    build_root,
    parse,
)
from tests.report.test_site import big_journal


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_root(tmp_path_factory.mktemp("browser") / "root")
    build_site(root)
    return root


def entries(root: Path) -> list[dict[str, Any]]:
    return json.loads((root / "aide_journals" / "index.json").read_text())["journals"]


def page_of(root: Path, entry: dict[str, Any]) -> Path:
    return root / "aide_journals" / journal_page_path(entry["report"])


def column(w: Watched, key: str) -> list[str]:
    """Texts of one column, in the order shown."""
    keys = w.page.eval_on_selector_all("#runs thead th", "ths => ths.map(t => t.dataset.k)")
    n = keys.index(key) + 1
    return w.page.eval_on_selector_all(
        f"#runs-body tr td:nth-child({n})", "tds => tds.map(t => t.textContent)"
    )


def number(text: str) -> float | None:
    return None if text in ("–", "") else float(text.rstrip("%").replace(",", ""))


# --- index.html ----------------------------------------------------------------------------------


def test_index_loads_clean_and_shows_every_run(
    site: Path, watched: Watched, artifacts: Path
) -> None:
    watched.open((site / "index.html").as_uri())
    rows = watched.page.locator("#runs-body tr")
    expect(rows.first).to_be_visible()
    data = json.loads(watched.page.locator("#runs-data").text_content())
    assert rows.count() == len(data["rows"])
    expect(watched.page.locator("#runs-count")).to_have_text(f"{len(data['rows'])} runs")
    expect(watched.page.locator("#causes")).to_be_visible()
    watched.page.screenshot(path=str(artifacts / "index.png"), full_page=True)
    watched.assert_clean()


def test_table_sorts(site: Path, watched: Watched) -> None:
    watched.open((site / "index.html").as_uri())
    header = watched.page.locator('#runs th[data-k="steps"]')
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    steps = [number(t) for t in column(watched, "steps")]
    known = [s for s in steps if s is not None]
    assert known == sorted(known, reverse=True)
    assert known[0] == max(known)
    assert steps[: len(known)] == known  # blanks (runs without a journal) last

    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    steps = [number(t) for t in column(watched, "steps")]
    known = [s for s in steps if s is not None]
    assert known == sorted(known)
    assert steps[: len(known)] == known

    task = watched.page.locator('#runs th[data-k="task"]')
    task.locator("button").click()
    expect(task).to_have_attribute("aria-sort", "ascending")
    ascending = column(watched, "task")
    assert [t[0].lower() for t in ascending] == sorted(t[0].lower() for t in ascending)
    task.locator("button").click()
    expect(task).to_have_attribute("aria-sort", "descending")
    descending = column(watched, "task")
    # The browser's collation decides between "kaggle/" and "kaggle_big/"; whatever it
    # decides, descending is ascending reversed and equal tasks stay together.
    assert (
        distinct(descending)
        == distinct(ascending)[::-1]
        == sorted(set(ascending), key=distinct(descending).index)
    )
    watched.assert_clean()


def distinct(values: list[str]) -> list[str]:
    """Values in order of first appearance; equal neighbours must be contiguous."""
    out: list[str] = []
    for v in values:
        if not out or out[-1] != v:
            assert v not in out, f"{v!r} is split in two places"
            out.append(v)
    return out


def test_table_filters(site: Path, watched: Watched) -> None:
    watched.open((site / "index.html").as_uri())
    total = watched.page.locator("#runs-body tr").count()
    watched.page.fill("#runs-filter", "handmade")
    expect(watched.page.locator("#runs-body tr")).to_have_count(1)
    expect(watched.page.locator("#runs-count")).to_have_text(f"1 of {total} runs match")
    expect(watched.page.locator("#runs-body tr").first).to_contain_text(
        "missing module: handmade_pkg"
    )

    watched.page.fill("#runs-filter", "")
    watched.page.select_option("#runs-agent", "stella")
    expect(watched.page.locator("#runs-count")).to_contain_text("runs match")
    agents = set(column(watched, "agent"))
    assert agents == {"stella"}

    watched.page.select_option("#runs-agent", "")
    watched.page.check("#runs-nosolution")
    expect(watched.page.locator("#runs-count")).to_contain_text("runs match")
    assert "yes" not in column(watched, "valid")
    assert 0 < watched.page.locator("#runs-body tr").count() < total
    watched.assert_clean()


def test_table_links_open_pages(site: Path, watched: Watched) -> None:
    watched.open((site / "index.html").as_uri())
    watched.page.fill("#runs-filter", HANDMADE_GROUP)
    expect(watched.page.locator("#runs-body tr")).to_have_count(1)
    href = watched.page.locator("#runs-body tr a").first.get_attribute("href")
    assert href
    assert (site / href).is_file()
    watched.page.fill("#runs-filter", "aide 8-bright-teal-dog")
    expect(watched.page.locator("#runs-body tr")).to_have_count(1)
    watched.page.locator("#runs-body tr a").first.click()
    watched.page.wait_for_selector("body[data-ready='1']")
    expect(watched.page.locator("h1")).to_contain_text("8-bright-teal-dog")
    watched.assert_clean()


# --- journal pages -----------------------------------------------------------------------------


def test_journal_node_click_scrolls_to_its_step(
    site: Path, watched: Watched, artifacts: Path
) -> None:
    entry = max((e for e in entries(site) if not e["error"]), key=lambda e: e["steps"])
    journal = load_journal(site / "failed_runs" / entry["journal"])
    target = next(n for n in reversed(journal.nodes) if n.error is not None)
    watched.open(page_of(site, entry).as_uri())
    step = watched.page.locator(f"#node-{target.index}")
    node = watched.page.locator(f'#tree a[data-i="{target.index}"]')
    expect(node).to_have_class(f"tn {'best' if target.index == journal.best_index else 'buggy'}")
    node.click()
    expect(step).to_be_in_viewport()
    expect(step).to_have_attribute("open", "")
    expect(node).to_have_class("tn buggy sel")
    expect(step.locator(".errbox")).to_contain_text(target.error.type or "")
    expect(step.locator("pre.out .tb")).to_contain_text("Traceback (most recent call last):")
    step.locator("summary", has_text="Code").click()
    expect(step.locator("pre.code .ln").first).to_be_visible()
    watched.page.screenshot(path=str(artifacts / "journal.png"), full_page=True)
    watched.assert_clean()


def test_payloads_in_a_journal_stay_text(site: Path, watched: Watched) -> None:
    [entry] = [e for e in entries(site) if e["run_group"] == EVIL_GROUP]
    watched.open(page_of(site, entry).as_uri() + "#node-0")
    step = watched.page.locator("#node-0")
    expect(step).to_have_attribute("open", "")
    expect(step.locator(".text").first).to_have_text(PAYLOAD)
    watched.page.locator('#tree a[data-i="1"]').click()
    expect(watched.page.locator("#node-1 .errbox")).to_contain_text("KeyError")
    expect(watched.page.locator("#node-1 pre.out")).to_contain_text(PAYLOAD)
    assert watched.page.evaluate("window.__pwned") is None
    assert watched.page.locator("img").count() == 0
    watched.open((site / "index.html").as_uri())
    watched.page.fill("#runs-filter", "evil")
    expect(watched.page.locator("#runs-body tr")).to_have_count(1)
    assert watched.page.evaluate("window.__pwned") is None
    watched.assert_clean()


def test_a_5000_step_journal_is_drawn_lazily(
    tmp_path: Path, watched: Watched, artifacts: Path
) -> None:
    journal = big_journal(5000)
    page = tmp_path / "big.html"
    page.write_bytes(render_journal_page(journal, header={"Task": "big"}, report_name="big.txt"))
    watched.open(page.as_uri())
    drawn = watched.page.locator("#tree-nodes a")
    expect(drawn.first).to_be_visible()
    assert 0 < drawn.count() < 1000  # only the nodes in view
    expect(watched.page.locator("#steps details.step").first).to_be_attached()
    summaries = watched.page.locator("#steps details.step").count()
    assert summaries <= 3 * CHUNK  # only the chunks near the viewport

    last = 4999
    watched.page.evaluate(
        """i => { const s = JSON.parse(document.getElementById('steps-meta').textContent).steps[i];
                  const box = document.getElementById('treebox');
                  box.scrollLeft = s.x - 300; box.scrollTop = s.y - 150; }""",
        last,
    )
    node = watched.page.locator(f'#tree a[data-i="{last}"]')
    node.click()
    step = watched.page.locator(f"#node-{last}")
    expect(step).to_be_in_viewport()
    expect(step).to_have_attribute("open", "")
    expect(step.locator(".part summary").first).to_be_visible()
    assert watched.page.locator("#tree-nodes a").count() < 1000
    watched.page.screenshot(path=str(artifacts / "journal-5000.png"))
    watched.assert_clean()


def test_a_large_index_draws_rows_a_page_at_a_time(
    site: Path, tmp_path: Path, watched: Watched
) -> None:
    """700 journals: the table starts with one page of rows and grows on demand."""
    root = tmp_path / "root"
    (root / "aide_journals").mkdir(parents=True)
    base = [e for e in entries(site) if not e["error"]]
    for e in base:
        e.update(
            index_extras(load_journal(site / "failed_runs" / e["journal"]), report=e["report"])
        )
    many = []
    for i in range(700):
        e = dict(base[i % len(base)])
        e["journal"] = f"copy{i}/{e['journal']}"
        many.append(e)
    (root / "aide_journals" / "index.json").write_text(json.dumps({"journals": many}))
    build_site(root)
    watched.open((root / "index.html").as_uri())
    rows = watched.page.locator("#runs-body tr")
    expect(rows).to_have_count(300)
    expect(watched.page.locator("#runs-count")).to_have_text("700 runs")
    more = watched.page.locator("#runs-more")
    more.click()  # the click, and the button coming into view, each draw one more page
    watched.page.wait_for_function("document.querySelectorAll('#runs-body tr').length > 300")
    assert rows.count() in (600, 700)
    watched.page.locator(".tablewrap:has(#runs)").evaluate(
        "box => { box.scrollTop = box.scrollHeight; }"
    )
    expect(rows).to_have_count(700)
    expect(more).to_be_hidden()
    watched.page.fill("#runs-filter", base[0]["task_id"])
    expect(watched.page.locator("#runs-count")).to_contain_text("of 700 runs match")
    watched.assert_clean()


def test_step_headers_say_why_and_markers_stay_inside(
    tmp_path: Path, watched: Watched, artifacts: Path
) -> None:
    """A buggy step with no exception gives AIDE's reason in its header, unopened."""
    from job.model.journal import build_journal
    from tests.journal_builders import journal, node

    review = (
        "The script never wrote submission/submission.csv, so nothing can be graded. "
        "It should save the predictions at the end."
    )
    doc = journal(
        [node(0, value=0.7179789213213216), node(1, is_buggy=True, analysis=review)], {1: 0}
    )
    page = tmp_path / "reason.html"
    page.write_bytes(
        render_journal_page(build_journal(doc), header={"Task": "t"}, report_name="r.txt")
    )
    for width in (1400, 800):
        watched.page.set_viewport_size({"width": width, "height": 900})
        watched.open(page.as_uri())
        header = watched.page.locator("#node-1 > summary")
        expect(header).to_contain_text(
            "buggy: The script never wrote submission/submission.csv, so nothing can be graded."
        )
        expect(header).not_to_contain_text("It should save")
        assert watched.page.locator("#node-1").get_attribute("open") is None
        # The disclosure marker is drawn inside the header box, clear of the coloured border.
        geometry = watched.page.evaluate(
            """() => { const d = document.querySelector('#node-1'), s = d.firstElementChild;
                       const cs = getComputedStyle(s), ds = getComputedStyle(d);
                       return {pos: cs.listStylePosition,
                               border: d.getBoundingClientRect().left + parseFloat(ds.borderLeftWidth),
                               summary: s.getBoundingClientRect().left}; }"""
        )
        assert geometry["pos"] == "inside"
        assert geometry["summary"] >= geometry["border"]
        watched.page.screenshot(path=str(artifacts / f"journal-reason-{width}.png"))
    watched.assert_clean()


# --- index.html reads well: fits the screen, balanced cards, the agent picker --------------------

#: Elements of the run table whose text is cut, and do not carry the whole text as a
#: tooltip (their own ``title`` or an ancestor's). A run cell's " txt" link is not its name.
CLIPPED_WITHOUT_TOOLTIP = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("#runs, #runs *")) {
    if (!el.clientWidth || el.scrollWidth <= el.clientWidth + 1) continue;
    const holder = el.closest("[title]");
    const text = el.textContent.trim().replace(/ txt$/, "");
    if (!holder || !holder.title.includes(text)) bad.push(el.tagName + ": " + text.slice(0, 80));
  }
  return bad;
}"""

CARD_ROWS = """() => {
  const cards = [...document.querySelectorAll("#totals .card")];
  const rows = new Map();
  for (const c of cards) rows.set(c.offsetTop, (rows.get(c.offsetTop) || 0) + 1);
  return [...rows.values()];
}"""


@pytest.mark.parametrize("width", [1400, 800])
def test_index_fits_the_screen_and_cut_names_have_tooltips(
    site: Path, watched: Watched, artifacts: Path, width: int
) -> None:
    watched.page.set_viewport_size({"width": width, "height": 900})
    watched.open((site / "index.html").as_uri())
    expect(watched.page.locator("#runs-body tr").first).to_be_visible()
    watched.page.screenshot(path=str(artifacts / f"index-{width}.png"), full_page=True)
    watched.page.locator(".tablewrap:has(#runs)").screenshot(
        path=str(artifacts / f"runs-{width}.png")
    )

    assert watched.page.evaluate(CLIPPED_WITHOUT_TOOLTIP) == []
    page_overflow = watched.page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert page_overflow <= 0, "the page scrolls sideways"
    table_overflow = watched.page.evaluate(
        "() => { const w = document.querySelector('.tablewrap:has(#runs)'); return w.scrollWidth - w.clientWidth; }"
    )
    if width >= 1400:
        assert table_overflow <= 0, "the run table needs a horizontal scrollbar at 1400 px"
    # The main cause comes right after the run's identity, before the numbers.
    keys = watched.page.eval_on_selector_all("#runs thead th", "ths => ths.map(t => t.dataset.k)")
    assert keys.index("cause") == keys.index("run") + 1
    # Long names are cut with the whole name as a tooltip.
    untipped = watched.page.eval_on_selector_all(
        "#runs-body td.clip", "tds => tds.filter(t => t.textContent && !t.title).length"
    )
    assert untipped == 0

    rows = watched.page.evaluate(CARD_ROWS)
    assert sum(rows) >= 2
    assert 1 not in rows, f"a card sits alone on its row: {rows}"
    assert max(rows) - min(rows) <= 1, f"unbalanced card rows: {rows}"
    watched.assert_clean()


CARD_ROW_FILL = """() => {
  const grid = document.querySelector("#totals").getBoundingClientRect();
  const rows = new Map();
  for (const c of document.querySelectorAll("#totals .card")) {
    const r = c.getBoundingClientRect();
    const row = rows.get(r.top) || {left: Infinity, right: -Infinity};
    rows.set(r.top, {left: Math.min(row.left, r.left), right: Math.max(row.right, r.right)});
  }
  return [...rows.values()].map(r => (r.right - r.left) / grid.width);
}"""


def test_on_a_phone_every_row_of_cards_is_full(
    site: Path, watched: Watched, artifacts: Path
) -> None:
    """Below 620 px the cards go two to a row; an odd last card spans the row, none sits half-empty."""
    watched.page.set_viewport_size({"width": 480, "height": 900})
    watched.open((site / "index.html").as_uri())
    expect(watched.page.locator("#totals .card").first).to_be_visible()
    watched.page.locator("#totals").screenshot(path=str(artifacts / "cards-480.png"))
    rows = watched.page.evaluate(CARD_ROWS)
    assert len(rows) >= 2
    assert max(rows) == 2  # two to a row
    fill = watched.page.evaluate(CARD_ROW_FILL)
    assert min(fill) > 0.98, f"a row of cards is not full: {fill}"
    watched.assert_clean()


def _shown_numbers(w: Watched) -> dict[str, Any]:
    """The numbers the visible copy of each agent-following section shows."""
    return w.page.evaluate(
        """() => {
      const shown = [...document.querySelectorAll(".by-agent")].filter(s => !s.hidden);
      const failures = shown.map(s => s.querySelector("[data-total='6'] b")).filter(Boolean);
      const causes = shown.map(s => s.querySelector("svg[aria-label='AIDE step errors by cause']"))
        .filter(Boolean);
      const agents = shown.map(s => s.querySelector("svg[aria-label='Failure causes by agent']"))
        .filter(Boolean);
      const labels = svg => [...svg.querySelectorAll("text.lbl > title")].map(t => t.textContent);
      const values = svg => [...svg.querySelectorAll("text.val")].map(t => t.textContent);
      return {
        sections: shown.length,
        agents: [...new Set(shown.map(s => s.dataset.agent))],
        failures: failures.map(b => b.textContent),
        causes: causes.map(values),
        byAgent: agents.map(labels),
      };
    }"""
    )


def test_the_agent_picker_switches_charts_totals_and_table(
    site: Path, watched: Watched, artifacts: Path
) -> None:
    watched.open((site / "index.html").as_uri())
    everything = _shown_numbers(watched)
    assert everything["sections"] >= 6
    assert everything["agents"] == [""]
    assert len(everything["byAgent"][0]) > 1  # every agent has a bar

    watched.page.select_option("#runs-agent", "stella")
    expect(watched.page).to_have_url(re.compile(r"#agent=stella$"))
    stella = _shown_numbers(watched)
    assert stella["sections"] == everything["sections"]
    assert stella["agents"] == ["stella"]
    assert stella["byAgent"] == [["stella"]]
    assert stella["causes"] != everything["causes"]
    watched.page.screenshot(path=str(artifacts / "index-stella.png"), full_page=True)
    # The totals card counts the failures of stella's runs, as the table lists them.
    assert set(column(watched, "agent")) == {"stella"}
    table_failures = sum(int(n) for n in column(watched, "failures") if n not in ("", "–"))
    assert stella["failures"] == [f"{table_failures:,}"]
    assert int(everything["failures"][0].replace(",", "")) > table_failures
    # The choice is in the link: opening it shows stella again.
    url = watched.page.url
    watched.page.goto("about:blank")
    watched.open(url)
    expect(watched.page.locator("#runs-agent")).to_have_value("stella")
    assert _shown_numbers(watched) == stella
    assert set(column(watched, "agent")) == {"stella"}

    watched.page.select_option("#runs-agent", "")
    expect(watched.page.locator(".by-agent[data-agent='']").first).to_be_visible()
    assert _shown_numbers(watched) == everything
    assert len(set(column(watched, "agent"))) > 1
    watched.assert_clean()


def test_counts_of_one_read_as_english_in_the_browser(
    tmp_path: Path, watched: Watched, artifacts: Path
) -> None:
    root = tmp_path / "root"
    add_handmade_group(root / "failed_runs")
    parse(root)
    build_site(root)
    watched.open((root / "index.html").as_uri())
    expect(watched.page.locator("#runs-body tr")).to_have_count(1)
    expect(watched.page.locator("#runs-count")).to_have_text("1 run")
    watched.page.screenshot(path=str(artifacts / "index-one-run.png"), full_page=True)
    text = watched.page.locator("main").inner_text()
    for wrong in ("1 runs", "1 failures", "1 run groups", "(s)"):
        assert wrong not in text, wrong
    watched.assert_clean()
