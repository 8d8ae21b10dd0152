"""An AIDE run: its search tree and every file AIDE leaves in ``logs/<exp>/``.

The tree follows AIDE 0.2's greedy policy (``aide/agent.py``): draft until
``num_drafts`` drafts exist; then, with probability ``debug_prob``, debug a
buggy leaf whose debug depth is below ``max_debug_depth``; otherwise improve
the best good node (or draft again if there is none). Nodes are written as
AIDE's serializer writes them: compact JSON, ``parent: null`` and
``children: []`` in every node, the real edges in ``node2parent``, and
``"__version": "2"``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from job.demo.synthetic import failures, prose
from job.demo.synthetic.catalog import Task, natural_delta, node_id
from job.demo.synthetic.failures import Crash
from job.demo.synthetic.scripts import IMPROVEMENTS, Recipe, new_recipe, render
from job.demo.synthetic.terminal import RunData, execution_time_line, stage_output, timeout_line

NUM_DRAFTS = 5
DEBUG_PROB = 0.5
MAX_DEBUG_DEPTH = 3


@dataclass
class Node:
    """One step: the JSON AIDE writes plus what the simulation needs to remember."""

    json: dict[str, Any]
    recipe: Recipe
    stage: str  # draft | debug | improve
    parent: int | None
    debug_depth: int
    crash: Crash | None
    value: float | None
    children: list[int] = field(default_factory=list)

    @property
    def is_buggy(self) -> bool:
        return bool(self.json["is_buggy"])


@dataclass(frozen=True)
class AideSettings:
    """Per-run knobs drawn once: how hopeless the run is and its baseline quality."""

    hopeless: bool  # every step fails (a broken environment, an impossible task)
    stubborn_kind: str | None  # the failure a hopeless run keeps hitting
    base_value: float
    p_bug_draft: float = 0.55
    p_bug_debug: float = 0.5
    p_bug_improve: float = 0.3
    p_no_submission: float = 0.06


def draw_settings(rng: random.Random, task: Task) -> AideSettings:
    hopeless = rng.random() < 0.2
    base = rng.uniform(0.45, 0.85) if task.maximize else rng.uniform(0.35, 1.4)
    stubborn = (
        rng.choice(("missing_module", "cuda_oom", "timeout", "file_not_found"))
        if hopeless
        else None
    )
    return AideSettings(hopeless=hopeless, stubborn_kind=stubborn, base_value=base)


def simulate(rng: random.Random, task: Task, steps: int, start: float, data: RunData) -> list[Node]:
    """Run AIDE's search policy for ``steps`` steps and render every node."""
    settings = draw_settings(rng, task)
    nodes: list[Node] = []
    clock = start + rng.uniform(20, 120)
    for step in range(steps):
        parent, stage = _select(rng, nodes, task)
        node = _make_node(rng, step, parent, stage, nodes, task, settings, data, clock)
        if parent is not None:
            nodes[parent].children.append(step)
        nodes.append(node)
        clock += node.json["exec_time"] + rng.uniform(8, 95)  # plus the LLM's latency
    return nodes


def _better(task: Task, a: float, b: float) -> bool:
    return a > b if task.maximize else a < b


def best_index(nodes: list[Node], task: Task) -> int | None:
    best: int | None = None
    for i, n in enumerate(nodes):
        if n.value is not None and (
            best is None or _better(task, n.value, nodes[best].value or 0.0)
        ):
            best = i
    return best


def _select(rng: random.Random, nodes: list[Node], task: Task) -> tuple[int | None, str]:
    drafts = sum(1 for n in nodes if n.stage == "draft")
    if drafts < NUM_DRAFTS:
        return None, "draft"
    if rng.random() < DEBUG_PROB:
        debuggable = [
            i
            for i, n in enumerate(nodes)
            if n.is_buggy and not n.children and n.debug_depth < MAX_DEBUG_DEPTH
        ]
        if debuggable:
            return rng.choice(debuggable), "debug"
    best = best_index(nodes, task)
    if best is None:
        return None, "draft"
    return best, "improve"


