"""The package's imports run one way: core <- model <- (download, parse) <- report <- cli <- demo.

The rule is what keeps the tree readable (README, "How the code is organised"):
a change to the report cannot break the download, and a stage never reaches into
another. This test walks every module under ``job/`` with :mod:`ast`, including
imports inside functions and under ``TYPE_CHECKING`` (they are dependencies too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

JOB = Path(__file__).resolve().parents[2] / "job"

#: Rank of each top-level part of ``job``; a module may import only parts ranked
#: lower, or its own part. ``None`` stands for the modules directly in ``job/``
#: (cli, merge, __main__), and ``""`` for ``job/__init__.py`` (the version only).
LAYERS: dict[str | None, int] = {
    "": 0,
    "core": 0,
    "model": 1,
    "download": 2,
    "parse": 2,
    "report": 3,
    None: 4,
    "demo": 5,
}


def part_of(module: str) -> str | None:
    """``job.parse.pool`` -> ``parse``; ``job.cli`` -> None; ``job`` -> ``""``."""
    pieces = module.split(".")
    if len(pieces) == 1:
        return ""
    name = pieces[1]
    return name if (JOB / name).is_dir() else None


def module_name(path: Path) -> str:
    rel = path.relative_to(JOB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Every ``job`` module that ``source`` (the text of ``module``) imports."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "job")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "job":
                continue
            if (
                node.module is None
                or target in ("job",)
                or (JOB.parent / target.replace(".", "/")).is_dir()
            ):
                # ``from job.model import taxonomy`` imports the submodule too
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    path = JOB.parent / sub.replace(".", "/")
                    yield sub if path.with_suffix(".py").is_file() or path.is_dir() else target
            else:
                yield target


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports in ``source`` that run against :data:`LAYERS`, as readable lines."""
    mine = part_of(module)
    found = []
    for target in imported_modules(source, module, is_package):
        theirs = part_of(target)
        if theirs == mine:
            continue
        if LAYERS[theirs] >= LAYERS[mine]:
            found.append(
                f"{module} imports {target} ({theirs or 'job/*.py'} is not below {mine or 'job/*.py'})"
            )
    return found


def all_modules() -> list[Path]:
    return sorted(JOB.rglob("*.py"))


def test_every_part_of_job_has_a_layer() -> None:
    parts = {p.name for p in JOB.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts <= set(LAYERS), f"new package(s) without a layer: {parts - set(LAYERS)}"


def test_imports_run_one_way() -> None:
    problems = []
    for path in all_modules():
        module = module_name(path)
        problems += violations(path.read_text(), module, path.name == "__init__.py")
    assert problems == [], "\n".join(problems)


def test_every_stage_package_says_what_it_reads_and_writes() -> None:
    for name in ("core", "model", "download", "parse", "report", "demo"):
        doc = ast.get_docstring(ast.parse((JOB / name / "__init__.py").read_text()))
        assert doc, f"job/{name}/__init__.py has no docstring"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("job.core.config", "from job.model.layout import Layout"),  # core reaching up
        ("job.model.journal", "import job.parse.index"),  # model reaching up
        ("job.parse.worker", "from job.report.text import write_report"),  # stage -> report
        ("job.parse.stage", "from job.download import stage"),  # stage -> sibling stage
        ("job.download.fetch", "def f():\n    from job.parse.index import x\n"),  # lazy import
        ("job.report.site", "from job.cli import main"),  # report -> cli
        ("job.cli", "from .demo import locals3"),  # relative, cli -> demo
        ("job.model.runs", "from ..report import site"),  # relative, two levels
    ],
)
def test_a_reversed_import_is_caught(module: str, source: str) -> None:
    assert violations(source, module), f"{source!r} in {module} should be refused"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("job.report.site", "from job.parse.index import index_files"),
        ("job.parse.stage", "from job.model import taxonomy"),
        ("job.cli", "from job.report.site import build_site"),
        ("job.demo.__main__", "from job.cli import main"),
        ("job.model.runs", "from job import __version__"),
        ("job.parse.worker", "from . import index"),
    ],
)
def test_a_downward_import_is_allowed(module: str, source: str) -> None:
    assert violations(source, module) == []
