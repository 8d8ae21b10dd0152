"""What a step printed, as AIDE records it: ``_term_out`` is a list of fragments.

AIDE's interpreter captures every ``write`` on stdout/stderr separately, so
``print("train", df.shape)`` lands as ``["train", " ", "(100, 3)", "\\n"]`` and a
traceback as one fragment. Reproducing that (rather than one string per step)
matters: it is the shape a parser must join back, and it is what makes journals
as large and as compressible as real ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from job.demo.synthetic.catalog import natural_delta
from job.demo.synthetic.scripts import TORCH_MODELS, Recipe

SITE = "/opt/conda/envs/agent/lib/python3.11/site-packages"

#: Ordered execution stages of a rendered script (see scripts.render).
STAGES = ("import", "load", "features", "target", "loop", "cv", "submission", "done")


@dataclass(frozen=True)
class RunData:
    """Sizes of the (imaginary) task data, fixed per run so prints agree across steps."""

    n_train: int
    n_test: int
    n_features: int
    timeout: int  # the exec time limit in seconds

    @classmethod
    def draw(cls, rng: random.Random) -> RunData:
        return cls(
            n_train=rng.choice((412, 1130, 2871, 5634, 9120, 24018, 71543)),
            n_test=rng.choice((104, 283, 718, 1409, 2280, 6005)),
            n_features=rng.choice((133, 1028, 2052, 2056, 4100, 5000, 13953)),
            timeout=rng.choice((3600, 3600, 1800, 7200, 600)),
        )


def print_args(*args: object) -> list[str]:
    """Fragments of ``print(*args)``: each argument, single spaces, a newline."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i:
            out.append(" ")
        out.append(str(arg))
    out.append("\n")
    return out


def print_line(text: str) -> list[str]:
    """Fragments of ``print(f"...")``: the text then the newline, written separately."""
    return [text, "\n"]


_WARNINGS = (
    f"{SITE}/sklearn/utils/validation.py:1339: DataConversionWarning: A column-vector y was passed when a 1d array was expected. Please change the shape of y to (n_samples, ), for example using ravel().\n  y = column_or_1d(y, warn=True)\n",
    f"{SITE}/torch/utils/data/dataloader.py:617: UserWarning: This DataLoader will create 4 worker processes in total. Our suggested max number of worker in current system is 2, which is smaller than what this DataLoader is going to create. Please be aware that excessive worker creation might get DataLoader running slow or even freeze, lower the worker number to avoid potential slowness/freeze if necessary.\n  warnings.warn(\n",
    "[LightGBM] [Warning] Found whitespace in feature_names, replace with underlines\n",
    f"{SITE}/rdkit/Chem/AllChem.py:0: DeprecationWarning: please use MorganGenerator\n",
    f"{SITE}/pandas/core/arraylike.py:399: RuntimeWarning: invalid value encountered in log1p\n  result = getattr(ufunc, method)(*inputs, **kwargs)\n",
    f"{SITE}/xgboost/core.py:158: UserWarning: [17:09:12] WARNING: /workspace/src/common/error_msg.cc:58: Falling back to prediction using DMatrix due to mismatched devices. This might lead to higher memory usage and slower performance.\n  warnings.warn(smsg, UserWarning)\n",
    f'{SITE}/anndata/_core/anndata.py:1758: UserWarning: Observation names are not unique. To make them unique, call `.obs_names_make_unique`.\n  utils.warn_names_duplicates("obs")\n',
)


def _fold_scores(rng: random.Random, value: float, folds: int) -> list[float]:
    noise = [rng.gauss(0, max(abs(value) * 0.04, 0.01)) for _ in range(folds)]
    mean_noise = sum(noise) / folds
    return [value + n - mean_noise for n in noise]


def _loss_name(recipe: Recipe) -> str:
    return "l2" if recipe.task.metric != "roc_auc" else "binary_logloss"