def _make_node(
    rng: random.Random,
    step: int,
    parent: int | None,
    stage: str,
    nodes: list[Node],
    task: Task,
    s: AideSettings,
    data: RunData,
    clock: float,
) -> Node:
    parent_node = nodes[parent] if parent is not None else None
    what = None
    if stage == "draft" or parent_node is None:
        recipe = new_recipe(rng, task)
        p_bug = s.p_bug_draft
    elif stage == "debug":
        recipe = parent_node.recipe
        if rng.random() < 0.75:  # the LLM re-emits the whole script in its own words
            recipe = recipe.rewritten(rng)
        p_bug = s.p_bug_debug
    else:
        what = rng.choice(IMPROVEMENTS)
        recipe = parent_node.recipe.improved(what, rng)
        if rng.random() < 0.8:
            recipe = recipe.rewritten(rng)
        p_bug = s.p_bug_improve
    buggy = s.hopeless or rng.random() < p_bug
    script = render(recipe)
    crash: Crash | None = None
    value: float | None = None
    no_submission = False
    if buggy:
        if not s.hopeless and rng.random() < s.p_no_submission:
            no_submission = True
        else:
            prefer = s.stubborn_kind
            if (
                prefer is None
                and stage == "debug"
                and parent_node
                and parent_node.crash
                and rng.random() < 0.3
            ):
                prefer = parent_node.crash.kind  # the fix did not work
            kind = failures.choose_kind(rng, recipe, prefer)
            crash = failures.apply(kind, rng, script, recipe, data)
    else:
        if parent_node is not None and parent_node.value is not None:
            step_size = abs(parent_node.value) * rng.uniform(0.002, 0.05)
            sign = 1 if (rng.random() < 0.6) == task.maximize else -1
            value = parent_node.value + sign * step_size
        else:
            value = s.base_value + rng.gauss(0, 0.05)
        value = round(value, rng.choice((4, 4, 6, 16)))

    term_out, exec_time = _terminal(rng, recipe, data, crash, value, no_submission)
    plan = _plan(rng, stage, recipe, parent_node, what)
    analysis = _analysis(rng, recipe, crash, value, parent_node, data, no_submission)
    node_json: dict[str, Any] = {
        "code": script.text,
        "plan": plan,
        "step": step,
        "id": node_id(rng),
        "ctime": clock,
        "parent": None,
        "children": [],
        "_term_out": term_out,
        "exec_time": exec_time,
        "exc_type": crash.exc_type if crash else None,
        "exc_info": crash.exc_info if crash else None,
        "exc_stack": crash.exc_stack if crash else None,
        "analysis": analysis,
        "metric": {"value": value, "maximize": task.maximize if value is not None else None},
        "is_buggy": value is None,
    }
    depth = parent_node.debug_depth + 1 if stage == "debug" and parent_node else 0
    return Node(node_json, recipe, stage, parent, depth, crash, value)


def _terminal(
    rng: random.Random,
    recipe: Recipe,
    data: RunData,
    crash: Crash | None,
    value: float | None,
    no_submission: bool,
) -> tuple[list[str], float]:
    if crash is None:
        until = "submission" if no_submission else "done"
        out = stage_output(rng, recipe, data, until=until, value=None if no_submission else value)
        exec_time = rng.uniform(4.0, data.timeout * 0.7)
        out.append(execution_time_line(exec_time, data.timeout))
        return out, exec_time
    out = stage_output(
        rng,
        recipe,
        data,
        until=crash.stage,
        value=None,
        partial_loop=crash.partial_loop,
        folds_done=crash.folds_done,
    )
    out.append(crash.traceback)
    if crash.timed_out:
        exec_time = data.timeout + rng.uniform(0.005, 0.4)
        out.append(timeout_line(data.timeout))
    else:
        early = crash.stage in ("import", "load", "features")
        exec_time = rng.uniform(0.0005, 2.5) if early else rng.uniform(3.0, data.timeout * 0.5)
        out.append(execution_time_line(exec_time, data.timeout))
    return out, exec_time


def _plan(
    rng: random.Random, stage: str, recipe: Recipe, parent: Node | None, what: str | None
) -> str:
    if stage == "debug" and parent is not None:
        return prose.debug_plan(rng, recipe, parent.crash)
    if stage == "improve" and parent is not None and what is not None:
        return prose.improve_plan(rng, recipe, what, parent.value or 0.0)
    return prose.draft_plan(rng, recipe)


def _analysis(
    rng: random.Random,
    recipe: Recipe,
    crash: Crash | None,
    value: float | None,
    parent: Node | None,
    data: RunData,
    no_submission: bool,
) -> str:
    if crash is not None:
        return prose.crash_analysis(rng, crash, natural_delta(data.timeout))
    if no_submission or value is None:
        return prose.no_submission_analysis(rng)
    return prose.good_analysis(rng, recipe, value, parent.value if parent else None)


