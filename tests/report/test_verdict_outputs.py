"""The report stage's verdict outputs: runs.csv, summary.json, evidence pages, banners, headline.

Why: the nightly alert reads summary.json's changes, people read runs.csv and
the index's headline, and every verdict must lead to the line it rests on.
So: every run of every group gets a row (succeeded runs inside failed groups
too), the "since the last run" diff is computed against the previous night's
file before it is overwritten, evidence pages escape what logs contain and
anchor the evidence line, journal pages and text reports carry their run's
verdict, and a second build with nothing new rewrites none of them.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from job.report.site import build_site
from job.report.verdict_banners import TXT_PREFIX
from tests.browser.sites import build_root

NOW = datetime(2025, 9, 3, 6, 0, tzinfo=UTC)
PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def write_group(failed: Path, name: str, runs: dict[str, dict[str, Any]]) -> None:
    """A run group folder: metadata.json plus each run's run.log and submission files."""
    group = failed / name / name
    meta = {"run_group": name, "agent_id": "biomni", "runs": {}}
    for key, spec in runs.items():
        meta["runs"][key] = {
            "task_id": spec.get("task", "manual/toy-task"),
            "agent_id": spec.get("agent", "biomni"),
            "seed": 0,
            "success": spec.get("success", False),
        }
        run = group / key
        (run / "submission").mkdir(parents=True)
        (run / "run.log").write_text("\n".join(spec["log"]) + "\n")
        for file, body in spec.get("submission", {}).items():
            (run / "submission" / file).write_bytes(body)
    (group / "metadata.json").write_text(json.dumps(meta))


def harness(msg: str) -> str:
    return f"[2025-09-01 10:00:00,000] [agents.py:412] {msg}"


def timed_out(hours: int = 12) -> list[str]:
    return [
        harness("[Worker 0] Running seed 0 for manual/toy-task and agent biomni"),
        harness(f"[Container] Timed out after {hours}hrs 0mins 0secs"),
        harness("[Worker 0] Agent completed without exception but failed internally"),
    ]


def crashed(line: str) -> list[str]:
    return [
        harness("[Worker 0] Running seed 0 for manual/toy-task and agent biomni"),
        harness("[Container] Traceback (most recent call last):"),
        harness(f"[Container] {line}"),
        harness("[Worker 0] Agent completed without exception but failed internally"),
    ]


def succeeded() -> list[str]:
    return [harness("Agent succeeded: Valid submission file found")]


