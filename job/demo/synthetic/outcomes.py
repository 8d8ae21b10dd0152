"""How each synthetic run ends: its failure mode, its run.log and its submission folder.

Written the way biomlbench writes them (``biomlbench/agents.py``, ``agents/run.py``,
``agents/*/start.sh``), so the verdicts (:mod:`job.model.verdict`) are tested on
logs shaped like the real ones:

* run.log lines are ``[YYYY-MM-DD HH:MM:SS,mmm] [file.py:line] message``; the
  agent's stdout is one line each, prefixed ``[Container] ``; start scripts run
  with ``set -x`` (``+ timeout 28800 ...``);
* a run without submission ends ``Agent success unclear: No submission file found``
  then ``[Worker 0] Agent completed without exception but failed internally ...``;
  a harness exception logs ``<class '...'>``, the traceback, then ``Run failed for
  seed S, agent A and task T``; success logs ``Agent succeeded: Valid submission
  file found``; ``Run completed in N seconds.`` when the container finished;
* AIDE and Biomni print ``Timed out after 12hrs 0mins 0secs``, STELLA ``STELLA timed
  out after ...``, MLAgentBench nothing (its run simply lasts its whole limit);
* out of memory shows as bash's ``Killed`` line, AIDE's ``REPL child process died
  unexpectedly`` or a final ``MemoryError`` / CUDA OOM / ``No space left on device``.

The mode of a run is drawn from its own seed, so the rest of the generator's
output (journals, ground truth) does not change with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from job.demo.synthetic.catalog import Task

SUCCEEDED = "succeeded"
#: Per agent, how often each mode occurs (roughly the biomlbench paper's chart,
#: plus some successful runs inside the failed groups and a few infrastructure failures).
MODE_WEIGHTS: dict[str, dict[str, float]] = {
    "aide": {
        SUCCEEDED: 0.12,
        "code_exception": 0.2,
        "submission_error": 0.1,
        "time_limit": 0.2,
        "resource_exhaustion": 0.28,
        "did_not_finish": 0.05,
        "infrastructure": 0.05,
    },
    "biomni": {
        SUCCEEDED: 0.12,
        "code_exception": 0.35,
        "time_limit": 0.18,
        "did_not_finish": 0.15,
        "resource_exhaustion": 0.1,
        "submission_error": 0.05,
        "infrastructure": 0.05,
    },
    "stella": {
        SUCCEEDED: 0.1,
        "code_exception": 0.28,
        "did_not_finish": 0.35,
        "submission_error": 0.12,
        "time_limit": 0.1,
        "infrastructure": 0.05,
    },
    "mlagentbench": {
        SUCCEEDED: 0.1,
        "did_not_finish": 0.42,
        "time_limit": 0.42,
        "infrastructure": 0.06,
    },
}
_MODE_SALT = 0x0DE5


def draw_mode(agent: str, rng_seed: int) -> str:
    """The run's mode before AIDE's journal is taken into account (see :func:`aide_mode`)."""
    rng = random.Random(rng_seed ^ _MODE_SALT)
    weights = MODE_WEIGHTS[agent]
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def aide_mode(drawn: str, has_good: bool) -> str:
    """AIDE can only submit (or fail to) what its journal found; without a valid step it crashed."""
    if not has_good and drawn in (SUCCEEDED, "did_not_finish", "submission_error"):
        return "code_exception"
    if has_good and drawn == "code_exception":
        return "did_not_finish"
    return drawn


def time_limit(agent: str, task: Task) -> int:
    """biomlbench's TIME_LIMIT_SECS: 12 h (16 h STELLA), 8 h polarishub/proteingym/manual, 16 h kaggle."""
    if task.domain == "kaggle":
        return 16 * 3600
    if task.domain.startswith(("polarishub", "proteingym")) or task.domain == "manual":
        return 8 * 3600
    return (16 if agent == "stella" else 12) * 3600


@dataclass(frozen=True)
class Ending:
    """What a run leaves besides its journal: run.log, the agent log's last words, submission/."""

    run_log: str
    agent_tail: str  # appended to the agent's own log ("" for AIDE)
    submission: dict[str, bytes | None]  # name -> bytes; None: a real submission CSV