def training_log(
    rng: random.Random,
    recipe: Recipe,
    data: RunData,
    value: float | None,
    *,
    folds_done: int,
    partial: bool,
) -> list[str]:
    """Per-fold training output up to ``folds_done`` folds (plus part of the next)."""
    out: list[str] = []
    metric = recipe.task.metric
    scores = _fold_scores(rng, value if value is not None else rng.uniform(0.3, 0.8), recipe.folds)
    n_folds = min(folds_done + (1 if partial else 0), recipe.folds)
    for fold in range(n_folds):
        unfinished = partial and fold == n_folds - 1
        if recipe.model in TORCH_MODELS:
            loss = rng.uniform(0.4, 1.2)
            epochs = recipe.epochs if not unfinished else rng.randrange(1, recipe.epochs + 1)
            for epoch in range(epochs):
                loss *= rng.uniform(0.86, 0.99)
                score = scores[fold] - (recipe.epochs - epoch) * rng.uniform(0.0, 0.004)
                out += print_line(
                    f"fold {fold} epoch {epoch + 1}/{recipe.epochs} train_loss {loss:.4f} "
                    f"val {metric} {score:.4f} lr {recipe.lr * rng.uniform(0.05, 1):.2e} "
                    f"time {rng.uniform(2, 300):.1f}s"
                )
        elif recipe.model == "lightgbm":
            out += print_line("Training until validation scores don't improve for 100 rounds")
            loss = rng.uniform(0.5, 1.5)
            rounds = (
                recipe.n_estimators
                if not unfinished
                else rng.randrange(200, recipe.n_estimators + 201)
            )
            for it in range(200, rounds + 1, 200):
                loss *= rng.uniform(0.9, 0.99)
                out += print_line(f"[{it}]\tvalid_0's {_loss_name(recipe)}: {loss:.6f}")
            if not unfinished:
                best = rng.randrange(100, max(rounds, 101))
                out += print_line("Early stopping, best iteration is:")
                out += print_line(f"[{best}]\tvalid_0's {_loss_name(recipe)}: {loss * 0.995:.6f}")
        elif recipe.model == "xgboost":
            loss = rng.uniform(0.8, 1.6)
            rounds = (
                recipe.n_estimators if not unfinished else rng.randrange(1, recipe.n_estimators)
            )
            for it in range(0, rounds, 200):
                loss *= rng.uniform(0.85, 0.98)
                out += print_line(f"[{it}]\tvalidation_0-rmse:{loss:.5f}")
            if not unfinished:
                out += print_line(
                    f"[{recipe.n_estimators - 1}]\tvalidation_0-rmse:{loss * 0.99:.5f}"
                )
        elif recipe.model == "catboost":
            learn = rng.uniform(0.9, 1.8)
            total = 0.0
            rounds = (
                recipe.n_estimators if not unfinished else rng.randrange(1, recipe.n_estimators)
            )
            for it in range(0, rounds, 200):
                learn *= rng.uniform(0.8, 0.97)
                total += rng.uniform(5, 40)
                out += print_line(
                    f"{it}:\tlearn: {learn:.7f}\ttest: {learn * 1.07:.7f}\tbest: {learn * 1.07:.7f} ({it})"
                    f"\ttotal: {total:.1f}s\tremaining: {total * (recipe.n_estimators - it) / (it + 1):.1f}s"
                )
        if not unfinished:
            out += print_line(f"Fold {fold}: {metric} = {scores[fold]:.4f}")
    return out


def stage_output(
    rng: random.Random,
    recipe: Recipe,
    data: RunData,
    *,
    until: str,
    value: float | None,
    partial_loop: bool = False,
    folds_done: int | None = None,
) -> list[str]:
    """Everything printed before execution stopped at stage ``until``."""
    reached = STAGES.index(until)
    out: list[str] = []
    if reached > STAGES.index("load"):
        out += print_args(
            "train", (data.n_train, rng.choice((3, 4, 12, 28))), "test", (data.n_test, 2)
        )
        if rng.random() < 0.15:
            out.append(rng.choice(_WARNINGS))
    if reached > STAGES.index("target"):
        out += print_args("features", (data.n_train, data.n_features), "target", (data.n_train,))
    if reached >= STAGES.index("loop"):
        done = recipe.folds if reached > STAGES.index("loop") else (folds_done or 0)
        if rng.random() < 0.2:
            out.append(rng.choice(_WARNINGS))
        out += training_log(
            rng, recipe, data, value, folds_done=done, partial=partial_loop and until == "loop"
        )
    if reached > STAGES.index("cv") and value is not None:
        metric = recipe.task.metric
        if recipe.model in TORCH_MODELS:
            out += print_line(f"Validation {metric}: {value:.4f}")
        else:
            spread = abs(value) * rng.uniform(0.01, 0.06)
            out += print_line(
                f"Validation {metric}: {value:.4f} (mean of folds {value:.4f} +- {spread:.4f})"
            )
    if reached > STAGES.index("submission"):
        out += print_args("Saved submission with shape", (data.n_test, 2))
    return out


def execution_time_line(exec_time: float, timeout: int) -> str:
    """AIDE's closing fragment (its odd "a moment seconds" wording included)."""
    return (
        f"Execution time: {natural_delta(exec_time)} seconds "
        f"(time limit is {natural_delta(timeout)})."
    )


def timeout_line(timeout: int) -> str:
    return f"TimeoutError: Execution exceeded the time limit of {natural_delta(timeout)}"
