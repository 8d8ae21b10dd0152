"""Output folders to build the analysis pages from, shared by the site and browser tests.

``build_root`` makes what a real run leaves behind: the four real sample run
groups, a few generated ones of every agent (``job.demo.synthetic``), one hand-made
non-AIDE run group whose failure we know exactly, and one AIDE journal full of
HTML/script payloads in a folder whose name is hostile too. The parse stage
then writes ``aide_journals/index.json`` exactly as in production.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from job.core.config import ParseConfig
from job.demo.synthetic import seed_bucket
from job.parse.stage import run_parse
from job.report.journal_files import JOURNAL_FILES

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
SAMPLE_ARCHIVES = SAMPLES / "bucket" / "v1" / "artifacts" / "failed_runs"

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
EVIL_TASK = "evil<b>task\"'&amp"
EVIL_GROUP = "2025-09-02T08-00-00-GMT_run-group_aide"
EVIL_UUID = "11111111-2222-3333-4444-555555555555"

HANDMADE_GROUP = "2025-09-01T10-00-00-GMT_run-group_biomni"
HANDMADE_FAILED = "manual/handmade-task_aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
HANDMADE_OK = "manual/handmade-task_ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee"
HANDMADE_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/home/agent/start.py", line 112, in main\n'
    "    result = agent.run(task_description)\n"
    '  File "/home/agent/biomni/tools/bio.py", line 12, in <module>\n'
    "    import handmade_pkg as hp\n"
    "ModuleNotFoundError: No module named 'handmade_pkg'\n"
)

SYNTHETIC_AGENTS = ("aide", "biomni", "stella", "mlagentbench")


def build_root(root: Path, *, synthetic_groups: int = 6, seed: int = 5, steps: int = 14) -> Path:
    """A complete output folder (``failed_runs/`` + parsed ``aide_journals/``) under ``root``."""
    failed = root / "failed_runs"
    failed.mkdir(parents=True)
    for archive in sorted(SAMPLE_ARCHIVES.glob("*.tar.gz")):
        _extract(archive, failed / archive.name.removesuffix(".tar.gz"))
    if synthetic_groups:
        bucket = root / "bucket"
        for archive in seed_bucket(
            bucket, n_archives=synthetic_groups, agents=SYNTHETIC_AGENTS, seed=seed, steps=steps
        ):
            _extract(archive, failed / archive.name.removesuffix(".tar.gz"))
        for path in sorted(bucket.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        bucket.rmdir()
    add_handmade_group(failed)
    add_payload_group(failed)
    parse(root)
    return root


def parse(root: Path) -> None:
    run_parse(
        ParseConfig(
            failed_runs_dir=root / "failed_runs", output_dir=root / "aide_journals", concurrent=1
        ),
        JOURNAL_FILES,
    )


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def add_handmade_group(failed: Path) -> Path:
    """A biomni run group: one failed run (known traceback), one successful run."""
    group = failed / HANDMADE_GROUP / HANDMADE_GROUP
    metadata = {
        "run_group": HANDMADE_GROUP,
        "created_at": "2025-09-01T10-00-00-GMT",
        "runs": {
            HANDMADE_FAILED: {
                "task_id": "manual/handmade-task",
                "agent_id": "biomni",
                "seed": 0,
                "success": False,
            },
            HANDMADE_OK: {
                "task_id": "manual/handmade-task",
                "agent_id": "biomni",
                "seed": 1,
                "success": True,
            },
            "../../../etc": {"task_id": "x", "agent_id": "biomni", "success": False},
        },
        "agent_id": "biomni",
    }
    write(group / "metadata.json", json.dumps(metadata))
    write(
        group / HANDMADE_FAILED / "run.log",
        "[Worker 0] Running seed 0 for manual/handmade-task and agent biomni\n"
        + HANDMADE_TRACEBACK
        + f"ERROR: Run {HANDMADE_FAILED.split('/')[1]} failed: ModuleNotFoundError\n",
    )
    write(group / HANDMADE_FAILED / "logs" / "agent.log", "thinking...\n" + HANDMADE_TRACEBACK)
    write(group / HANDMADE_OK / "run.log", "[Worker 0] done\n")
    return group


def node(step: int, node_id: str, **fields: Any) -> dict[str, Any]:
    """One AIDE node as AIDE 0.2 serialises it (fields may be overridden)."""
    base: dict[str, Any] = {
        "code": "print('hello')\n",
        "plan": f"plan of step {step}",
        "step": step,
        "id": node_id,
        "ctime": 1756800000.0 + step,
        "parent": None,
        "children": [],
        "_term_out": ["hello\n", "Execution time: a moment seconds (time limit is 1 hour)."],
        "exec_time": 0.5,
        "exc_type": None,
        "exc_info": None,
        "exc_stack": None,
        "analysis": "fine",
        "metric": {"value": 0.5 + step / 100, "maximize": True},
        "is_buggy": False,
    }
    base.update(fields)
    return base


def journal_doc(nodes: list[dict[str, Any]], parents: dict[str, str]) -> dict[str, Any]:
    return {"nodes": nodes, "node2parent": parents, "__version": "2"}


def payload_journal() -> dict[str, Any]:
    """Three steps with script payloads in every text field a page shows."""
    tb = (
        "Traceback (most recent call last):\n"
        '  File "runfile.py", line 2, in <module>\n'
        f"    x = df['{PAYLOAD}']\n"
        f"KeyError: '{PAYLOAD}'\n"
    )
    nodes = [
        node(0, "a0", plan=PAYLOAD, code=f"# {PAYLOAD}\nx = 1\n", analysis=PAYLOAD),
        node(
            1,
            "a1",
            plan=f"debug {PAYLOAD}",
            code=f"import pandas as pd\nx = df['{PAYLOAD}']\n",
            _term_out=[tb],
            exc_type="KeyError",
            exc_info={"args": [PAYLOAD]},
            exc_stack=[["runfile.py", 2, "<module>", f"x = df['{PAYLOAD}']"]],
            metric={"value": None, "maximize": None},
            is_buggy=True,
        ),
        node(2, "a2", plan="improve"),
    ]
    return journal_doc(nodes, {"a1": "a0", "a2": "a0"})


def add_payload_group(failed: Path) -> Path:
    group = failed / EVIL_GROUP / EVIL_GROUP
    run = f"manual/{EVIL_TASK}_{EVIL_UUID}"
    write(
        group / "metadata.json",
        json.dumps(
            {
                "run_group": EVIL_GROUP,
                "created_at": "2025-09-02T08-00-00-GMT",
                "runs": {
                    run: {"task_id": f"manual/{EVIL_TASK}", "agent_id": "aide", "success": False}
                },
                "agent_id": "aide",
            }
        ),
    )
    write(group / run / "run.log", "[Worker 0] failed internally\n")
    write(group / run / "logs" / "0-evil-exp" / "journal.json", json.dumps(payload_journal()))
    return group


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
