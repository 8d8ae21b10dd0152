"""The English in a journal: plans, reviews, and the prompts of AIDE's verbose log.

Why composed from slots rather than fixed strings: a report generator or a
clusterer of failure causes must not be tested on text where every plan is the
same sentence. Each slot has several phrasings and is filled with the step's
real particulars (model, features, metric, the exception's cause), so a
100-step journal reads like an LLM's and compresses like one.
"""

from __future__ import annotations

import random
import textwrap

from job.demo.synthetic.catalog import Task
from job.demo.synthetic.failures import Crash
from job.demo.synthetic.scripts import TORCH_MODELS, Recipe

_MODEL_NAMES = {
    "lightgbm": "a LightGBM gradient-boosted tree regressor",
    "xgboost": "an XGBoost regressor with histogram tree building",
    "catboost": "a CatBoost regressor",
    "random_forest": "a random forest",
    "ridge": "a ridge regression baseline",
    "knn": "a distance-weighted k-nearest-neighbours regressor",
    "mlp": "a small multilayer perceptron in PyTorch",
    "cnn1d": "a 1D convolutional network over the one-hot sequence",
    "resnet": "a ResNet-18 trained from scratch",
    "efficientnet": "an EfficientNet-B0 from timm",
    "simple_cnn": "a compact two-block CNN",
}

_FEATURES = {
    "smiles": "{bits}-bit Morgan fingerprints (radius {radius}) concatenated with RDKit descriptors (MolWt, LogP, TPSA, H-bond donors)",
    "sequence": "a flattened one-hot encoding of the mutated amino-acid sequence",
    "image": "the raw RGB patches scaled to [0, 1]",
    "singlecell": "log1p-normalised expression reduced with PCA",
    "tabular": "the numeric descriptor columns with median imputation",
}

_OPENERS = (
    "I will start with {model} on {features}.",
    "As a first baseline, train {model} using {features}.",
    "The plan is to fit {model} on {features}.",
    "We can get a solid baseline quickly with {model} trained on {features}.",
    "Let's build {model} on top of {features}.",
)

_VALIDATION = (
    "Performance is estimated with {folds}-fold cross-validation, reporting the {metric} of the out-of-fold predictions.",
    "I'll use {folds}-fold CV with a fixed seed ({seed}) and print the {metric} for every fold and overall.",
    "A shuffled {folds}-fold split gives the validation {metric}; fold models are averaged for the test predictions.",
    "Model quality is measured by {metric} on held-out folds ({folds} folds) so it can be compared across iterations.",
)

_CLOSERS = (
    "Predictions are written to ./submission/submission.csv with the `{id}` and `{target}` columns.",
    "Hyperparameters stay close to defaults (learning rate {lr}, {n} estimators) to keep the run well within the time limit.",
    "The training table has roughly {rows} rows, so this should train in a few minutes.",
    "This keeps the pipeline simple so later steps can improve one component at a time.",
    "",
)

_DEBUG_OPENERS = (
    "The previous attempt crashed with {exc}: {cause}.",
    "Execution failed ({exc}) because {cause}.",
    "The last run did not finish: {cause} ({exc}).",
    "Looking at the traceback, {cause}, which raised {exc}.",
)

_DEBUG_FIXES = (
    "To fix this I will {fix}.",
    "The fix is to {fix}; the rest of the pipeline stays unchanged.",
    "I will {fix} and keep the model and validation scheme as they were.",
    "This step will {fix}, and add a couple of prints so a similar problem is caught earlier.",
)

_IMPROVEMENTS = {
    "more_estimators": "Increase the number of boosting rounds / epochs: the validation curve was still improving when training stopped.",
    "lower_lr": "Lower the learning rate so the model converges to a better optimum, compensating with more iterations.",
    "extra_features": "Add richer features (a larger fingerprint radius and extra descriptors) to give the model more signal.",
    "scale_features": "Standardise the features before training, which helps the linear and neural models in particular.",
    "seed_average": "Average two models trained with different seeds in every fold to reduce variance.",
    "bigger_model": "Increase model capacity (deeper trees / wider hidden layers) since the model seems to underfit.",
    "target_transform": "Train on log1p of the target and invert the transform at prediction time, as the target is right-skewed.",
    "more_folds": "Use more CV folds so each model sees more training data and the validation estimate is less noisy.",
}