def runs_csv(root: Path) -> list[dict[str, str]]:
    with open(root / "runs.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def uid(n: int) -> str:
    return f"{n:08d}-aaaa-bbbb-cccc-{n:012d}"


G1 = "2025-09-01T10-00-00-GMT_run-group_biomni"
G2 = "2025-09-02T10-00-00-GMT_run-group_biomni"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    failed = tmp_path / "failed_runs"
    write_group(
        failed,
        G1,
        {
            f"manual/toy-task_{uid(1)}": {"log": timed_out()},
            f"manual/toy-task_{uid(2)}": {"log": timed_out(8)},
            f"manual/toy-task_{uid(3)}": {
                "log": crashed(f"ValueError: bad input {PAYLOAD}"),
            },
            f"manual/toy-task_{uid(4)}": {
                "log": succeeded(),
                "success": True,
                "submission": {"submission.csv": b"id,y\n1,2\n"},
            },
        },
    )
    return tmp_path


def test_runs_csv_has_every_run_with_its_verdict(root: Path) -> None:
    build_site(root, now=NOW)
    rows = {r["run"].rsplit("_", 1)[1]: r for r in runs_csv(root)}
    assert set(rows) == {uid(1), uid(2), uid(3), uid(4)}
    assert rows[uid(4)]["mode"] == "succeeded"
    assert rows[uid(4)]["success"] == "true"
    assert (rows[uid(1)]["mode"], rows[uid(1)]["cause"]) == ("time_limit", "timed out after 12 h")
    assert rows[uid(2)]["cause"] == "timed out after 8 h"
    assert rows[uid(3)]["mode"] == "code_exception"
    for r in rows.values():
        if r["evidence_line"]:
            run = next((root / "failed_runs" / G1 / G1 / "manual").glob(f"*{r['run']}"))
            line = (run / r["evidence_file"]).read_text().split("\n")[int(r["evidence_line"]) - 1]
            assert r["evidence"].rstrip("…") in line


def test_headline_is_run_level(root: Path) -> None:
    build_site(root, now=NOW)
    html = (root / "index.html").read_text()
    headline = re.search(r'<p class="answer" id="headline">(.*?)</p>', html, re.S)
    assert headline
    assert "Of 3 failed runs" in headline.group(1)
    assert "67% hit the time limit" in headline.group(1)
    assert "1 run in these groups succeeded" in headline.group(1)
    assert 'href="#filter:mode=time_limit"' in headline.group(1)


def test_evidence_page_escapes_and_anchors_the_line(root: Path) -> None:
    build_site(root, now=NOW)
    row = next(r for r in runs_csv(root) if r["mode"] == "code_exception")
    html = (root / "index.html").read_text()
    data = json.loads(
        re.search(r'id="runs-data">(.*?)</script>', html, re.S).group(1)  # type: ignore[union-attr]
    )
    keys = [c["key"] for c in data["cols"]]
    ev = [r[keys.index("ev")] for r in data["rows"] if r[keys.index("mode")] == "code_exception"]
    assert len(ev) == 1
    page_rel, anchor = ev[0].split("#")
    assert anchor == f"L{row['evidence_line']}"
    page = (root / unquote(page_rel)).read_text()
    assert PAYLOAD not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    found = re.search(rf'<div id="{anchor}" class="hit">(.*?)</div>', page, re.S)
    assert found
    assert "ValueError: bad input" in found.group(1)


def test_summary_reports_what_changed_since_the_last_run(root: Path) -> None:
    first = build_site(root, now=NOW)
    assert first.verdicts["time_limit"] == 2
    summary = json.loads((root / "summary.json").read_text())
    assert summary["since_previous"]["previous_generated_at"] is None
    assert summary["by_agent"]["biomni"]["time_limit"] == 2
    # The next night: a new group of crashes moves the time-limit share down 40 points.
    write_group(
        root / "failed_runs",
        G2,
        {f"manual/toy-task_{uid(10 + i)}": {"log": crashed("KeyError: 'y'")} for i in range(3)},
    )
    build_site(root, now=NOW + timedelta(days=1))
    after = json.loads((root / "summary.json").read_text())
    since = after["since_previous"]
    assert since["previous_generated_at"] == "2025-09-03T06:00:00Z"
    assert since["new_run_groups"] == [G2]
    moved = {m["mode"]: m for m in since["moved"]}
    assert set(moved) == {"time_limit", "code_exception"}
    assert moved["time_limit"]["before_pct"] == pytest.approx(66.7)
    assert moved["time_limit"]["now_pct"] == pytest.approx(33.3)
    assert moved["code_exception"]["points"] > 10
    html = (root / "index.html").read_text()
    assert "1 new run groups" in html
    assert "time limit</b> 67% → 33%" in html


def test_unreadable_previous_summary_is_a_warning_not_a_failure(root: Path) -> None:
    (root / "summary.json").write_text("{not json")
    out = build_site(root, now=NOW)
    assert any("previous summary unreadable" in w for w in out.warnings)
    assert json.loads((root / "summary.json").read_text())["runs"] == 4


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("banners") / "root", synthetic_groups=4, seed=3)


