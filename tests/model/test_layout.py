"""Journal path -> run group, agent, domain, task, run uuid, experiment (issue #3, point 2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from job.model.layout import Layout, derive_layout, is_journal_path

G = "2025-08-25T17-09-05-GMT_run-group_aide"
U = "d76d4330-f144-6bea-b0c1-1fdecb91ce37"
RUN = f"open-problems-predict-modality_{U}"

# (path, expected fields, words every warning list must contain (one per warning))
CASES: list[tuple[str, dict[str, object], list[str]]] = [
    (  # the download stage's layout: archive folder, then the tar's top entry
        f"{G}/{G}/manual/{RUN}/logs/8-bright-teal-dog/journal.json",
        {
            "run_group": G,
            "agent": "aide",
            "domain": "manual",
            "task": "open-problems-predict-modality",
            "task_id": "manual/open-problems-predict-modality",
            "run_id": RUN,
            "run_uuid": U,
            "experiment": "8-bright-teal-dog",
            "run_folder": f"{G}/{G}/manual/{RUN}",
            "report": f"{G}/{G}/manual/{RUN}/8-bright-teal-dog.txt",
        },
        [],
    ),
    (  # the run group folder only once (an archive extracted by hand)
        f"{G}/manual/{RUN}/logs/e/journal.json",
        {"run_group": G, "agent": "aide", "domain": "manual", "run_uuid": U},
        [],
    ),
    (  # cloud keys add folders above the archive folder
        f"aide/open-problems-predict-modality/{G}/{G}/manual/{RUN}/logs/e/journal.json",
        {"run_group": G, "agent": "aide", "task_id": "manual/open-problems-predict-modality"},
        [],
    ),
    (  # task names contain underscores; the uuid is the last 8-4-4-4-12 part
        f"{G}/{G}/proteingym-dms/A0A140D2T1_ZIKV_Sourisseau_2019_09a073b4-e005-8761-0d24-b273a3f762b7/logs/3-dusky-olive-heron/journal.json",
        {
            "task": "A0A140D2T1_ZIKV_Sourisseau_2019",
            "run_uuid": "09a073b4-e005-8761-0d24-b273a3f762b7",
            "task_id": "proteingym-dms/A0A140D2T1_ZIKV_Sourisseau_2019",
        },
        [],
    ),
    (  # no year, an agent name with underscores and dashes
        f"nightly_run-group_my_agent-v2/kaggle/task_{U}/logs/e/journal.json",
        {"run_group": "nightly_run-group_my_agent-v2", "agent": "my_agent-v2", "domain": "kaggle"},
        [],
    ),
    (  # upper-case hex is still a uuid
        f"{G}/d/task_{U.upper()}/logs/e/journal.json",
        {"task": "task", "run_uuid": U.upper()},
        [],
    ),
    (  # nearest run group wins when two are nested
        f"A_run-group_x/B_run-group_y/dom/task_{U}/logs/e/journal.json",
        {"run_group": "B_run-group_y", "agent": "y", "domain": "dom"},
        [],
    ),
    (  # run folder without a uuid
        f"{G}/dom/sometask/logs/e/journal.json",
        {"run_id": "sometask", "task": None, "run_uuid": None, "task_id": None, "domain": "dom"},
        ["run folder 'sometask'"],
    ),
    (  # a uuid with a group of the wrong length is not a uuid
        f"{G}/dom/task_d76d4330-f144-6bea-b0c1-1fdecb91ce3/logs/e/journal.json",
        {"task": None, "run_uuid": None},
        ["is not named '<task>_<run uuid>'"],
    ),
    (  # no domain folder between the run group and the run
        f"{G}/task_{U}/logs/e/journal.json",
        {"run_group": G, "agent": "aide", "domain": None, "task_id": "task", "task": "task"},
        ["no domain folder"],
    ),
    (  # extra folders between the run group and the domain
        f"{G}/extra/dom/task_{U}/logs/e/journal.json",
        {"run_group": G, "domain": "dom", "task_id": "dom/task"},
        ["unexpected folders 'extra'"],
    ),
    (  # no run group marker anywhere: biomlbench's positions, agent unknown
        f"x/y/dom/task_{U}/logs/e/journal.json",
        {"run_group": "y", "agent": None, "domain": "dom", "task": "task"},
        ["took 'y' (two levels up) as the run group"],
    ),
    (  # only a domain above the run folder
        f"dom/task_{U}/logs/e/journal.json",
        {"run_group": None, "agent": None, "domain": "dom", "task_id": "dom/task"},
        ["run group and agent unknown"],
    ),
    (  # the run folder at the top of failed_runs
        f"task_{U}/logs/e/journal.json",
        {"run_group": None, "domain": None, "task": "task", "run_folder": f"task_{U}"},
        ["run group and agent unknown", "domain unknown"],
    ),
    (  # logs/ at the very top: no run folder at all; the report still has a unique place
        "logs/exp-1/journal.json",
        {"run_id": None, "task": None, "run_folder": "", "report": "exp-1.txt"},
        ["not inside a run folder"],
    ),
    (  # a run group name with nothing after the marker
        f"foo_run-group_/dom/task_{U}/logs/e/journal.json",
        {"run_group": "foo_run-group_", "agent": None},
        ["names no agent"],
    ),
    (  # dots and spaces in an experiment name survive into the report name
        f"{G}/dom/task_{U}/logs/1.2 odd exp/journal.json",
        {"experiment": "1.2 odd exp", "report": f"{G}/dom/task_{U}/1.2 odd exp.txt"},
        [],
    ),
    (  # a folder name with an undecodable byte (surrogate-escaped by os.walk)
        f"{G}/dom/task\udcff_{U}/logs/e/journal.json",
        {"task": "task\ufffd", "run_folder": f"{G}/dom/task\ufffd_{U}"},
        [],
    ),
]


def _field(layout: Layout, name: str) -> object:
    return getattr(layout, name)


@pytest.mark.parametrize(("path", "expected", "warnings"), CASES, ids=[c[0][-60:] for c in CASES])
def test_derive_layout_table(path: str, expected: dict[str, object], warnings: list[str]) -> None:
    layout = derive_layout(path)
    for name, value in expected.items():
        assert _field(layout, name) == value, name
    assert len(layout.warnings) == len(warnings), layout.warnings
    for words, warning in zip(warnings, layout.warnings, strict=True):
        assert words in warning


def test_journal_field_is_the_path_itself() -> None:
    path = f"{G}/{G}/manual/{RUN}/logs/e/journal.json"
    assert derive_layout(path).journal == path


@pytest.mark.parametrize(
    "path",
    [
        "journal.json",
        "logs/journal.json",
        f"{G}/dom/task_{U}/logs/e/other.json",
        "a/b/e/journal.json",
    ],
)
def test_paths_that_are_not_journals_are_refused(path: str) -> None:
    assert not is_journal_path(path.split("/"))
    with pytest.raises(ValueError, match="not a journal path"):
        derive_layout(path)


_name = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_."),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))
_plain = _name.filter(lambda s: "_run-group_" not in s)
_uuid = st.uuids().map(str)


@given(
    prefix=st.lists(_plain, max_size=3),
    stamp=_plain,
    agent=_name,
    domain=_plain,
    task=_name,
    run_uuid=_uuid,
    experiment=_plain,
    doubled=st.booleans(),
)
def test_any_names_and_depths_are_recovered(
    prefix: list[str],
    stamp: str,
    agent: str,
    domain: str,
    task: str,
    run_uuid: str,
    experiment: str,
    doubled: bool,
) -> None:
    """Nothing is assumed about years, agent names, task names or nesting depth."""
    group = f"{stamp}_run-group_{agent}"
    folders = [*prefix, group, *([group] if doubled else []), domain, f"{task}_{run_uuid}"]
    layout = derive_layout("/".join([*folders, "logs", experiment, "journal.json"]))
    assert (layout.run_group, layout.agent, layout.domain) == (group, agent, domain)
    assert (layout.task, layout.run_uuid, layout.experiment) == (task, run_uuid, experiment)
    assert layout.task_id == f"{domain}/{task}"
    assert layout.warnings == ()


@given(
    st.lists(
        st.tuples(st.lists(_name, max_size=3).map(tuple), _name),
        min_size=2,
        max_size=8,
        unique=True,
    )
)
def test_distinct_journals_never_share_a_report(runs: list[tuple[tuple[str, ...], str]]) -> None:
    paths = {"/".join([*folders, "logs", exp, "journal.json"]) for folders, exp in runs}
    reports = {derive_layout(p).report for p in paths}
    assert len(reports) == len(paths)


def test_two_runs_of_one_task_get_two_reports() -> None:
    a = derive_layout(f"{G}/{G}/manual/task_{U}/logs/e/journal.json")
    b = derive_layout(f"{G}/{G}/manual/task_{U[:-1]}0/logs/e/journal.json")
    assert a.task_id == b.task_id
    assert a.report != b.report