_START_SCRIPT = {
    "aide": "aide data_dir=/home/data/ desc_file=/home/agent/full_instructions.txt",
    "biomni": "python /home/agent/start.py --model claude-sonnet-4",
    "stella": "python /home/agent/start.py --max-steps 60",
    "mlagentbench": "python -u -m MLAgentBench.runner --python /opt/conda/bin/python",
}
_TB = "Traceback (most recent call last):"


class _Log:
    """run.log as biomlbench's logger writes it, timestamps moving forward."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.t = start
        self.lines: list[str] = []

    def _stamp(self) -> str:
        when = datetime.fromtimestamp(self.t, tz=UTC)
        return when.strftime("%Y-%m-%d %H:%M:%S") + f",{int(self.t * 1000) % 1000:03d}"

    def harness(self, msg: str, where: str = "agents.py:412", dt: float = 0.5) -> None:
        self.t += dt
        self.lines.append(f"[{self._stamp()}] [{where}] {msg}")

    def container(self, msg: str, dt: float = 1.0) -> None:
        self.t += dt
        self.lines.append(f"[{self._stamp()}] [agents.py:377] [Container] {msg}")

    def raw(self, msg: str) -> None:
        self.lines.append(msg)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def ending(
    rng: random.Random,
    *,
    agent: str,
    task: Task,
    seed: int,
    mode: str,
    start: float,
    traceback: str = "",
) -> Ending:
    """Render the run's end for ``mode``; ``traceback`` is the crash a code_exception ends in."""
    limit = time_limit(agent, task)
    log = _Log(start)
    log.harness(
        f"[Worker 0] Running seed {seed} for {task.task_id} and agent {agent}", "run.py:88", 0
    )
    infra = rng.choice(("grading", "image", "key_missing", "key_rejected"))
    if mode == "infrastructure" and infra in ("grading", "image"):
        return _harness_failure(log, rng, agent, task, seed, infra)
    log.container(f"+ export TIME_LIMIT_SECS={limit}")
    log.container(f"+ timeout {limit} {_START_SCRIPT[agent]}")
    if mode == "infrastructure":
        if infra == "key_missing":
            var = {"aide": "OPENAI_API_KEY", "mlagentbench": "OPENAI_API_KEY"}.get(
                agent, "ANTHROPIC_API_KEY"
            )
            log.container(f"Error: environment variable {var} is not set")
        else:
            for line in _AUTH_TB:
                log.container(line, 0)
        return _no_submission(log, agent, task, seed, {}, "")
    steps = rng.randrange(6, 30)
    span = limit if mode == "time_limit" else rng.uniform(0.05, 0.6) * limit
    for i in range(steps):
        log.container(_progress(rng, agent, i + 1, steps), span / (steps + 1))
    agent_tail = ""
    submission: dict[str, bytes | None] = {}
    if mode == SUCCEEDED:
        submission = {"submission.csv": None}
        log.container("Saved predictions to /home/submission/submission.csv")
        log.harness("Agent succeeded: Valid submission file found")
        log.harness(f"Run completed in {int(log.t - log.start) + 12} seconds.", dt=12)
        return Ending(log.text(), "", submission)
    if mode == "time_limit":
        log.t = max(log.t, log.start + limit)  # `timeout` ends it at its limit
        hours = limit // 3600
        if agent in ("aide", "biomni"):
            log.container(f"Timed out after {hours}hrs 0mins 0secs", 1)
        elif agent == "stella":
            log.container(f"STELLA timed out after {hours} hours", 1)
        # mlagentbench prints nothing: the run just lasted its whole limit.
    elif mode == "resource_exhaustion":
        agent_tail = _resource(log, rng, agent)
    elif mode == "submission_error":
        submission = rng.choice(
            (
                {"submission.csv": b""},
                {"predictions.csv": b"id,prediction\n0,0.5\n"},
                {"submission.tsv": b"id\tprediction\n0\t0.5\n"},
            )
        )
        name = next(iter(submission))
        log.container(f"Saved predictions to /home/submission/{name}")
    elif mode == "code_exception" and agent != "aide":
        for line in traceback.rstrip("\n").split("\n"):
            log.container(line, 0)
        agent_tail = traceback
    elif mode == "did_not_finish" and agent in ("stella", "biomni") and rng.random() < 0.6:
        line = (
            "smolagents.utils.AgentMaxStepsError: Reached max steps."
            if agent == "stella"
            else "langgraph.errors.GraphRecursionError: Recursion limit of 50 reached without "
            "hitting a stop condition."
        )
        log.container(_TB, 0)
        log.container('  File "/home/agent/start.py", line 112, in main', 0)
        log.container(line, 0)
        agent_tail = f'{_TB}\n  File "/home/agent/start.py", line 112, in main\n{line}\n'
    elif mode == "did_not_finish" and agent != "aide":
        log.container("Final answer: I could not produce predictions for the test set.")
    return _no_submission(log, agent, task, seed, submission, agent_tail)


