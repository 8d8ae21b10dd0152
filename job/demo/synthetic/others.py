"""Runs of agents other than AIDE (biomni, stella, mlagentbench): no journal, just logs.

What a parser can learn from these is in ``run.log`` (biomlbench's worker output
with the agent's stdout in between) and the agent's own log: both end in the
error that killed the run, either a Python traceback or an ``ERROR ...`` line.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from job.demo.synthetic.catalog import Task
from job.demo.synthetic.failures import Frame, format_traceback
from job.demo.synthetic.terminal import SITE


@dataclass(frozen=True)
class AgentFailure:
    exc_type: str
    traceback: str  # "" when the run ended with an ERROR line only
    error_line: str  # last line of run.log


def _tb(frames: list[Frame], line: str) -> str:
    return format_traceback(frames, line)


def _lib(path: str, line: int, func: str, source: str) -> Frame:
    return Frame(f"{SITE}/{path}", line, func, source)


def draw_failure(rng: random.Random, agent: str, task: Task, run_id: str) -> AgentFailure:
    """The error that ended this agent's run, in that agent's idiom."""
    start = Frame(
        "/home/agent/start.py",
        rng.choice((88, 112, 131)),
        "main",
        "result = agent.run(task_description)",
    )
    choices = []
    if agent == "biomni":
        tokens = rng.randrange(200_100, 260_000)
        choices += [
            (
                "BadRequestError",
                [
                    start,
                    Frame(
                        "/home/agent/biomni/agent/a1.py",
                        1408,
                        "go",
                        'for s in self.app.stream(inputs, stream_mode="values", config=config):',
                    ),
                    _lib(
                        "anthropic/_base_client.py",
                        1047,
                        "_request",
                        "raise self._make_status_error_from_response(err.response) from None",
                    ),
                ],
                f"anthropic.BadRequestError: Error code: 400 - {{'type': 'error', 'error': {{'type': 'invalid_request_error', 'message': 'prompt is too long: {tokens} tokens > 200000 maximum'}}}}",
            ),
            (
                "GraphRecursionError",
                [
                    start,
                    Frame(
                        "/home/agent/biomni/agent/a1.py",
                        1408,
                        "go",
                        'for s in self.app.stream(inputs, stream_mode="values", config=config):',
                    ),
                    _lib(
                        "langgraph/pregel/__init__.py",
                        1724,
                        "stream",
                        "raise GraphRecursionError(msg)",
                    ),
                ],
                "langgraph.errors.GraphRecursionError: Recursion limit of 50 reached without hitting a stop condition. You can increase the limit by setting the `recursion_limit` config key.",
            ),
        ]
    elif agent == "stella":
        choices += [
            (
                "AgentMaxStepsError",
                [
                    start,
                    _lib(
                        "smolagents/agents.py",
                        1182,
                        "run",
                        "return deque(self._run(task=self.task, max_steps=max_steps, images=images), maxlen=1)[0].final_answer",
                    ),
                    _lib(
                        "smolagents/agents.py",
                        398,
                        "_run",
                        "final_answer = self._handle_max_steps_reached(task, images, step_start_time)",
                    ),
                ],
                "smolagents.utils.AgentMaxStepsError: Reached max steps.",
            ),
            (
                "InterpreterError",
                [
                    start,
                    _lib(
                        "smolagents/local_python_executor.py",
                        1450,
                        "evaluate_python_code",
                        "raise InterpreterError(",
                    ),
                ],
                "smolagents.local_python_executor.InterpreterError: Code execution failed at line 'import scanpy as sc' due to: InterpreterError: Import of scanpy is not allowed. Authorized imports are: ['numpy', 'pandas', 'sklearn', 'scipy']",
            ),
        ]
    else:
        choices += [
            (
                "EnvException",
                [
                    start,
                    Frame(
                        "/home/agent/MLAgentBench/environment.py",
                        325,
                        "execute",
                        "observation = self.action_infos[action_name].function(**action_input, log_file=log_file, trace=trace, **kwargs)",
                    ),
                    Frame(
                        "/home/agent/MLAgentBench/high_level_actions.py",
                        141,
                        "understand_file",
                        'raise EnvException(f"cannot read file {file_name}")',
                    ),
                ],
                f"MLAgentBench.schema.EnvException: cannot read file {task.id_col}_descriptions.txt",
            ),
            (
                "TooLongPromptError",
                [
                    start,
                    Frame(
                        "/home/agent/MLAgentBench/LLM.py",
                        198,
                        "complete_text_claude",
                        "raise TooLongPromptError()",
                    ),
                ],
                "MLAgentBench.schema.TooLongPromptError",
            ),
        ]
    choices += [
        (
            "RateLimitError",
            [
                start,
                _lib(
                    "openai/_base_client.py",
                    1059,
                    "_request",
                    "raise self._make_status_error_from_response(err.response) from None",
                ),
            ],
            "openai.RateLimitError: Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o in organization org-xxxx on tokens per min (TPM): Limit 800000, Used 799200, Requested 21873. Please try again in 1.605s.', 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}",
        ),
        (
            "ModuleNotFoundError",
            [
                start,
                Frame(f"/home/agent/{agent}/tools/bio.py", 12, "<module>", "import gseapy as gp"),
            ],
            "ModuleNotFoundError: No module named 'gseapy'",
        ),
        ("TimeoutError", [], ""),
    ]
    exc_type, frames, line = rng.choice(choices)
    if exc_type == "TimeoutError":
        hours = rng.choice((4, 12, 24))
        return AgentFailure(
            "TimeoutError",
            "",
            f"ERROR: Agent {agent} timed out after {hours}h for run {run_id}; container killed",
        )
    text = _tb(frames, line)
    if rng.random() < 0.5:
        return AgentFailure(exc_type, text, line)
    return AgentFailure(
        exc_type, text, f"ERROR: Run {run_id} failed: {line.split(': ', 1)[0].rsplit('.', 1)[-1]}"
    )


#: Ways out that are not a crash: the run's verdict would be a time limit or a step limit.
_NOT_A_CRASH = {"TimeoutError", "AgentMaxStepsError", "GraphRecursionError"}


def crash_traceback(rng: random.Random, agent: str, task: Task, run_id: str) -> str:
    """A traceback for a run whose agent crashed (a code exception, not a step or time limit)."""
    for _ in range(50):
        failure = draw_failure(rng, agent, task, run_id)
        if failure.exc_type not in _NOT_A_CRASH and failure.traceback:
            return failure.traceback
    return _tb([], "RuntimeError: the agent crashed")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


_THOUGHTS = (
    "I need to understand the data files first. Let me list the input directory.",
    "The training data has {n} rows. I'll check the target distribution before modelling.",
    "Let me write a baseline script that trains a gradient boosting model on fingerprints.",
    "The previous script failed; I'll inspect the error and fix the import.",
    "I should validate with cross-validation and save predictions to submission.csv.",
    "The score improved to {v:.4f}. Next I'll try adding descriptors.",
    "Reading the task description again: the metric is {metric}, so I'll optimise for it.",
)


def agent_log_chunks(rng: random.Random, agent: str, task: Task, start: float) -> Iterator[str]:
    """The agent's own log: an endless conversation; the caller cuts it to size."""
    t = start
    step = 0
    while True:
        step += 1
        t += rng.uniform(5, 120)
        thought = rng.choice(_THOUGHTS).format(
            n=rng.randrange(400, 70000), v=rng.uniform(0.3, 0.9), metric=task.metric
        )
        if agent == "biomni":
            yield "================================== Ai Message ==================================\n\n"
            yield f"{thought}\n\n<execute>\nimport pandas as pd\ndf = pd.read_csv('/home/data/train.csv')\nprint(df.shape, df['{task.target}'].describe())\n</execute>\n"
            yield "================================ Human Message =================================\n\n"
            yield f"<observation>({rng.randrange(400, 70000)}, {rng.randrange(3, 30)}) count    {rng.randrange(400, 70000)}.000000\nmean        {rng.uniform(-2, 3):.6f}\nstd         {rng.uniform(0.1, 2):.6f}\n</observation>\n"
        elif agent == "stella":
            yield f"━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ Step {step} ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━\n"
            yield f"Thought: {thought}\n ─ Executing parsed code: ─────────────────────────────────────────\n"
            yield f"  df = pd.read_csv('/home/data/train.csv')\n  print(df['{task.target}'].mean())\n ──────────────────────────────────────────────────────────────────\n"
            yield f"Execution logs:\n{rng.uniform(-2, 3):.6f}\n\n[Step {step}: Duration {rng.uniform(1, 40):.2f} seconds| Input tokens: {rng.randrange(2000, 90000):,} | Output tokens: {rng.randrange(50, 3000):,}]\n"
        else:
            yield f"{_stamp(t)} Step {step}\nReflection: {thought}\nResearch Plan and Status: 1. Understand data (done) 2. Baseline (in progress)\n"
            yield f'Action: Execute Script\nAction Input: {{"script_name": "train.py"}}\nObservation: The script has been executed. Here is the output:\nValidation {task.metric}: {rng.uniform(0.2, 0.9):.4f}\n\n'


def run_log(
    rng: random.Random, agent: str, task: Task, seed: int, run_id: str, failure: AgentFailure
) -> str:
    """biomlbench's ``run.log`` for a non-AIDE run: ends in a traceback or an ERROR line."""
    lines = [f"[Worker 0] Running seed {seed} for {task.task_id} and agent {agent}\n"]
    for i in range(rng.randrange(3, 25)):
        lines.append(
            f"[{agent}] step {i + 1}: {rng.choice(_THOUGHTS).format(n=rng.randrange(400, 70000), v=rng.uniform(0.3, 0.9), metric=task.metric)}\n"
        )
    if failure.traceback:
        lines.append(
            f"[Worker 0] Agent raised an exception for seed {seed}, task {task.task_id}, agent {agent}\n"
        )
        lines.append(failure.traceback)
    if failure.error_line != (
        failure.traceback.rstrip("\n").rsplit("\n", 1)[-1] if failure.traceback else None
    ):
        lines.append(failure.error_line + "\n")
    return "".join(lines)
