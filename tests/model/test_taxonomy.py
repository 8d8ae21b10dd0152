"""job.model.taxonomy: the detail that matters about a failure, and a log's last error.

Why these checks: the index page's "why do the agents fail" is only as good as
this classification. Each row pins one real-world message shape (AIDE's,
pandas', torch's, sklearn's, the agents' LLM clients') to the detail the team
acts on, including the traps: a keyword argument called ``timeout`` is not a
timeout, a RuntimeError can be CUDA running out of memory, AIDE's ``args``
fallback loses the quotes around a key. The samples' real tracebacks are
checked too, so the rules hold for genuine AIDE output, not just for strings
written for the test.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest

from job.model import taxonomy
from job.model.journal import load_journal
from job.model.taxonomy import (
    LogError,
    classify,
    detail_category,
    failure_detail,
    last_error,
)
from tests.browser.sites import SAMPLE_ARCHIVES

CUDA_OLD = (
    "CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 22.04 GiB total capacity; 18.16 GiB "
    "already allocated; 1.12 GiB free; 18.56 GiB reserved in total by PyTorch) If reserved memory "
    "is >> allocated memory try setting max_split_size_mb to avoid fragmentation."
)
CUDA_NEW = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.57 GiB of "
    "which 1.06 GiB is free. Process 45619 has 21.93 GiB memory in use."
)

CASES = [
    # (exception type, message, terminal output, expected detail)
    ("ModuleNotFoundError", "No module named 'xgboost'", None, "missing module: xgboost"),
    (
        "ModuleNotFoundError",
        "No module named 'torch_geometric.nn'",
        None,
        "missing module: torch_geometric.nn",
    ),
    ("ModuleNotFoundError", "", None, "missing module"),
    ("ImportError", "No module named 'rdkit'", None, "missing module: rdkit"),
    (
        "ImportError",
        "cannot import name 'joblib' from 'sklearn.externals' (/opt/conda/lib/python3.11/site-packages/sklearn/externals/__init__.py)",
        None,
        "cannot import name: sklearn.externals.joblib",
    ),
    (
        "InterpreterError",
        "Code execution failed at line 'import scanpy as sc' due to: InterpreterError: Import of scanpy is not allowed. Authorized imports are: ['numpy']",
        None,
        "import not allowed: scanpy",
    ),
    ("KeyError", "'target'", None, "missing key: 'target'"),
    ("KeyError", "target", None, "missing key: 'target'"),  # AIDE's args fallback drops quotes
    ("KeyError", '"it\'s"', None, 'missing key: "it\'s"'),
    ("KeyError", "0", None, "missing key: 0"),
    ("KeyError", "", None, "missing key"),
    (
        "KeyError",
        "\"None of [Index(['smiles', 'label'], dtype='object')] are in the [columns]\"",
        None,
        "missing columns: ['smiles', 'label']",
    ),
    ("KeyError", "\"['y_true'] not in index\"", None, "missing columns: ['y_true']"),
    ("TimeoutError", "Execution exceeded the time limit of 2 seconds", None, "timeout"),
    ("TimeoutError", "", None, "timeout"),
    ("subprocess.TimeoutExpired", "Command 'x' timed out after 60 seconds", None, "timeout"),
    (
        "KeyboardInterrupt",
        "",
        "epoch 3\nTraceback (most recent call last):\nKeyboardInterrupt\nTimeoutError: Execution exceeded the time limit of an hour\n",
        "timeout",
    ),
    ("KeyboardInterrupt", "", "someone pressed ctrl-c\n", None),
    (None, "Agent stella timed out after 12h for run x; container killed", None, "timeout"),
    ("RuntimeError", CUDA_OLD, None, "CUDA out of memory"),
    ("OutOfMemoryError", CUDA_NEW, None, "CUDA out of memory"),
    ("torch.cuda.OutOfMemoryError", CUDA_NEW, None, "CUDA out of memory"),
    ("torch.OutOfMemoryError", "", None, "CUDA out of memory"),
    ("RuntimeError", "CUDA error: out of memory", None, "CUDA out of memory"),
    (
        "_ArrayMemoryError",
        "Unable to allocate 41.2 GiB for an array with shape (71543, 77312) and data type float64",
        None,
        "host out of memory",
    ),
    ("MemoryError", "", None, "host out of memory"),
    (
        "FileNotFoundError",
        "[Errno 2] No such file or directory: './input/train.csv'",
        None,
        "file not found: ./input/train.csv",
    ),
    (
        "FileNotFoundError",
        "[Errno 2] Unable to synchronously open file (unable to open file: name = '/home/data/train.h5ad', errno = 2, error message = 'No such file or directory', flags = 0, o_flags = 0)",
        None,
        "file not found: /home/data/train.h5ad",
    ),
    (
        "FileNotFoundError",
        "2, No such file or directory",  # AIDE's args fallback: the path is only in the output
        "Traceback (most recent call last):\nFileNotFoundError: [Errno 2] No such file or directory: 'data/x.csv'\n",
        "file not found: data/x.csv",
    ),
    (
        "FileNotFoundError",
        "File /home/data/train.parquet does not exist",
        None,
        "file not found: /home/data/train.parquet",
    ),
    ("FileNotFoundError", "", None, "file not found"),
    (
        "OSError",
        "[Errno 2] No such file or directory: 'model.pt'",
        None,
        "file not found: model.pt",
    ),
    (
        "EnvException",
        "cannot read file smiles_descriptions.txt",
        None,
        "cannot read file: smiles_descriptions.txt",
    ),
    (
        "ValueError",
        "Found input variables with inconsistent numbers of samples: [10, 7]",
        None,
        "shape mismatch",
    ),
    (
        "RuntimeError",
        "mat1 and mat2 shapes cannot be multiplied (512x133 and 129x1024)",
        None,
        "shape mismatch",
    ),
    ("LightGBMError", "Length of labels differs from the length of #data", None, "shape mismatch"),
    (
        "ValueError",
        "operands could not be broadcast together with shapes (3,) (4,)",
        None,
        "shape mismatch",
    ),
    (
        "ValueError",
        "X has 10 features, but StandardScaler is expecting 12 features as input.",
        None,
        "shape mismatch",
    ),
    (
        "ValueError",
        "Length of values (5) does not match length of index (6)",
        None,
        "shape mismatch",
    ),
    ("ValueError", "Input X contains NaN.", None, "NaN or infinity in input"),
    (
        "ValueError",
        "Input contains NaN, infinity or a value too large for dtype('float64').",
        None,
        "NaN or infinity in input",
    ),
    (
        "AttributeError",
        "'DataFrame' object has no attribute 'append'. Did you mean: '_append'?",
        None,
        "missing attribute: DataFrame.append",
    ),
    (
        "AttributeError",
        "module 'numpy' has no attribute 'float'.",
        None,
        "missing attribute: numpy.float",
    ),
    (
        "AttributeError",
        "type object 'Chem' has no attribute 'Foo'",
        None,
        "missing attribute: Chem.Foo",
    ),
    (
        "TypeError",
        "XGBModel.fit() got an unexpected keyword argument 'early_stopping_rounds'",
        None,
        "unexpected keyword argument: XGBModel.fit(early_stopping_rounds=…)",
    ),
    (
        "TypeError",
        "requests.get() got an unexpected keyword argument 'timeout'",  # not a timeout
        None,
        "unexpected keyword argument: requests.get(timeout=…)",
    ),
    (
        "TypeError",
        "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first.",
        None,
        "GPU tensor passed to numpy",
    ),
    ("RuntimeError", "Found no NVIDIA driver on your system.", None, "no GPU available"),
    ("AssertionError", "Torch not compiled with CUDA enabled", None, "no GPU available"),
    (
        "NameError",
        "name 'X_val' is not defined. Did you mean: 'X_va'?",
        None,
        "undefined name: X_val",
    ),
    ("SyntaxError", "invalid syntax", None, "syntax error"),
    ("IndentationError", "unexpected indent", None, "syntax error"),
    ("ValueError", "could not convert string to float: 'CCO'", None, "non-numeric value: 'CCO'"),
    (
        "RateLimitError",
        "Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o'}}",
        None,
        "API rate limit",
    ),
    (
        "BadRequestError",
        "Error code: 400 - {'type': 'error', 'error': {'message': 'prompt is too long: 200100 tokens > 200000 maximum'}}",
        None,
        "prompt too long",
    ),
    ("TooLongPromptError", "", None, "prompt too long"),
    ("AgentMaxStepsError", "Reached max steps.", None, "agent step limit"),
    (
        "GraphRecursionError",
        "Recursion limit of 50 reached without hitting a stop condition.",
        None,
        "agent step limit",
    ),
    ("OSError", "[Errno 28] No space left on device", None, "disk full"),
    (
        "ConnectionError",
        "HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: /x",
        None,
        "network error",
    ),
    ("ValueError", "invalid value for timeout parameter", None, None),
    ("ZeroDivisionError", "division by zero", None, None),
    ("TypeError", "type NoneType doesn't define __round__ method", None, None),
    (None, "", None, None),
    (None, None, None, None),
]


@pytest.mark.parametrize(("exc_type", "message", "term_out", "expected"), CASES)
def test_failure_detail(
    exc_type: str | None, message: str | None, term_out: str | None, expected: str | None
) -> None:
    assert failure_detail(exc_type, message, term_out) == expected


def test_values_are_clipped_and_one_line() -> None:
    module = "a" * 200
    detail = failure_detail("ModuleNotFoundError", f"No module named '{module}'")
    assert detail is not None
    assert len(detail) <= len("missing module: ") + 80
    assert detail.endswith("…")
    assert "\n" not in (failure_detail("KeyError", "'a\nb'") or "")


def test_detail_category_splits_what_failure_detail_joins() -> None:
    assert detail_category("missing module: xgboost") == "missing module"
    assert detail_category("file not found: C:/a: b.csv") == "file not found"
    assert detail_category("timeout") == "timeout"
    assert detail_category(None) is None


def test_categories_are_known_and_never_contain_the_separator() -> None:
    assert all(": " not in c for c in taxonomy.CATEGORIES)
    for exc_type, message, term_out, _expected in CASES:
        found = classify(exc_type, message, term_out)
        assert found is None or found.category in taxonomy.CATEGORIES, found


def test_classify_keeps_category_and_value_apart() -> None:
    found = classify("KeyError", "'label'")
    assert found is not None
    assert (found.category, found.value) == ("missing key", "'label'")


def test_only_the_tail_of_a_long_output_is_searched() -> None:
    early = "exceeded the time limit\n"
    filler = "x" * (64 * 1024) + "\n"
    assert failure_detail("KeyboardInterrupt", "", early + filler) is None
    assert failure_detail("KeyboardInterrupt", "", filler + early) == "timeout"


# --- the samples: real AIDE 0.2.2 tracebacks ---------------------------------------------

#: What each exception type in the samples must come out as (the samples repeat these).
SAMPLE_DETAILS = {
    "ModuleNotFoundError": "missing module: lightgbm_missing_module",
    "KeyError": "missing key: 'label_does_not_exist'",
    "TimeoutError": "timeout",
    "FileNotFoundError": "file not found: ./input/missing_metadata.json",
    "ValueError": "shape mismatch",
    "AttributeError": "missing attribute: Model.predict",
    "TypeError": None,
    "ZeroDivisionError": None,
}


@pytest.fixture(scope="module")
def sample_journals(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    if not SAMPLE_ARCHIVES.is_dir():
        pytest.fail(f"samples missing: {SAMPLE_ARCHIVES}")
    dest = tmp_path_factory.mktemp("samples")
    for archive in SAMPLE_ARCHIVES.glob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    journals = sorted(dest.rglob("journal.json"))
    assert journals
    return journals


def test_samples_real_tracebacks_get_their_detail(sample_journals: list[Path]) -> None:
    seen: Counter[str] = Counter()
    for path in sample_journals:
        for n in load_journal(path).nodes:
            if n.error is None:
                continue
            assert n.error.type in SAMPLE_DETAILS, f"unexpected type in samples: {n.error.type}"
            got = failure_detail(n.error.type, n.error.message, n.term_out)
            assert got == SAMPLE_DETAILS[n.error.type], (path, n.step, n.error)
            seen[n.error.type] += 1
    assert set(seen) == set(SAMPLE_DETAILS)  # every row above was exercised


def test_samples_timeouts_are_found_from_the_output_alone(sample_journals: list[Path]) -> None:
    """Even without AIDE's exc_type, the interrupted step's output says it timed out."""
    checked = 0
    for path in sample_journals:
        for n in load_journal(path).nodes:
            if n.error is not None and n.error.type == "TimeoutError":
                assert failure_detail("KeyboardInterrupt", "", n.term_out) == "timeout"
                checked += 1
    assert checked > 0


# --- last_error: the end of a non-AIDE run's log ------------------------------------------

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/home/agent/start.py", line 131, in main\n'
    "    result = agent.run(task_description)\n"
    '  File "/opt/conda/envs/agent/lib/python3.11/site-packages/langgraph/pregel/__init__.py", line 1724, in stream\n'
    "    raise GraphRecursionError(msg)\n"
    "langgraph.errors.GraphRecursionError: Recursion limit of 50 reached without hitting a stop condition.\n"
)


def test_no_error_in_a_clean_log() -> None:
    assert last_error("") is None
    assert last_error("[Worker 0] Running seed 0\nall good\nERROR_CODE=0 means fine\n") is None


def test_traceback_gives_short_type_message_and_excerpt() -> None:
    found = last_error("[biomni] step 3: thinking\n" + TRACEBACK)
    assert found == LogError(
        type="GraphRecursionError",
        message="Recursion limit of 50 reached without hitting a stop condition.",
        excerpt=TRACEBACK.rstrip("\n"),
        source="traceback",
    )
    assert found.detail == "agent step limit"


def test_the_last_of_chained_tracebacks_wins() -> None:
    text = (
        "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nKeyError: 'x'\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        'Traceback (most recent call last):\n  File "b.py", line 2, in <module>\n'
        "ValueError: bad x\n"
    )
    found = last_error(text)
    assert found is not None
    assert (found.type, found.message) == ("ValueError", "bad x")


def test_error_summary_repeating_the_traceback_type_keeps_the_traceback() -> None:
    found = last_error(TRACEBACK + "ERROR: Run task_1 failed: GraphRecursionError\n")
    assert found is not None
    assert found.source == "traceback"
    assert found.type == "GraphRecursionError"


def test_a_later_unrelated_error_line_wins() -> None:
    """An earlier exception the agent recovered from is not what ended the run."""
    found = last_error(
        TRACEBACK
        + "[stella] step 9: retrying\nERROR: Agent stella timed out after 12h; container killed\n"
    )
    assert found is not None
    assert found.source == "error line"
    assert found.type is None
    assert found.message == "Agent stella timed out after 12h; container killed"
    assert found.detail == "timeout"


def test_an_earlier_error_line_loses_to_a_later_traceback() -> None:
    found = last_error("ERROR: something flaky\n" + TRACEBACK)
    assert found is not None
    assert found.source == "traceback"


def test_error_line_names_its_exception() -> None:
    found = last_error(
        "2025-08-25 17:09:05 ERROR agent.run: step failed: openai.RateLimitError quota\n"
    )
    assert found is not None
    assert found.type == "RateLimitError"
    assert found.message == "agent.run: step failed: openai.RateLimitError quota"
    assert found.detail == "API rate limit"


def test_prefixed_log_lines() -> None:
    text = "".join(f"[Worker 0] {line}\n" for line in TRACEBACK.splitlines())
    found = last_error(text)
    assert found is not None
    assert found.type == "GraphRecursionError"
    assert found.excerpt.startswith("Traceback (most recent call last):\n  File")


def test_exception_without_message() -> None:
    found = last_error(
        'Traceback (most recent call last):\n  File "/home/agent/MLAgentBench/LLM.py", line 198, '
        "in complete_text_claude\n    raise TooLongPromptError()\nMLAgentBench.schema.TooLongPromptError\n"
    )
    assert found is not None
    assert (found.type, found.message, found.detail) == (
        "TooLongPromptError",
        "",
        "prompt too long",
    )


def test_truncated_traceback_has_no_type() -> None:
    found = last_error('Traceback (most recent call last):\n  File "a.py", line 1, in <module>\n')
    assert found is not None
    assert found.type is None
    assert found.source == "traceback"


def test_long_tracebacks_are_cut_from_the_top() -> None:
    frames = "".join(f'  File "f{i}.py", line {i}, in g\n    g()\n' for i in range(2000))
    found = last_error(
        "Traceback (most recent call last):\n" + frames + "RecursionError: too deep\n"
    )
    assert found is not None
    assert found.type == "RecursionError"
    assert len(found.excerpt) < 7000
    assert found.excerpt.endswith("RecursionError: too deep")