# --- files ----------------------------------------------------------------------------


def journal_chunks(nodes: list[Node]) -> Iterator[str]:
    """``journal.json`` exactly as AIDE's serializer lays it out, node by node."""
    yield '{"nodes":['
    for i, node in enumerate(nodes):
        if i:
            yield ","
        yield json.dumps(node.json, separators=(",", ":"))
    node2parent = {
        node.json["id"]: nodes[node.parent].json["id"] for node in nodes if node.parent is not None
    }
    yield '],"node2parent":' + json.dumps(node2parent, separators=(",", ":"))
    yield ',"__version":"2"}'


def best_solution(nodes: list[Node], task: Task) -> str:
    """AIDE writes the best good node's code; with none, the first node's (as seen in the samples)."""
    best = best_index(nodes, task)
    if best is not None:
        return nodes[best].json["code"]
    return nodes[0].json["code"] if nodes else ""


def _layout(nodes: list[Node]) -> list[list[float]]:
    depth = []
    for n in nodes:
        depth.append(0 if n.parent is None else depth[n.parent] + 1)
    max_depth = max(depth, default=0) or 1
    by_level: dict[int, list[int]] = {}
    for i, d in enumerate(depth):
        by_level.setdefault(d, []).append(i)
    pos = [[0.0, 0.0] for _ in nodes]
    for d, members in by_level.items():
        for k, i in enumerate(members):
            pos[i] = [round(k / max(len(members) - 1, 1), 4), round(d / max_depth, 4)]
    return pos