def test_journal_pages_and_reports_carry_the_verdict(parsed: Path) -> None:
    first = build_site(parsed, now=NOW)
    index = json.loads((parsed / "aide_journals" / "index.json").read_text())["journals"]
    modes = {r["run"]: (r["mode"], r["cause"], r["evidence_line"]) for r in runs_csv(parsed)}
    checked = 0
    for entry in index:
        if entry.get("error"):
            continue
        run = entry["journal"].split("/logs/")[0].rsplit("/", 1)[1]
        _mode, cause, line = modes[run]
        report = (parsed / "aide_journals" / entry["report"]).read_text()
        assert report.startswith(TXT_PREFIX.decode())
        assert cause in report.split("\n", 1)[0]
        page = (parsed / "aide_journals" / entry["html"]).read_text()
        banner = re.search(r'<p class="verdict-banner".*?</p>', page, re.S)
        assert banner
        assert page.index("<main>") + len("<main>") == banner.start()
        if line:
            link = re.search(r'href="([^"]*evidence\.html#L\d+)"', banner.group(0))
            assert link
            page_link = unquote(link.group(1).split("#")[0])
            target = (parsed / "aide_journals" / entry["html"]).parent / page_link
            assert target.resolve().is_file()
            assert link.group(1).endswith(f"#L{line}")
        checked += 1
    assert checked >= 3
    assert first.verdicts_stamped == 2 * checked
    again = build_site(parsed, now=NOW + timedelta(hours=1))
    assert again.verdicts_stamped == 0  # nothing changed: no page or report rewritten


def test_unchanged_runs_reuse_last_nights_verdict_and_changed_ones_are_decided_again(
    root: Path,
) -> None:
    first = build_site(root, now=NOW)
    assert first.verdicts_reused == 0
    before = runs_csv(root)
    second = build_site(root, now=NOW + timedelta(days=1))
    assert second.verdicts_reused == 4
    assert second.evidence_pages == 0
    assert runs_csv(root) == before
    # A run re-extracted with a different ending (its run.log changed) is decided again.
    run = next((root / "failed_runs" / G1 / G1 / "manual").glob(f"*{uid(1)}"))
    (run / "run.log").write_text("\n".join(crashed("KeyError: 'y'")) + "\n")
    third = build_site(root, now=NOW + timedelta(days=2))
    assert third.verdicts_reused == 3
    assert third.evidence_pages == 1
    mode = next(r["mode"] for r in runs_csv(root) if r["run"].endswith(uid(1)))
    assert mode == "code_exception"
    # A deleted evidence page is written again (from the logs, not from the cache).
    page = next((root / "runs").rglob(f"*{uid(2)}/evidence.html"))
    page.unlink()
    fourth = build_site(root, now=NOW + timedelta(days=3))
    assert fourth.evidence_pages == 1
    assert "Timed out after 8hrs" in page.read_text()


def test_index_json_entries_carry_their_runs_verdict(parsed: Path) -> None:
    build_site(parsed, now=NOW)
    index_file = parsed / "aide_journals" / "index.json"
    rows = {r["run"]: r for r in runs_csv(parsed)}
    entries = json.loads(index_file.read_text())["journals"]
    checked = 0
    for entry in entries:
        run = entry["journal"].split("/logs/")[0].rsplit("/", 1)[1]
        row, verdict = rows[run], entry["verdict"]
        assert (verdict["mode"], verdict["cause"]) == (row["mode"], row["cause"])
        assert str(verdict["evidence_line"] or "") == row["evidence_line"]
        assert verdict["href"].startswith("runs/")
        checked += 1
    assert checked >= 3
    # The parse stage keeps the field for journals it does not re-parse.
    from job.parse.index import read_index

    assert all(e.verdict for e in read_index(index_file))
    before = index_file.stat().st_mtime_ns
    build_site(parsed, now=NOW + timedelta(hours=2))
    assert index_file.stat().st_mtime_ns == before  # nothing changed: not rewritten


def test_a_link_planted_at_the_evidence_folder_is_replaced_not_followed(
    root: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "runs").symlink_to(elsewhere)
    summary = build_site(root, now=NOW)
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    assert (root / "runs").is_dir()
    assert not (root / "runs").is_symlink()
    assert list((root / "runs").rglob("evidence.html"))
    assert any("symbolic link" in w for w in summary.warnings)