_IMPROVE_OPENERS = (
    "The current best solution reaches a validation {metric} of {value:.4f}.",
    "Building on the best node so far ({metric} = {value:.4f}):",
    "The parent solution scores {value:.4f} ({metric}); one targeted change should improve it.",
)

_IMPROVE_CLOSERS = (
    "Everything else is kept identical so the effect of this single change can be measured.",
    "If this helps, the next iteration can tune it further.",
    "This is a small, low-risk change to the existing pipeline.",
    "",
)


def metric_phrase(task: Task) -> str:
    direction = "higher is better" if task.maximize else "lower is better"
    return f"{task.metric} ({direction})"


_RATIONALE = (
    "{Model} is a good fit here because the dataset is small and the features are high-dimensional but sparse.",
    "Tree ensembles handle the mix of binary fingerprint bits and continuous descriptors without any scaling.",
    "A linear model gives a fast, hard-to-overfit reference point that later iterations must beat.",
    "Neural networks can exploit interactions between positions that per-feature models miss.",
    "Since the metric is {metric}, the model is trained directly on the raw target and evaluated on out-of-fold predictions.",
    "The data description mentions {rows} training rows, so full {folds}-fold CV is affordable.",
    "I considered a pretrained embedding model, but it is not available offline, so the features are computed locally.",
    "Early stopping on the validation fold keeps the number of trees adaptive instead of tuning it by hand.",
)

_RISKS = (
    "Invalid SMILES strings are mapped to all-zero feature vectors rather than dropped, so row counts stay aligned.",
    "To stay within the time limit, no hyper-parameter search is done in this step.",
    "Memory should be fine: the feature matrix is float32.",
    "If a GPU is not available the code falls back to the CPU automatically.",
    "The submission keeps the row order of test.csv and includes every identifier.",
    "",
)


def draft_plan(rng: random.Random, r: Recipe) -> str:
    fill = _fill(r)
    parts = [
        rng.choice(_OPENERS).format(**fill),
        rng.choice(_RATIONALE).format(**fill),
        rng.choice(_VALIDATION).format(**fill),
        rng.choice(_RISKS),
        rng.choice(_CLOSERS).format(**fill),
    ]
    if r.model in TORCH_MODELS and rng.random() < 0.6:
        parts.insert(
            2,
            f"Training runs for {r.epochs} epochs with AdamW (lr {r.lr}) and batch size {r.batch_size} on the GPU if one is available.",
        )
    return " ".join(p for p in parts if p)


def debug_plan(rng: random.Random, r: Recipe, crash: Crash | None) -> str:
    if crash is None:
        return (
            "The previous code ran but did not produce ./submission/submission.csv. "
            + rng.choice(
                (
                    "I will make sure the submission directory is created and the file is written at the end.",
                    "The fix is to write the submission after the final fit and print its shape.",
                )
            )
        )
    fill = {"exc": crash.exc_type, "cause": crash.cause, "fix": crash.fix}
    parts = [
        rng.choice(_DEBUG_OPENERS).format(**fill),
        rng.choice(_DEBUG_FIXES).format(**fill),
        rng.choice(_DEBUG_EXTRA).format(
            model=_MODEL_NAMES[r.model], folds=r.folds, metric=r.task.metric
        ),
    ]
    return " ".join(p for p in parts if p)


_DEBUG_EXTRA = (
    "The model ({model}) and the {folds}-fold validation are unchanged, so the {metric} remains comparable with earlier steps.",
    "I will also print the shapes of the feature matrix and the target right before training to make mismatches obvious.",
    "Everything else, including how the submission file is written, stays as before.",
    "As a safety net the script now checks that ./submission/submission.csv exists at the end.",
    "",
)