_TREE_HEAD = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>AIDE Run Visualization</title>
    <style>
      body { margin: 0; background-color: #f2f0e7; font-family: monospace; }
      canvas { float: left; height: 100vh; width: 40vw; }
      #text-container { float: right; height: 100vh; width: 58vw; overflow: scroll; background: #282c34; color: #f2f0e7; }
      #plan { min-height: 5rem; padding: 1em; white-space: pre-wrap; }
      #code { padding: 1em; white-space: pre; }
    </style>
    <script>
let treeStructData = """

_TREE_TAIL = """;

function select(i) {
  document.getElementById("plan").innerText = treeStructData.plan[i];
  document.getElementById("code").innerText = treeStructData.code[i];
}

function draw() {
  const canvas = document.getElementById("tree");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.strokeStyle = "#999";
  for (const [a, b] of treeStructData.edges) {
    const [ax, ay] = treeStructData.layout[a], [bx, by] = treeStructData.layout[b];
    ctx.beginPath(); ctx.moveTo(20 + ax * (w - 40), 20 + ay * (h - 40));
    ctx.lineTo(20 + bx * (w - 40), 20 + by * (h - 40)); ctx.stroke();
  }
  treeStructData.layout.forEach(([x, y], i) => {
    ctx.fillStyle = treeStructData.metrics[i] ? "#fd4578" : "#555";
    ctx.beginPath(); ctx.arc(20 + x * (w - 40), 20 + y * (h - 40), 6, 0, 2 * Math.PI); ctx.fill();
  });
}
window.addEventListener("load", () => { draw(); if (treeStructData.plan.length) select(0); });
    </script>
  </head>
  <body>
    <canvas id="tree" width="600" height="900"></canvas>
    <pre id="text-container"><div id="plan"></div><hr><code id="code" class="language-python"></code></pre>
  </body>
</html>
"""


def tree_plot_chunks(nodes: list[Node], exp_name: str) -> Iterator[str]:
    """``tree_plot.html``: a page embedding the tree as ``treeStructData`` (as AIDE's does)."""
    edges = [[n.parent, i] for i, n in enumerate(nodes) if n.parent is not None]
    yield _TREE_HEAD
    yield '{"edges": ' + json.dumps(edges)
    yield ', "layout": ' + json.dumps(_layout(nodes))
    yield ', "plan": ' + json.dumps([prose.wrap_plan(n.json["plan"]) for n in nodes])
    yield ', "code": ' + json.dumps([n.json["code"].rstrip("\n") for n in nodes])
    yield ', "term_out": ' + json.dumps(["".join(n.json["_term_out"]) for n in nodes])
    yield ', "analysis": ' + json.dumps([n.json["analysis"] for n in nodes])
    yield ', "exp_name": ' + json.dumps(exp_name)
    yield ', "metrics": ' + json.dumps([n.value if n.value is not None else 0 for n in nodes])
    yield "}"
    yield _TREE_TAIL


def _stamp(ts: float) -> str:
    d = datetime.fromtimestamp(ts, tz=UTC)
    return d.strftime("%Y-%m-%d %H:%M:%S,") + f"{d.microsecond // 1000:03d}"


def _policy_line(node: Node, nodes: list[Node]) -> str:
    if node.stage == "draft":
        drafts_before = sum(1 for n in nodes[: node.json["step"]] if n.stage == "draft")
        why = "not enough drafts" if drafts_before < NUM_DRAFTS else "no good nodes"
        return f"[search policy] drafting new node ({why})"
    if node.stage == "debug" and node.parent is not None:
        return f"[search policy] debugging node {nodes[node.parent].json['id']}"
    if node.parent is not None:
        return f"[search policy] greedy node selected: node {nodes[node.parent].json['id']}"
    return "[search policy] drafting new node"


def aide_log(nodes: list[Node], exp_name: str, start: float) -> str:
    """``aide.log``: the INFO lines of AIDE's logger for every step."""
    out = [f'[{_stamp(start)}] INFO: Starting run "{exp_name}"']
    for node in nodes:
        j = node.json
        t0 = j["ctime"]
        parent_type = "NoneType" if node.parent is None else "aide.journal.Node"
        out.append(f"[{_stamp(t0 - 30)}] INFO: {_policy_line(node, nodes)}")
        out.append(
            f"[{_stamp(t0 - 29)}] INFO: Agent is generating code, parent node type: <class '{parent_type}'>"
        )
        out.append(f"[{_stamp(t0)}] INFO: REPL is executing code (reset_session=True)")
        out.append(
            f"[{_stamp(t0 + j['exec_time'])}] INFO: Agent is parsing execution results for node {j['id']}"
        )
        if node.is_buggy:
            verdict = (
                f"Parsed results: Node {j['id']} is buggy and/or did not produce a submission.csv"
            )
        else:
            verdict = f"Parsed results: Node {j['id']} is not buggy"
        out.append(f"[{_stamp(t0 + j['exec_time'] + 4)}] INFO: {verdict}")
        out.append(f"[{_stamp(t0 + j['exec_time'] + 5)}] INFO: Step {j['step'] + 1} complete")
    return "\n".join(out) + "\n"


def verbose_log_chunks(
    nodes: list[Node],
    task: Task,
    data: RunData,
    exp_name: str,
    start: float,
    rng: random.Random,
    *,
    endless: bool = False,
) -> Iterator[str]:
    """``aide.verbose.log``: every prompt and response, step after step.

    With ``endless`` the caller stops reading at the size it wants: past the last
    step the log goes on as if the run had been resumed, so any size can be produced.
    """
    description = prose.task_description(rng, task, data.n_train, data.n_test)
    overview = prose.data_overview(rng, task, data.n_train, data.n_test)
    guidelines = prose.GUIDELINES.format(limit=natural_delta(data.timeout))
    yield f'[{_stamp(start)}] INFO: Starting run "{exp_name}"\n'
    offset = 0.0
    rounds = 0
    while nodes:
        memory: list[str] = []
        for node in nodes:
            yield from _verbose_step(node, nodes, description, overview, guidelines, memory, offset)
            if node.value is not None:
                memory.append(
                    f"Design: {node.json['plan']}\nResults: {node.json['analysis']}\n"
                    f"Validation Metric: {node.value}\n"
                )
                del memory[:-8]
        rounds += 1
        if not endless:
            return
        offset = rounds * (nodes[-1].json["ctime"] - start + 600)
        yield f'[{_stamp(start + offset)}] INFO: Resuming run "{exp_name}" from checkpoint (round {rounds})\n'


def _verbose_step(
    node: Node,
    nodes: list[Node],
    description: str,
    overview: str,
    guidelines: str,
    memory: list[str],
    offset: float,
) -> Iterator[str]:
    j = node.json
    t0 = j["ctime"] + offset
    parent = nodes[node.parent] if node.parent is not None else None
    yield f"[{_stamp(t0 - 30)}] INFO: {_policy_line(node, nodes)}\n"
    yield f"[{_stamp(t0 - 29)}] DEBUG: ---Querying model---\n"
    intro = {"draft": prose.INTRO, "debug": prose.DEBUG_INTRO, "improve": prose.IMPROVE_INTRO}[
        node.stage
    ]
    prompt = [f"[{_stamp(t0 - 29)}] DEBUG: system: # Introduction\n\n{intro}\n\n{description}\n"]
    if memory:
        prompt.append("# Memory\n\n" + "-------------------------------\n".join(memory) + "\n")
    if parent is not None:
        prompt.append(f"# Previous solution\n\n## Code\n\n```python\n{parent.json['code']}```\n\n")
        if node.stage == "debug":
            prompt.append(
                "## Execution output\n\n```\n"
                + "".join(parent.json["_term_out"])[-4000:]
                + "\n```\n\n"
            )
    prompt.append(guidelines + "\n" + overview)
    yield "".join(prompt)
    yield f"[{_stamp(t0 - 2)}] DEBUG: response: {j['plan']}\n\n```python\n{j['code']}```\n"
    yield f"[{_stamp(t0 - 1)}] DEBUG: ---Query complete---\n"
    yield f"[{_stamp(t0)}] INFO: REPL is executing code (reset_session=True)\n"
    done = t0 + j["exec_time"]
    yield f"[{_stamp(done)}] INFO: Agent is parsing execution results for node {j['id']}\n"
    review = {
        "is_bug": j["is_buggy"],
        "has_csv_submission": not j["is_buggy"],
        "summary": j["analysis"],
        "metric": node.value,
        "lower_is_better": not node.recipe.task.maximize,
    }
    yield (
        f"[{_stamp(done + 1)}] DEBUG: ---Querying model---\n[{_stamp(done + 1)}] DEBUG: system: "
        "You are a Kaggle grandmaster attending a competition. You have written code to solve this "
        "task and now need to evaluate the output of the code execution. You should determine if "
        "there were any bugs as well as report the empirical findings.\n\n# Implementation\n\n"
        f"```python\n{j['code']}```\n\n# Execution output\n\n```\n"
        + "".join(j["_term_out"])[-4000:]
        + "\n```\n"
    )
    yield f"[{_stamp(done + 4)}] DEBUG: response: function call submit_review {json.dumps(review)}\n"
    yield f"[{_stamp(done + 4)}] DEBUG: ---Query complete---\n"


def config_yaml(
    task: Task, exp_name: str, run_folder: str, steps: int, data: RunData, rng: random.Random
) -> str:
    code_model = rng.choice(
        (
            "gpt-4o-2024-08-06",
            "claude-3-5-sonnet-20241022",
            "o3-mini-2025-01-31",
            "gpt-4.1-2025-04-14",
        )
    )
    return (
        f"data_dir: /home/data\ndesc_file: /home/data/description.md\ngoal: null\neval: null\n"
        f"log_dir: /home/agent/runs/{run_folder}/logs/{exp_name}\n"
        f"workspace_dir: /home/agent/workspaces/{exp_name}\n"
        "preprocess_data: true\ncopy_data: false\n"
        f"exp_name: {exp_name}\n"
        "exec:\n"
        f"  timeout: {data.timeout}\n"
        "  agent_file_name: runfile.py\n"
        "  format_tb_ipython: false\n"
        "generate_report: false\n"
        "agent:\n"
        f"  steps: {steps}\n"
        "  k_fold_validation: 5\n"
        "  expose_prediction: false\n"
        "  data_preview: true\n"
        "  code:\n"
        f"    model: {code_model}\n"
        "    temp: 0.5\n"
        "  feedback:\n"
        "    model: gpt-4o-mini-2024-07-18\n"
        "    temp: 0.5\n"
        "  search:\n"
        f"    max_debug_depth: {MAX_DEBUG_DEPTH}\n"
        f"    debug_prob: {DEBUG_PROB}\n"
        f"    num_drafts: {NUM_DRAFTS}\n"
        f"# task: {task.task_id}\n"
    )


def summary(nodes: list[Node], task: Task) -> dict[str, Any]:
    """Ground truth about a journal, shaped like the samples' ``expected.json`` entries."""
    exc_types: dict[str, int] = {}
    for n in nodes:
        if n.json["exc_type"]:
            exc_types[n.json["exc_type"]] = exc_types.get(n.json["exc_type"], 0) + 1
    best = best_index(nodes, task)
    return {
        "steps": len(nodes),
        "buggy_steps": sum(1 for n in nodes if n.is_buggy),
        "exc_types": exc_types,
        "best_metric": nodes[best].value if best is not None else None,
        "maximize": task.maximize,
        "node_ids": [n.json["id"] for n in nodes],
        "plans": [n.json["plan"] for n in nodes],
    }
