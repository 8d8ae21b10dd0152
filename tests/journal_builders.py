"""Build AIDE journals and failed-runs trees for the parse stage's tests.

Journals are written the way AIDE 0.2 writes them (stdlib ``json``, ``parent:
null`` and ``children: []`` in every node, the edges in ``node2parent``), so a
test can state exactly what a step holds and check the report and index for it.
The real samples are extracted the way the download stage lays archives out.
"""

from __future__ import annotations

import json
import random
import tarfile
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import SAMPLES

SAMPLE_ARCHIVES = SAMPLES / "bucket" / "v1" / "artifacts" / "failed_runs"
EXPECTED = SAMPLES / "expected.json"


def node(
    step: int,
    *,
    node_id: str | None = None,
    plan: str | None = "a plan",
    code: str | None = "print('hello')\n",
    term_out: list[str] | None = None,
    exc_type: str | None = None,
    exc_info: dict[str, Any] | None = None,
    exc_stack: list[list[Any]] | None = None,
    analysis: str | None = "an analysis",
    value: float | None = None,
    maximize: bool | None = True,
    is_buggy: bool | None = None,
    ctime: float | None = 1_756_141_745.25,
    exec_time: float | None = 0.5,
    **extra: Any,
) -> dict[str, Any]:
    """One node as AIDE serialises it; buggy by default when it has an exception."""
    if is_buggy is None:
        is_buggy = exc_type is not None
    raw = {
        "code": code,
        "plan": plan,
        "step": step,
        "id": node_id or f"{step:032x}",
        "ctime": ctime,
        "parent": None,
        "children": [],
        "_term_out": ["hello", "\n"] if term_out is None else term_out,
        "exec_time": exec_time,
        "exc_type": exc_type,
        "exc_info": exc_info,
        "exc_stack": exc_stack,
        "analysis": analysis,
        "metric": {"value": value, "maximize": maximize if value is not None else None},
        "is_buggy": is_buggy,
    }
    raw.update(extra)
    return raw


def failing(step: int, exc_type: str, message: str, **kw: Any) -> dict[str, Any]:
    """A buggy step whose output ends in a real-looking traceback."""
    out = [
        "Traceback (most recent call last):\n",
        '  File "runfile.py", line 3, in <module>\n',
        f"{exc_type}: {message}\n",
        "Execution time: a moment seconds (time limit is 2 seconds).",
    ]
    kw.setdefault("term_out", out)
    kw.setdefault("exc_info", {"args": [message]})
    kw.setdefault("exc_stack", [["runfile.py", 3, "<module>", "boom()"]])
    return node(step, exc_type=exc_type, **kw)


def journal(nodes: list[dict[str, Any]], edges: dict[int, int] | None = None) -> dict[str, Any]:
    """A journal document; ``edges`` maps child step -> parent step."""
    ids = {n["step"]: n["id"] for n in nodes}
    node2parent = {ids[c]: ids[p] for c, p in (edges or {}).items()}
    return {"nodes": nodes, "node2parent": node2parent, "__version": "2"}


def run_path(
    group: str = "2025-09-01T10-00-00-GMT_run-group_aide",
    domain: str = "polarishub",
    task: str = "some-task",
    run_uuid: str | None = None,
    experiment: str = "1-quiet-amber-heron",
    *,
    archive_folder: str | None = None,
) -> str:
    """Journal path relative to failed_runs, in the download stage's layout."""
    run_uuid = run_uuid or str(uuid.UUID(int=random.Random(task + domain).getrandbits(128)))
    archive = archive_folder if archive_folder is not None else group
    prefix = f"{archive}/" if archive else ""
    return f"{prefix}{group}/{domain}/{task}_{run_uuid}/logs/{experiment}/journal.json"


def write_journal(root: Path, rel: str, doc: Any) -> Path:
    """Write ``doc`` as AIDE would (stdlib json); bytes and str are written as they are."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    elif isinstance(doc, str):
        path.write_text(doc, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def extract_samples(failed_runs: Path) -> Path:
    """The sample archives as the download stage leaves them: ``<key>/<run group>/...``."""
    failed_runs.mkdir(parents=True, exist_ok=True)
    for archive in sorted(SAMPLE_ARCHIVES.glob("*.tar.gz")):
        folder = failed_runs / archive.name.removesuffix(".tar.gz")
        folder.mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    return failed_runs


def expected_journals() -> list[dict[str, Any]]:
    """expected.json's journals, each with the path the download layout gives it."""
    doc = json.loads(EXPECTED.read_text())
    found = []
    for key, archive in doc["archives"].items():
        folder = key.removeprefix(doc["prefix"] + "/").removesuffix(".tar.gz")
        for entry in archive["journals"]:
            found.append({**entry, "rel": f"{folder}/{entry['path']}", "archive": archive})
    return found


def aide_sized_journal(target_bytes: int, seed: int = 1) -> str:
    """A long run's journal: terminal output as AIDE stores it, thousands of tiny pieces.

    That shape (a line, then "\\n", as separate strings) is the worst case for
    memory per byte, which is what the memory test wants.
    """
    rng = random.Random(seed)
    nodes, size, step = [], 0, 0
    while size < target_bytes:
        out: list[str] = []
        for i in range(1500):
            out += [f"epoch {i} loss {rng.random():.6f} acc {rng.random():.4f}", "\n"]
        raw = failing(
            step,
            "KeyError",
            "'label'",
            term_out=out,
            code="import numpy as np\n" * 200,
            plan="Train a model. " * 40,
        )
        size += len(json.dumps(raw))
        nodes.append(raw)
        step += 1
    return json.dumps(journal(nodes, {s: s - 1 for s in range(1, step)}))