def improve_plan(rng: random.Random, r: Recipe, what: str, parent_value: float) -> str:
    fill = {"metric": r.task.metric, "value": parent_value}
    parts = [
        rng.choice(_IMPROVE_OPENERS).format(**fill),
        _IMPROVEMENTS[what],
        rng.choice(_IMPROVE_CLOSERS),
    ]
    return " ".join(p for p in parts if p)


def _fill(r: Recipe) -> dict[str, object]:
    t = r.task
    return {
        "model": _MODEL_NAMES[r.model],
        "Model": _MODEL_NAMES[r.model][0].upper() + _MODEL_NAMES[r.model][1:],
        "features": _FEATURES[t.kind].format(bits=r.n_bits, radius=r.radius),
        "folds": r.folds,
        "seed": r.seed,
        "metric": metric_phrase(t),
        "id": t.id_col,
        "target": t.target,
        "lr": r.lr,
        "n": r.n_estimators,
        "rows": "a few thousand" if r.n_estimators < 800 else "tens of thousands of",
    }


def crash_analysis(rng: random.Random, crash: Crash, limit: str) -> str:
    if crash.timed_out:
        first = rng.choice(
            (
                f"The execution was stopped after hitting the {limit} time limit: {crash.cause}.",
                f"The run timed out ({limit}) before cross-validation finished; {crash.cause}.",
            )
        )
    else:
        first = rng.choice(
            (
                f"The code failed with a {crash.exc_type}: {crash.cause}.",
                f"Execution raised {crash.exc_type} because {crash.cause}.",
                f"The script crashed ({crash.exc_type}); {crash.cause}.",
            )
        )
    second = rng.choice(
        (
            "No validation metric was produced and no submission file was written.",
            "Because of this, the model was never evaluated.",
            "The run therefore has no usable predictions.",
            "",
        )
    )
    third = rng.choice(
        (
            f"The next attempt should {crash.fix}.",
            f"A fix would be to {crash.fix}.",
            "",
        )
    )
    return " ".join(p for p in (first, second, third) if p)


def no_submission_analysis(rng: random.Random) -> str:
    return rng.choice(
        (
            "The code ran without errors but did not save submission.csv in the ./submission/ directory, so the solution cannot be evaluated.",
            "Training completed, but the script never printed a validation metric and the submission file is missing.",
            "The script finished, yet ./submission/submission.csv was not created (the final prediction step was skipped).",
        )
    )


def good_analysis(rng: random.Random, r: Recipe, value: float, parent_value: float | None) -> str:
    t = r.task
    first = rng.choice(
        (
            f"The model trained successfully and achieved a validation {t.metric} of {value:.4f}.",
            f"Training finished without errors; the out-of-fold {t.metric} is {value:.4f} across {r.folds} folds.",
            f"{_MODEL_NAMES[r.model][0].upper()}{_MODEL_NAMES[r.model][1:]} reached {t.metric} = {value:.4f} in cross-validation.",
        )
    )
    if parent_value is None:
        second = rng.choice(
            (
                "This is a reasonable baseline for further improvements.",
                "Fold scores are consistent, so the CV estimate looks reliable.",
                "",
            )
        )
    else:
        better = (value > parent_value) == t.maximize
        second = (
            f"This improves on the parent's {parent_value:.4f}."
            if better
            else f"This is slightly worse than the parent's {parent_value:.4f}, so the change did not help."
        )
    third = rng.choice(
        (
            "The submission file was saved correctly.",
            "",
            "Predictions were written to ./submission/submission.csv.",
        )
    )
    return " ".join(p for p in (first, second, third) if p)


def wrap_plan(plan: str) -> str:
    """tree_plot.html shows plans wrapped at 80 columns (AIDE uses textwrap)."""
    return textwrap.fill(plan, width=80)


# --- the prompts in aide.verbose.log ---------------------------------------------------

INTRO = (
    "You are a Kaggle grandmaster attending a competition. In order to win this competition, "
    "you need to come up with an excellent and creative plan for a solution and then implement "
    "this solution in Python. We will now provide a description of the task."
)

DEBUG_INTRO = (
    "You are a Kaggle grandmaster attending a competition. Your previous solution had a bug "
    "and/or did not produce a submission.csv, so based on the information below, you should "
    "revise it in order to fix this. Your response should be an implementation outline in "
    "natural language, followed by a single markdown code block which implements the bugfix/solution."
)

