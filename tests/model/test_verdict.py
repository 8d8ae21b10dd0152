"""job.model.verdict + job.model.run_evidence: why each run failed, from its files.

Why these checks: the index page's headline and per-agent chart count these
verdicts, so each failure mode is pinned for every agent it occurs in, written
the way biomlbench writes it (run.log lines ``[stamp] [file:line] msg``, the
agent's stdout as ``[Container] ...``, start-script messages, submission
folders). The precedence rules are checked with runs that carry several signals
(a timed-out AIDE run whose debug loop raised), and every evidence pointer is
checked by opening the file and reading line N.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from job.model import verdict as v
from job.model.run_evidence import numbered_tail, read_evidence
from job.model.verdict import JournalFacts, decide

TASK = "polarishub/tdcommons-caco2-wang"
START = "2025-08-25 17:09:05,101"
HARNESS = "[2025-08-25 {t},000] [agents.py:{n}] "


def h(msg: str, t: str = "17:09:06", n: int = 412) -> str:
    return HARNESS.format(t=t, n=n) + msg


def c(msg: str, t: str = "17:09:07") -> str:
    return h("[Container] " + msg, t=t, n=377)


def opening(agent: str, limit: int = 28800) -> list[str]:
    return [
        f"[{START}] [run.py:88] [Worker 0] Running seed 0 for {TASK} and agent {agent}",
        c(f"+ timeout {limit} python start.py"),
        c("Loading task description"),
    ]


def failed_internally(agent: str, t: str = "17:40:00") -> list[str]:
    return [
        h("Agent success unclear: No submission file found", t=t),
        h(
            f"[Worker 0] Agent completed without exception but failed internally for seed 0, "
            f"task {TASK}, agent {agent}",
            t=t,
        ),
    ]


def make_run(
    root: Path,
    lines: list[str] | None,
    *,
    submission: dict[str, bytes] | None = None,
    agent_log: list[str] | None = None,
) -> Path:
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    if lines is not None:
        (run / "run.log").write_text("\n".join(lines) + "\n")
    sub = run / "submission"
    sub.mkdir(exist_ok=True)
    for name, body in (submission or {}).items():
        (sub / name).write_bytes(body)
    if agent_log is not None:
        (run / "logs").mkdir(exist_ok=True)
        (run / "logs" / "agent.log").write_text("\n".join(agent_log) + "\n")
    return run


def verdict_of(
    run: Path,
    agent: str,
    *,
    success: bool | None = False,
    journal: JournalFacts | None = None,
) -> v.Verdict:
    return decide(read_evidence(run, agent, TASK, success, journal))


def assert_points_at(run: Path, verdict: v.Verdict, needle: str) -> None:
    """Open the evidence file and check line N holds the evidence (and the needle)."""
    assert verdict.evidence_file is not None, verdict
    assert verdict.evidence_line is not None, verdict
    lines = (run / verdict.evidence_file).read_text().split("\n")
    line = lines[verdict.evidence_line - 1]
    assert needle in line, (verdict, line)
    assert verdict.evidence.rstrip("…") in line


TRACE = [
    "Traceback (most recent call last):",
    '  File "/home/agent/start.py", line 88, in main',
    "    result = agent.run(task_description)",
]
AIDE_STEPS_WITH_ERRORS = JournalFacts(steps=40, valid_solution=True)
AIDE_NO_VALID = JournalFacts(steps=25, valid_solution=False)
ALL_AGENTS = ["aide", "biomni", "stella", "mlagentbench"]


@pytest.mark.parametrize("agent", ALL_AGENTS)
def test_succeeded_by_submission(tmp_path: Path, agent: str) -> None:
    run = make_run(tmp_path, opening(agent), submission={"submission.csv": b"id,y\n1,2\n"})
    out = verdict_of(run, agent, success=True, journal=AIDE_STEPS_WITH_ERRORS)
    assert out.mode == "succeeded"
    assert out.evidence_file == "submission/submission.csv"


def test_succeeded_without_metadata_flag_uses_biomlbench_rule(tmp_path: Path) -> None:
    run = make_run(tmp_path, opening("biomni"), submission={"submission.h5ad": b"\x89HDF"})
    assert verdict_of(run, "biomni", success=None).mode == "succeeded"


@pytest.mark.parametrize("agent", ALL_AGENTS)
@pytest.mark.parametrize(
    ("line", "cause"),
    [
        (
            "The grading server failed to start within 60 seconds. Check its logs.",
            "grading server did not start",
        ),
        (
            "docker.errors.ImageNotFound: 404 Client Error: No such image: biomlbench-env",
            "docker image missing",
        ),
        ("Error: environment variable OPENAI_API_KEY is not set", "API key missing"),
        ("openai.AuthenticationError: Error code: 401 - invalid api key", "API key rejected"),
    ],
)
def test_infrastructure_even_as_a_traceback(
    tmp_path: Path, agent: str, line: str, cause: str
) -> None:
    lines = [*opening(agent), c(TRACE[0]), *TRACE[1:], c(line), *failed_internally(agent)]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, agent, journal=AIDE_NO_VALID if agent == "aide" else None)
    assert (out.mode, out.cause) == ("infrastructure", cause)
    assert_points_at(run, out, line[:30])


@pytest.mark.parametrize(
    ("agent", "message", "cause"),
    [
        ("aide", "Timed out after 8hrs 0mins 0secs", "timed out after 8 h"),
        ("biomni", "Timed out after 12hrs 0mins 0secs", "timed out after 12 h"),
        ("stella", "STELLA timed out after 16 hours", "timed out after 16 h"),
    ],
)
def test_time_limit_message_beats_step_errors(
    tmp_path: Path, agent: str, message: str, cause: str
) -> None:
    # AIDE's debug loop raised on the way (journal has errors, even OOM in a step's
    # output would be in its own logs, not read): the run still timed out.
    lines = [
        *opening(agent),
        c(TRACE[0]),
        *TRACE[1:],
        c("NameError: name 'X_val' is not defined"),
        c(message, t="01:09:05"),
        *failed_internally(agent, t="01:09:06"),
    ]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, agent, journal=AIDE_STEPS_WITH_ERRORS if agent == "aide" else None)
    assert (out.mode, out.cause) == ("time_limit", cause)
    assert_points_at(run, out, message)


def test_mlagentbench_time_limit_by_duration(tmp_path: Path) -> None:
    # MLAgentBench's start script prints nothing: the run just lasts its whole limit.
    lines = [
        *opening("mlagentbench", limit=28800),
        c("Step 212", t="17:10:00"),
        h("Agent success unclear: No submission file found", t="01:09:06").replace(
            "2025-08-25 01", "2025-08-26 01"
        ),
    ]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, "mlagentbench")
    assert out.mode == "time_limit"
    assert out.cause == "ran its whole time limit (8 h)"


def test_short_run_is_not_a_time_limit(tmp_path: Path) -> None:
    lines = [*opening("mlagentbench"), c("Step 3"), *failed_internally("mlagentbench")]
    out = verdict_of(make_run(tmp_path, lines), "mlagentbench")
    assert out.mode == "did_not_finish"


@pytest.mark.parametrize(
    ("agent", "last", "cause"),
    [
        ("aide", "RuntimeError: REPL child process died unexpectedly", "killed (out of memory)"),
        (
            "aide",
            "/home/agent/start.sh: line 42:   311 Killed                  python -m aide",
            "killed (out of memory)",
        ),
        (
            "biomni",
            "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 81.2 GiB",
            "out of memory",
        ),
        (
            "stella",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "GPU out of memory",
        ),
        ("mlagentbench", "OSError: [Errno 28] No space left on device", "disk full"),
    ],
)
def test_resource_exhaustion_even_as_a_traceback(
    tmp_path: Path, agent: str, last: str, cause: str
) -> None:
    lines = [*opening(agent), c(TRACE[0]), *TRACE[1:], c(last), *failed_internally(agent)]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, agent, journal=AIDE_STEPS_WITH_ERRORS if agent == "aide" else None)
    assert (out.mode, out.cause) == ("resource_exhaustion", cause)
    assert_points_at(run, out, last[:20])


def test_an_early_survived_oom_does_not_decide(tmp_path: Path) -> None:
    noise = [c(f"Step {i}: thinking") for i in range(v.FINAL_WINDOW + 5)]
    lines = [*opening("biomni"), c("MemoryError"), *noise, *failed_internally("biomni")]
    assert verdict_of(make_run(tmp_path, lines), "biomni").mode == "did_not_finish"


@pytest.mark.parametrize("agent", ALL_AGENTS)
@pytest.mark.parametrize(
    ("files", "cause"),
    [
        ({"submission.csv": b""}, "empty submission.csv"),
        (
            {"predictions.csv": b"id,y\n1,2\n"},
            "no submission.csv or submission.h5ad (found predictions.csv)",
        ),
        (
            {"submission.json": b"{}"},
            "no submission.csv or submission.h5ad (found submission.json)",
        ),
    ],
)
def test_submission_error(tmp_path: Path, agent: str, files: dict[str, bytes], cause: str) -> None:
    run = make_run(tmp_path, [*opening(agent), *failed_internally(agent)], submission=files)
    out = verdict_of(run, agent, journal=AIDE_STEPS_WITH_ERRORS if agent == "aide" else None)
    assert (out.mode, out.cause) == ("submission_error", cause)
    assert out.evidence_file is not None
    assert (run / out.evidence_file).is_file()


@pytest.mark.parametrize("agent", ["biomni", "stella", "mlagentbench"])
def test_code_exception_is_the_last_word(tmp_path: Path, agent: str) -> None:
    last = (
        "openai.BadRequestError: Error code: 400 - {'error': {'code': 'context_length_exceeded'}}"
    )
    lines = [
        *opening(agent),
        c(TRACE[0]),
        *[c(t) for t in TRACE[1:]],
        c(last),
        *failed_internally(agent),
    ]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, agent)
    assert (out.mode, out.cause) == (
        "code_exception",
        "openai.BadRequestError: context_length_exceeded",
    )
    assert_points_at(run, out, "BadRequestError")


def test_code_exception_from_agent_log(tmp_path: Path) -> None:
    log = ["step 1", *TRACE, "ModuleNotFoundError: No module named 'gseapy'"]
    run = make_run(tmp_path, [*opening("biomni"), *failed_internally("biomni")], agent_log=log)
    out = verdict_of(run, "biomni")
    assert out.mode == "code_exception"
    assert out.evidence_file == "logs/agent.log"
    assert_points_at(run, out, "gseapy")


def test_harness_exception_then_run_failed(tmp_path: Path) -> None:
    lines = [
        *opening("stella"),
        h("<class 'ValueError'>"),
        "Traceback (most recent call last):",
        '  File "/app/biomlbench/agents/run.py", line 120, in run_agent',
        "ValueError: could not parse agent output",
        h("Run failed for seed 0, agent stella and task " + TASK),
    ]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, "stella")
    assert out.mode == "code_exception"
    assert_points_at(run, out, "ValueError: could not parse")


def test_harness_traceback_logged_on_a_prefixed_line(tmp_path: Path) -> None:
    # logger.error(traceback.format_exc()): only the traceback's first line has the prefix.
    lines = [
        *opening("biomni"),
        h("<class 'KeyError'>"),
        h("Traceback (most recent call last):"),
        '  File "/app/biomlbench/agents/run.py", line 120, in run_agent',
        "KeyError: 'submission_path'",
        h("Run failed for seed 0, agent biomni and task " + TASK),
    ]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, "biomni")
    assert out.mode == "code_exception"
    assert_points_at(run, out, "KeyError: 'submission_path'")


def test_aide_no_valid_solution_is_code_exception(tmp_path: Path) -> None:
    run = make_run(tmp_path, [*opening("aide"), *failed_internally("aide")])
    out = verdict_of(run, "aide", journal=AIDE_NO_VALID)
    assert out.mode == "code_exception"
    assert out.cause == "no valid solution in 25 steps, nothing submitted"
    assert_points_at(run, out, "failed internally")


def test_aide_valid_solution_not_submitted_did_not_finish(tmp_path: Path) -> None:
    run = make_run(tmp_path, [*opening("aide"), *failed_internally("aide")])
    out = verdict_of(run, "aide", journal=AIDE_STEPS_WITH_ERRORS)
    assert out.mode == "did_not_finish"
    assert "valid solution in 40 steps" in out.cause


@pytest.mark.parametrize(
    ("agent", "last"),
    [
        ("stella", "smolagents.utils.AgentMaxStepsError: Reached max steps."),
        ("biomni", "langgraph.errors.GraphRecursionError: Recursion limit of 50 reached"),
    ],
)
def test_step_limit_is_did_not_finish(tmp_path: Path, agent: str, last: str) -> None:
    lines = [*opening(agent), c(TRACE[0]), c(last), *failed_internally(agent)]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, agent)
    assert (out.mode, out.cause) == ("did_not_finish", "hit the agent's step limit")
    assert_points_at(run, out, last[:20])


@pytest.mark.parametrize("agent", ["biomni", "stella", "mlagentbench"])
def test_gave_up_is_did_not_finish(tmp_path: Path, agent: str) -> None:
    run = make_run(tmp_path, [*opening(agent), c("I am done."), *failed_internally(agent)])
    out = verdict_of(run, agent)
    assert out.mode == "did_not_finish"
    assert_points_at(run, out, "failed internally")


def test_precedence_infrastructure_over_time_limit(tmp_path: Path) -> None:
    lines = [
        *opening("aide"),
        c("Timed out after 12hrs 0mins 0secs"),
        h("The grading server failed to start within 60 seconds"),
    ]
    assert verdict_of(make_run(tmp_path, lines), "aide", journal=AIDE_NO_VALID).mode == (
        "infrastructure"
    )


def test_precedence_resource_over_submission_and_crash(tmp_path: Path) -> None:
    lines = [*opening("biomni"), c(TRACE[0]), c("MemoryError"), *failed_internally("biomni")]
    run = make_run(tmp_path, lines, submission={"submission.csv": b""})
    assert verdict_of(run, "biomni").mode == "resource_exhaustion"


def test_precedence_submission_over_crash(tmp_path: Path) -> None:
    lines = [*opening("stella"), c(TRACE[0]), c("KeyError: 'y'"), *failed_internally("stella")]
    run = make_run(tmp_path, lines, submission={"submission.csv": b""})
    assert verdict_of(run, "stella").mode == "submission_error"


def test_tool_timeout_in_a_conversation_is_not_the_time_limit(tmp_path: Path) -> None:
    lines = [
        *opening("biomni"),
        c("Observation: command timed out after 600 seconds"),
        *failed_internally("biomni"),
    ]
    assert verdict_of(make_run(tmp_path, lines), "biomni").mode == "did_not_finish"


def test_missing_logs_are_unknown_with_a_reason(tmp_path: Path) -> None:
    run = make_run(tmp_path, None)
    out = verdict_of(run, "biomni")
    assert out.mode == "unknown"
    assert "no run.log" in out.cause


def test_missing_run_folder_is_unknown(tmp_path: Path) -> None:
    out = verdict_of(tmp_path / "absent", "stella")
    assert out.mode == "unknown"
    assert "run folder not in the archive" in out.cause


def test_garbled_log_is_unknown_with_a_reason(tmp_path: Path) -> None:
    run = make_run(tmp_path, None)
    (run / "run.log").write_bytes(b"\x00\xff\xfe" * 5000)
    out = verdict_of(run, "mlagentbench")
    assert out.mode == "unknown"
    assert "run.log is not text" in out.cause


def test_log_cut_short_is_unknown(tmp_path: Path) -> None:
    out = verdict_of(make_run(tmp_path, opening("biomni")), "biomni")
    assert out.mode == "unknown"
    assert "no end-of-run message" in out.cause


def test_line_numbers_of_a_long_log_count_from_its_start(tmp_path: Path) -> None:
    # Far more than the tail read: the number must still be the line's number in the file.
    noise = [c(f"Step {i}: " + "x" * 200) for i in range(3000)]
    lines = [
        *opening("stella"),
        *noise,
        c("STELLA timed out after 16 hours"),
        *failed_internally("stella"),
    ]
    run = make_run(tmp_path, lines)
    out = verdict_of(run, "stella")
    assert out.mode == "time_limit"
    assert out.evidence_line == len(opening("stella")) + 3000 + 1
    assert_points_at(run, out, "STELLA timed out")


def test_numbered_tail_counts_lines_before_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(1, 50_001)))
    tail = numbered_tail(path, "x.log", limit=1000)
    assert tail.lines[-1] == v.LogLine("x.log", 50_000, "line 50000")
    assert all(line.text == f"line {line.number}" for line in tail.lines)