def _no_submission(
    log: _Log, agent: str, task: Task, seed: int, submission: dict[str, bytes | None], tail: str
) -> Ending:
    log.harness("Agent success unclear: No submission file found")
    log.harness(
        f"[Worker 0] Agent completed without exception but failed internally for seed {seed}, "
        f"task {task.task_id}, agent {agent}",
        "run.py:141",
        0,
    )
    log.harness(f"Run completed in {int(log.t - log.start) + 3} seconds.", dt=3)
    return Ending(log.text(), tail, submission)


def _harness_failure(
    log: _Log, rng: random.Random, agent: str, task: Task, seed: int, kind: str
) -> Ending:
    if kind == "grading":
        log.harness(
            "The grading server failed to start within 60 seconds. Check the server logs.",
            "grading.py:77",
        )
        exc = "RuntimeError: grading server did not start"
        cls = "RuntimeError"
    else:
        exc = (
            "docker.errors.ImageNotFound: 404 Client Error for http+docker://localhost/v1.47/"
            f'containers/create: Not Found ("No such image: biomlbench-{agent}:latest")'
        )
        cls = "docker.errors.ImageNotFound"
    log.harness(f"<class '{cls}'>", "run.py:150")
    log.raw(_TB)
    log.raw('  File "/app/biomlbench/agents/run.py", line 120, in run_agent')
    log.raw("    container = create_competition_container(...)")
    log.raw(exc)
    log.harness(
        f"Run failed for seed {seed}, agent {agent} and task {task.task_id}", "run.py:152", 0
    )
    return Ending(log.text(), "", {})


_AUTH_TB = (
    _TB,
    '  File "/home/agent/start.py", line 88, in main',
    "openai.AuthenticationError: Error code: 401 - {'error': {'message': 'Incorrect API key "
    "provided: sk-proj-****', 'type': 'invalid_request_error', 'code': 'invalid_api_key'}}",
)


def _resource(log: _Log, rng: random.Random, agent: str) -> str:
    """The kernel's or the runtime's last word; returns what the agent's own log ends with."""
    if agent == "aide":
        if rng.random() < 0.5:
            log.container(
                "/home/agent/start.sh: line 31:   412 Killed                  "
                + _START_SCRIPT["aide"]
            )
            return ""
        lines = [
            _TB,
            '  File "/opt/conda/lib/python3.11/site-packages/aide/interpreter.py", line 291, in run',
            '    raise RuntimeError("REPL child process died unexpectedly")',
            "RuntimeError: REPL child process died unexpectedly",
        ]
    else:
        last = rng.choice(
            (
                "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 81.2 GiB for an "
                "array with shape (104000, 104857) and data type float64",
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 "
                "has a total capacity of 79.15 GiB of which 1.02 GiB is free.",
                "OSError: [Errno 28] No space left on device",
                "MemoryError",
            )
        )
        lines = [_TB, '  File "/home/agent/start.py", line 131, in main', last]
    for line in lines:
        log.container(line, 0)
    return "\n".join(lines) + "\n"


_AIDE_PROGRESS = (
    "INFO: Agent is generating code, parent node type: <class 'NoneType'>",
    "INFO: Agent is generating code, parent node type: <class 'aide.journal.Node'>",
    "INFO: Drafting a new solution",
    "INFO: Debugging the buggy node",
    "INFO: Improving the best node",
)


def _progress(rng: random.Random, agent: str, i: int, n: int) -> str:
    if agent == "aide":
        return f"[step {i}/{n}] " + rng.choice(_AIDE_PROGRESS)
    if agent == "stella":
        return f"Step {i}: executing code in the sandbox"
    if agent == "biomni":
        return f"<execute> step {i}: running analysis on the training data"
    return f"Step {i}: Action: Execute Script (train.py)"