IMPROVE_INTRO = (
    "You are a Kaggle grandmaster attending a competition. You are provided with a previously "
    "developed solution below and should improve it in order to further increase the (test time) "
    "performance. For this you should first outline a brief plan in natural language for how the "
    "solution can be improved and then implement this improvement in Python based on the provided "
    "previous solution."
)

GUIDELINES = """# Instructions

## Response format

Your response should be a brief outline/sketch of your proposed solution in natural language (3-5 sentences), followed by a single markdown code block (wrapped in ```) which implements this solution and prints out the evaluation metric. There should be no additional headings or text in your response. Just natural language text followed by a newline and then the markdown code block.

## Solution sketch guideline

- This first solution design should be relatively simple, without ensembling or hyper-parameter optimization.
- Take the Memory section into consideration when proposing the design, don't propose the same modelling solution but keep the evaluation the same.
- The solution sketch should be 3-5 sentences.
- Propose an evaluation metric that is reasonable for this task.
- Don't suggest to do EDA.
- The data is already prepared and available in the `./input` directory. There is no need to unzip any files.

## Implementation guideline

- The code should **implement the proposed solution**, **print the value of the evaluation metric computed on a hold-out validation set**,
- **AND MOST IMPORTANTLY SAVE PREDICTIONS ON THE PROVIDED UNLABELED TEST DATA IN A `submission.csv` FILE IN THE ./submission/ DIRECTORY.**
- The code should be a single-file python program that is self-contained and can be executed as-is.
- No parts of the code should be skipped, don't terminate the before finishing the script.
- Your response should only contain a single code block.
- Be aware of the running time of the code, it should complete within {limit}.
- All the provided input data is stored in "./input" directory.
- **You MUST submit predictions on the provided unlabeled test data in a `submission.csv` file** file in the "./working" directory as described in the task description** This is extremely important since this file is used for grading/evaluation. DO NOT FORGET THE submission.csv file!
- You can also use the "./working" directory to store any temporary files that your code needs to create.
- REMEMBER THE ./submission/submission.csv FILE!!!!! The correct directory is important too.
"""


def task_description(rng: random.Random, task: Task, n_train: int, n_test: int) -> str:
    """The task text AIDE puts in every prompt: fixed per run, so it repeats in the log."""
    direction = "maximise" if task.maximize else "minimise"
    return (
        f"# Task description\n\n## Overview\n\n{task.description}\n\n"
        f"This is the biomlbench task `{task.task_id}`. Submissions are scored with "
        f"{task.metric}; you should {direction} it.\n\n## Data\n\n"
        f"- `train.csv`: {n_train} labelled rows. The identifier column is `{task.id_col}` and "
        f"the prediction target is `{task.target}`.\n"
        f"- `test.csv`: {n_test} rows with the same columns except `{task.target}`.\n"
        f"- `sample_submission.csv`: a submission in the correct format.\n\n"
        "## Evaluation\n\nThe submission must contain one row per test identifier with a "
        f"`{task.target}` prediction. Rows in a different order are matched by identifier.\n"
    )


def data_overview(rng: random.Random, task: Task, n_train: int, n_test: int) -> str:
    lines = [
        "# Data Overview\n",
        "```",
        "input/",
        f"    sample_submission.csv ({n_test * 24 // 1024} kB)",
        f"    test.csv ({n_test * 61 // 1024} kB)",
        f"    train.csv ({n_train * 67 // 1024} kB)",
        "```",
        f"-> input/train.csv has {n_train} rows and {rng.choice((3, 4, 12, 28))} columns.",
        f"The columns are: {task.id_col}, {task.target}"
        + (", split, group" if rng.random() < 0.5 else ""),
        f"{task.target} has {n_train - rng.randrange(0, 12)} non-null values; "
        f"mean {rng.uniform(-2, 3):.3f}, std {rng.uniform(0.2, 2):.3f}.",
    ]
    return "\n".join(lines) + "\n"
