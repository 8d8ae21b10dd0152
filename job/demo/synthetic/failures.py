"""Why a step failed: a catalogue of the crashes agents really hit, with real tracebacks.

Each failure edits the step's script the way an LLM's mistake would (a wrong
column, a missing package, a removed pandas method...), then produces what
AIDE's interpreter records about it: the Python 3.11 traceback text (library
frames, carets, chained exceptions), ``exc_type``, ``exc_info`` (``args`` as
strings plus ``name``/``msg``/``obj`` when the exception has them) and
``exc_stack`` (``[file, line, function, source]`` from AIDE's ``exec`` frame down).
Line numbers of ``runfile.py`` frames point at the line that really holds the
failing statement.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from job.demo.synthetic.scripts import TORCH_MODELS, Recipe, Script
from job.demo.synthetic.terminal import SITE, RunData

#: The frame AIDE's interpreter puts on top of every exc_stack.
AIDE_FRAME = [
    f"{SITE}/aide/interpreter.py",
    147,
    "_run_session",
    'exec(compile(code, self.agent_file_name, "exec"), global_scope)',
]


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    func: str
    source: str = ""
    caret: str | None = None  # the 3.11 ~~~^^^ line, aligned with ``source``


@dataclass
class Crash:
    """Everything the journal and the prose need to know about one failed step."""

    kind: str
    exc_type: str
    exc_line: str  # last line(s) of the traceback: "KeyError: 'target'"
    exc_info: dict[str, Any]
    frames: list[Frame]
    stage: str  # how far the script got (terminal.STAGES)
    cause: str  # one sentence, for the analysis and the next plan
    fix: str  # what a debug step does about it
    chained: str = ""  # text of a "direct cause" traceback printed before the main one
    folds_done: int = 0
    partial_loop: bool = False
    timed_out: bool = False
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def traceback(self) -> str:
        return self.chained + format_traceback(self.frames, self.exc_line)

    @property
    def exc_stack(self) -> list[list[Any]]:
        return [AIDE_FRAME] + [[f.file, f.line, f.func, f.source] for f in self.frames]


def format_traceback(frames: list[Frame], exc_line: str) -> str:
    parts = ["Traceback (most recent call last):\n"]
    for f in frames:
        parts.append(f'  File "{f.file}", line {f.line}, in {f.func}\n')
        if f.source:
            parts.append(f"    {f.source}\n")
            if f.caret:
                parts.append(f"    {f.caret}\n")
    parts.append(exc_line + "\n")
    return "".join(parts)


def caret(source: str, expr: str, tilde: int = 0) -> str | None:
    """Python 3.11's position markers under ``expr`` (none when it is the whole line)."""
    pos = source.find(expr)
    if pos < 0 or expr == source:
        return None
    return " " * pos + "~" * tilde + "^" * (len(expr) - tilde)


def _run_frame(script: Script, role: str, expr: str | None = None, tilde: int = 0) -> Frame:
    source = script.line(role).strip()
    return Frame(
        "runfile.py",
        script.line_no(role),
        "<module>",
        source,
        caret(source, expr, tilde) if expr else None,
    )


def _lib(path: str, line: int, func: str, source: str = "", expr: str | None = None) -> Frame:
    return Frame(f"{SITE}/{path}", line, func, source, caret(source, expr) if expr else None)


def _call_expr(source: str) -> str:
    """The right-hand side of an assignment, which 3.11 underlines."""
    if " = " in source and not source.startswith(("return", "raise")):
        return source.split(" = ", 1)[1]
    return source


def _frame_call(script: Script, role: str) -> Frame:
    source = script.line(role).strip()
    return _run_frame(script, role, _call_expr(source))


# --- the catalogue ----------------------------------------------------------------------

_EXTRA_MODULES = (
    ("import torch_geometric", "torch_geometric"),
    ("from mordred import Calculator, descriptors", "mordred"),
    ("import esm", "esm"),
    ("from transformers import AutoModel, AutoTokenizer", "transformers"),
    ("import deepchem as dc", "deepchem"),
    ("from Bio import SeqIO", "Bio"),
    ("import optuna", "optuna"),
    ("import xgboost as xgb", "xgboost"),
    ("import lightgbm as lgb", "lightgbm"),
    ("from rdkit.Chem import rdFingerprintGenerator", "rdkit"),
)

_OPTIONAL = ("lightgbm", "xgboost", "catboost", "rdkit", "scanpy", "timm", "PIL")


def missing_module(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    present = [role for role in s.anchors if role.split(":")[-1] in _OPTIONAL]
    if present and rng.random() < 0.6:
        role = rng.choice(present)
        module = role.split(":", 1)[1]
        if module == "scanpy":
            module = "anndata"
        if module == "PIL":
            module = "PIL"
    else:
        line, module = rng.choice(_EXTRA_MODULES)
        role = "import:extra"
        s.insert_after(s.last_import(), line, role)
    msg = f"No module named '{module}'"
    return Crash(
        kind="missing_module",
        exc_type="ModuleNotFoundError",
        exc_line=f"ModuleNotFoundError: {msg}",
        exc_info={"args": [msg], "name": module, "msg": msg},
        frames=[_run_frame(s, role)],
        stage="import",
        cause=f"the `{module}` package is not installed in the execution environment",
        fix=f"drop the dependency on `{module}` and use a library that is available",
        tags={"module": module},
    )


_WRONG_COLUMNS = ("target", "label", "y", "Y", "activity", "score", "value", "TARGET")


def _key_error_chain(key: str) -> str:
    frames = [
        _lib(
            "pandas/core/indexes/base.py",
            3805,
            "get_loc",
            "return self._engine.get_loc(casted_key)",
            "self._engine.get_loc(casted_key)",
        ),
        Frame("index.pyx", 167, "pandas._libs.index.IndexEngine.get_loc"),
        Frame("index.pyx", 196, "pandas._libs.index.IndexEngine.get_loc"),
        Frame(
            "pandas/_libs/hashtable_class_helper.pxi",
            7081,
            "pandas._libs.hashtable.PyObjectHashTable.get_item",
        ),
        Frame(
            "pandas/_libs/hashtable_class_helper.pxi",
            7089,
            "pandas._libs.hashtable.PyObjectHashTable.get_item",
        ),
    ]
    return (
        format_traceback(frames, f"KeyError: {key!r}")
        + "\nThe above exception was the direct cause of the following exception:\n\n"
    )


def key_error(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    tv, t = r.train_var, r.task
    if rng.random() < 0.7:
        wrong = rng.choice([c for c in _WRONG_COLUMNS if c != t.target])
        s.replace_line("target", s.line("target").replace(f'["{t.target}"]', f'["{wrong}"]'))
        role, stage, frame_obj = "target", "target", tv
        cause = f"the training table has no `{wrong}` column; the target is `{t.target}`"
    else:
        wrong = rng.choice(("id", "ID", "Id", "index", "sample_id"))
        if wrong == t.id_col:
            wrong = "row_id"
        s.replace_line(
            "submission_frame",
            s.line("submission_frame").replace(f'test["{t.id_col}"]', f'test["{wrong}"]'),
        )
        role, stage, frame_obj = "submission_frame", "submission", "test"
        cause = f"the test table has no `{wrong}` column when the submission is built"
    expr = f'{frame_obj}["{wrong}"]'
    frames = [
        _run_frame(s, role, expr, tilde=len(frame_obj)),
        _lib(
            "pandas/core/frame.py",
            4102,
            "__getitem__",
            "indexer = self.columns.get_loc(key)",
            "self.columns.get_loc(key)",
        ),
        _lib("pandas/core/indexes/base.py", 3812, "get_loc", "raise KeyError(key) from err"),
    ]
    return Crash(
        kind="key_error",
        exc_type="KeyError",
        exc_line=f"KeyError: {wrong!r}",
        exc_info={"args": [wrong]},
        frames=frames,
        chained=_key_error_chain(wrong),
        stage=stage,
        cause=cause,
        fix="print the available columns and use the right column name",
        tags={"column": wrong},
    )


def file_not_found(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    wrong = rng.choice(
        ("train_data.csv", "training.csv", "data/train.csv", "train_set.csv", "train.tsv")
    )
    line = s.line("load_train")
    old = f'"{r.train_file}"'
    s.replace_line("load_train", line.replace(old, f'"{wrong}"'))
    path = f"{r.data_dir}/{wrong}"
    if r.train_file.endswith(".h5ad") and r.task.kind == "singlecell":
        wrong = wrong.rsplit(".", 1)[0] + ".h5ad"
        s.replace_line("load_train", line.replace(old, f'"{wrong}"'))
        path = f"{r.data_dir}/{wrong}"
        msg = (
            f"Unable to synchronously open file (unable to open file: name = '{path}', "
            "errno = 2, error message = 'No such file or directory', flags = 0, o_flags = 0)"
        )
        frames = [
            _frame_call(s, "load_train"),
            _lib(
                "anndata/_io/h5ad.py",
                237,
                "read_h5ad",
                'with h5py.File(filename, "r") as f:',
                'h5py.File(filename, "r")',
            ),
            _lib(
                "h5py/_hl/files.py",
                562,
                "__init__",
                "fid = make_fid(name, mode, userblock_size, fapl, fcpl, swmr=swmr)",
                "make_fid(name, mode, userblock_size, fapl, fcpl, swmr=swmr)",
            ),
            _lib(
                "h5py/_hl/files.py",
                235,
                "make_fid",
                "fid = h5f.open(name, flags, fapl=fapl)",
                "h5f.open(name, flags, fapl=fapl)",
            ),
            Frame("h5py/_objects.pyx", 54, "h5py._objects.with_phil.wrapper"),
            Frame("h5py/_objects.pyx", 55, "h5py._objects.with_phil.wrapper"),
            Frame("h5py/h5f.pyx", 102, "h5py.h5f.open"),
        ]
        line_text = f"FileNotFoundError: [Errno 2] {msg}"
        args = ["2", msg]
    else:
        frames = [
            _frame_call(s, "load_train"),
            _lib(
                "pandas/io/parsers/readers.py",
                1026,
                "read_csv",
                "return _read(filepath_or_buffer, kwds)",
                "_read(filepath_or_buffer, kwds)",
            ),
            _lib(
                "pandas/io/parsers/readers.py",
                620,
                "_read",
                "parser = TextFileReader(filepath_or_buffer, **kwds)",
                "TextFileReader(filepath_or_buffer, **kwds)",
            ),
            _lib(
                "pandas/io/parsers/readers.py",
                1620,
                "__init__",
                "self._engine = self._make_engine(f, self.engine)",
                "self._make_engine(f, self.engine)",
            ),
            _lib(
                "pandas/io/parsers/readers.py",
                1880,
                "_make_engine",
                "self.handles = get_handle(",
                "get_handle(",
            ),
            _lib("pandas/io/common.py", 873, "get_handle", "handle = open(", "open("),
        ]
        if r.train_file.endswith(".parquet"):
            s.replace_line(
                "load_train", s.line("load_train").replace("pd.read_parquet", "pd.read_csv")
            )
            frames[0] = _frame_call(s, "load_train")
        line_text = f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'"
        args = ["2", "No such file or directory"]
    return Crash(
        kind="file_not_found",
        exc_type="FileNotFoundError",
        exc_line=line_text,
        exc_info={"args": args},
        frames=frames,
        stage="load",
        cause=f"`{path}` does not exist; the input folder only has {r.train_file} and test.csv",
        fix=f"list {r.data_dir} first and read {r.train_file}",
        tags={"path": path},
    )


def _oom_message(rng: random.Random) -> tuple[str, str]:
    alloc = rng.choice(
        ("512.00 MiB", "1.50 GiB", "2.00 GiB", "3.91 GiB", "768.00 MiB", "11.72 GiB")
    )
    if rng.random() < 0.5:
        total = rng.choice(("15.78", "22.04", "39.39", "79.15"))
        used = f"{float(total) * rng.uniform(0.8, 0.95):.2f}"
        free = rng.choice(("312.00 MiB", "1.12 GiB", "45.06 MiB", "820.44 MiB"))
        msg = (
            f"CUDA out of memory. Tried to allocate {alloc} (GPU 0; {total} GiB total capacity; "
            f"{used} GiB already allocated; {free} free; {float(used) + 0.4:.2f} GiB reserved in total by "
            "PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to "
            "avoid fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF"
        )
        return "RuntimeError", msg
    total = rng.choice(("23.57", "44.34", "79.15"))
    free = rng.choice(("212.81 MiB", "1.06 GiB", "18.00 MiB"))
    used = f"{float(total) * rng.uniform(0.9, 0.99):.2f}"
    msg = (
        f"CUDA out of memory. Tried to allocate {alloc}. GPU 0 has a total capacity of {total} GiB "
        f"of which {free} is free. Process {rng.randrange(1000, 60000)} has {used} GiB memory in use. "
        f"Of the allocated memory {float(used) - 0.9:.2f} GiB is allocated by PyTorch, and "
        f"{rng.uniform(20, 900):.2f} MiB is reserved by PyTorch but unallocated. If reserved but "
        "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to "
        "avoid fragmentation.  See documentation for Memory Management  "
        "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )
    return rng.choice(("torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")), msg


def _module_call_frames() -> list[Frame]:
    return [
        _lib(
            "torch/nn/modules/module.py",
            1736,
            "_wrapped_call_impl",
            "return self._call_impl(*args, **kwargs)",
            "self._call_impl(*args, **kwargs)",
        ),
        _lib(
            "torch/nn/modules/module.py",
            1747,
            "_call_impl",
            "return forward_call(*args, **kwargs)",
            "forward_call(*args, **kwargs)",
        ),
    ]


def _forward_frames(s: Script, r: Recipe) -> list[Frame]:
    frames = [_run_frame(s, "forward", "model(xb)"), *_module_call_frames()]
    if r.model == "resnet":
        frames += [
            _lib(
                "torchvision/models/resnet.py",
                285,
                "forward",
                "return self._forward_impl(x)",
                "self._forward_impl(x)",
            ),
            _lib(
                "torchvision/models/resnet.py",
                268,
                "_forward_impl",
                "x = self.conv1(x)",
                "self.conv1(x)",
            ),
            *_module_call_frames(),
            _lib(
                "torch/nn/modules/conv.py",
                554,
                "forward",
                "return self._conv_forward(input, self.weight, self.bias)",
                "self._conv_forward(input, self.weight, self.bias)",
            ),
            _lib("torch/nn/modules/conv.py", 549, "_conv_forward", "return F.conv2d(", "F.conv2d("),
        ]
    elif r.model in ("efficientnet", "simple_cnn"):
        frames += [
            _lib(
                "torch/nn/modules/container.py",
                250,
                "forward",
                "input = module(input)",
                "module(input)",
            ),
            *_module_call_frames(),
            _lib(
                "torch/nn/modules/conv.py",
                554,
                "forward",
                "return self._conv_forward(input, self.weight, self.bias)",
                "self._conv_forward(input, self.weight, self.bias)",
            ),
            _lib("torch/nn/modules/conv.py", 549, "_conv_forward", "return F.conv2d(", "F.conv2d("),
        ]
    else:
        src = s.line("forward_inner").strip()
        frames += [
            Frame(
                "runfile.py", s.line_no("forward_inner"), "forward", src, caret(src, "self.body(x)")
            ),
            *_module_call_frames(),
            _lib(
                "torch/nn/modules/container.py",
                250,
                "forward",
                "input = module(input)",
                "module(input)",
            ),
            *_module_call_frames(),
            _lib(
                "torch/nn/modules/linear.py",
                125,
                "forward",
                "return F.linear(input, self.weight, self.bias)",
                "F.linear(input, self.weight, self.bias)",
            ),
        ]
    return frames


def cuda_oom(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    qualname, msg = _oom_message(rng)
    return Crash(
        kind="cuda_oom",
        exc_type=qualname.rsplit(".", 1)[-1],
        exc_line=f"{qualname}: {msg}",
        exc_info={"args": [msg]},
        frames=_forward_frames(s, r),
        stage="loop",
        folds_done=0,
        cause=f"the GPU ran out of memory with batch size {r.batch_size}",
        fix="halve the batch size, use mixed precision and free cached memory between folds",
        tags={"batch_size": str(r.batch_size)},
    )


def shape_mismatch(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    if r.model in TORCH_MODELS and r.task.kind != "image":
        wrong = d.n_features - rng.choice((4, 2, 1)) if d.n_features > 8 else d.n_features + 3
        msg = f"mat1 and mat2 shapes cannot be multiplied ({r.batch_size}x{d.n_features} and {wrong}x{r.hidden})"
        return Crash(
            kind="shape_mismatch",
            exc_type="RuntimeError",
            exc_line=f"RuntimeError: {msg}",
            exc_info={"args": [msg]},
            frames=_forward_frames(s, r),
            stage="loop",
            cause=f"the first Linear layer expects {wrong} inputs but the features have {d.n_features} columns",
            fix="build the network from the actual feature count",
        )
    tv, t = r.train_var, r.task
    dropped = rng.randrange(3, 40)
    s.replace_line("target", f'y = {tv}.dropna(subset=["{t.target}"])["{t.target}"].values')
    fit = _frame_call(s, "fit")
    if r.model == "lightgbm":
        msg = "Length of labels differs from the length of #data"
        return Crash(
            kind="shape_mismatch",
            exc_type="LightGBMError",
            exc_line=f"lightgbm.basic.LightGBMError: {msg}",
            exc_info={"args": [msg]},
            frames=[
                fit,
                _lib("lightgbm/sklearn.py", 1189, "fit", "super().fit(", "super().fit("),
                _lib("lightgbm/sklearn.py", 955, "fit", "self._Booster = train(", "train("),
                _lib(
                    "lightgbm/engine.py",
                    282,
                    "train",
                    "booster = Booster(params=params, train_set=train_set)",
                    "Booster(params=params, train_set=train_set)",
                ),
                _lib(
                    "lightgbm/basic.py",
                    3637,
                    "__init__",
                    "train_set.construct()",
                    "train_set.construct()",
                ),
                _lib(
                    "lightgbm/basic.py", 2576, "construct", "self._lazy_init(", "self._lazy_init("
                ),
                _lib(
                    "lightgbm/basic.py",
                    2151,
                    "_lazy_init",
                    "self.set_label(label)",
                    "self.set_label(label)",
                ),
                _lib(
                    "lightgbm/basic.py",
                    3004,
                    "set_label",
                    "_safe_call(_LIB.LGBM_DatasetSetField(",
                    "_safe_call(_LIB.LGBM_DatasetSetField(",
                ),
                _lib(
                    "lightgbm/basic.py",
                    296,
                    "_safe_call",
                    'raise LightGBMError(_LIB.LGBM_GetLastError().decode("utf-8"))',
                ),
            ],
            stage="loop",
            cause=f"`y` was built after dropping {dropped} rows with a missing target while the features kept them",
            fix="drop the rows with a missing target from the table before building both X and y",
        )
    n_x, n_y = d.n_train, d.n_train - dropped
    msg = f"Found input variables with inconsistent numbers of samples: [{n_x}, {n_y}]"
    return Crash(
        kind="shape_mismatch",
        exc_type="ValueError",
        exc_line=f"ValueError: {msg}",
        exc_info={"args": [msg]},
        frames=[
            _run_frame(s, "loop", f"kf.split({r.x_var})") if rng.random() < 0.3 else fit,
            _lib(
                "sklearn/base.py",
                1473,
                "wrapper",
                "return fit_method(estimator, *args, **kwargs)",
                "fit_method(estimator, *args, **kwargs)",
            ),
            _lib(
                "sklearn/ensemble/_forest.py",
                363,
                "fit",
                "X, y = self._validate_data(",
                "self._validate_data(",
            ),
            _lib(
                "sklearn/base.py",
                650,
                "_validate_data",
                "X, y = check_X_y(X, y, **check_params)",
                "check_X_y(X, y, **check_params)",
            ),
            _lib("sklearn/utils/validation.py", 1291, "check_X_y", "check_consistent_length(X, y)"),
            _lib(
                "sklearn/utils/validation.py", 460, "check_consistent_length", "raise ValueError("
            ),
        ],
        stage="loop",
        cause=f"X has {n_x} rows but y has {n_y} after dropping rows with a missing target",
        fix="filter the table once and derive X and y from the same rows",
    )


_NAN_MESSAGE = (
    "Input X contains NaN.\n{model} does not accept missing values encoded as NaN natively. "
    "For supervised learning, you might want to consider sklearn.ensemble.HistGradientBoostingClassifier "
    "and Regressor which accept missing values encoded as NaNs natively. Alternatively, it is possible to "
    "preprocess the data, for instance by using an imputer transformer in a pipeline or drop samples with "
    "missing values. See https://scikit-learn.org/stable/modules/impute.html You can find a list of all "
    "estimators that handle NaN values at the following page: "
    "https://scikit-learn.org/stable/modules/impute.html#estimators-that-handle-nan-values"
)


def nan_input(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    model = {"ridge": "Ridge", "knn": "KNeighborsRegressor"}.get(r.model, "RandomForestRegressor")
    msg = _NAN_MESSAGE.format(model=model)
    return Crash(
        kind="nan_input",
        exc_type="ValueError",
        exc_line=f"ValueError: {msg}",
        exc_info={"args": [msg]},
        frames=[
            _frame_call(s, "fit"),
            _lib(
                "sklearn/base.py",
                1473,
                "wrapper",
                "return fit_method(estimator, *args, **kwargs)",
                "fit_method(estimator, *args, **kwargs)",
            ),
            _lib(
                "sklearn/linear_model/_ridge.py",
                1242,
                "fit",
                "X, y = self._validate_data(",
                "self._validate_data(",
            ),
            _lib(
                "sklearn/base.py",
                650,
                "_validate_data",
                "X, y = check_X_y(X, y, **check_params)",
                "check_X_y(X, y, **check_params)",
            ),
            _lib(
                "sklearn/utils/validation.py", 1273, "check_X_y", "X = check_array(", "check_array("
            ),
            _lib(
                "sklearn/utils/validation.py",
                1064,
                "check_array",
                "_assert_all_finite(",
                "_assert_all_finite(",
            ),
            _lib(
                "sklearn/utils/validation.py",
                123,
                "_assert_all_finite",
                "_assert_all_finite_element_wise(",
            ),
            _lib(
                "sklearn/utils/validation.py",
                172,
                "_assert_all_finite_element_wise",
                "raise ValueError(msg_err)",
            ),
        ],
        stage="loop",
        cause=f"{model} cannot handle the NaNs left in the descriptor columns",
        fix="impute missing values with the training median before fitting",
    )


def removed_api(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    tv = r.train_var
    if r.model in ("lightgbm", "xgboost") and rng.random() < 0.6:
        fit = s.line("fit")
        s.replace_line(
            "fit",
            fit.split("(", 1)[0]
            + "(X_tr, y_tr, eval_set=[(X_va, y_va)], early_stopping_rounds=100, verbose=200)",
        )
        cls = "LGBMRegressor" if r.model == "lightgbm" else "XGBModel"
        msg = f"{cls}.fit() got an unexpected keyword argument 'early_stopping_rounds'"
        return Crash(
            kind="removed_api",
            exc_type="TypeError",
            exc_line=f"TypeError: {msg}",
            exc_info={"args": [msg]},
            frames=[_frame_call(s, "fit")],
            stage="loop",
            cause=f"`early_stopping_rounds` is no longer a `fit()` argument in the installed {r.model}",
            fix="pass early stopping as a callback / constructor argument instead",
        )
    if rng.random() < 0.5:
        s.insert_after("load_test", f"full = {tv}.append(test, ignore_index=True)", "append")
        obj = _frame_repr(rng, r, d)
        msg = "'DataFrame' object has no attribute 'append'"
        return Crash(
            kind="removed_api",
            exc_type="AttributeError",
            exc_line=f"AttributeError: {msg}. Did you mean: '_append'?",
            exc_info={"args": [msg], "name": "append", "obj": obj},
            frames=[
                _run_frame(s, "append", f"{tv}.append", tilde=len(tv)),
                _lib(
                    "pandas/core/generic.py",
                    6299,
                    "__getattr__",
                    "return object.__getattribute__(self, name)",
                    "object.__getattribute__(self, name)",
                ),
            ],
            stage="load",
            cause="`DataFrame.append` was removed in pandas 2.0",
            fix="use `pd.concat([train, test], ignore_index=True)`",
        )
    s.insert_after("features", f"{r.x_var} = {r.x_var}.astype(np.float)", "astype")
    msg = (
        "module 'numpy' has no attribute 'float'.\n`np.float` was a deprecated alias for the builtin "
        "`float`. To avoid this error in existing code, use `float` by itself. Doing this will not "
        "modify any behavior and is safe. If you specifically wanted the numpy scalar type, use "
        "`np.float64` here.\nThe aliases was originally deprecated in NumPy 1.20; for more details and "
        "guidance see the original release note at:\n    "
        "https://numpy.org/devdocs/release/1.20.0-notes.html#deprecations"
    )
    return Crash(
        kind="removed_api",
        exc_type="AttributeError",
        exc_line=f"AttributeError: {msg}",
        exc_info={
            "args": [msg],
            "name": "float",
            "obj": f"<module 'numpy' from '{SITE}/numpy/__init__.py'>",
        },
        frames=[
            _run_frame(s, "astype", "np.float", tilde=2),
            _lib(
                "numpy/__init__.py",
                324,
                "__getattr__",
                "raise AttributeError(__former_attrs__[attr])",
            ),
        ],
        stage="features",
        cause="`np.float` was removed in NumPy 1.24",
        fix="use the builtin `float` (or `np.float32`)",
    )


def _frame_repr(rng: random.Random, r: Recipe, d: RunData) -> str:
    """``str(df)`` as AttributeError.obj carries it: AIDE stores the whole repr."""
    t = r.task
    rows = []
    for i in (0, 1, 2, 3, 4):
        rows.append(f"{i:<6}{_sample_id(rng, t.kind, i):>40}  {rng.uniform(-3, 3):>10.6f}")
    rows.append("...")
    for i in range(d.n_train - 5, d.n_train):
        rows.append(f"{i:<6}{_sample_id(rng, t.kind, i):>40}  {rng.uniform(-3, 3):>10.6f}")
    header = f"{'':6}{t.id_col:>40}  {t.target:>10}"
    return "\n".join([header, *rows, "", f"[{d.n_train} rows x 2 columns]"])


def _sample_id(rng: random.Random, kind: str, i: int) -> str:
    if kind == "smiles":
        return rng.choice(
            (
                "CC(C)Oc1ccc(cc1)C(=O)N",
                "O=C(O)c1ccccc1O",
                "CN1CCN(CC1)c1ccc(F)cc1",
                "Cc1ccc(S(N)(=O)=O)cc1",
            )
        )
    if kind == "sequence":
        return f"{rng.choice('ACDEFGHIKLMNPQRSTVWY')}{rng.randrange(1, 500)}{rng.choice('ACDEFGHIKLMNPQRSTVWY')}"
    return f"{rng.getrandbits(40):010x}"


def undefined_name(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    src = s.line("predict")
    if r.model in TORCH_MODELS:
        wrong, right = "val_preds", "preds"
        s.replace_line("predict", src.replace("= preds", "= val_preds"))
        stage, folds = "loop", 0
    else:
        wrong, right = "X_val", "X_va"
        s.replace_line("predict", src.replace("predict(X_va)", "predict(X_val)"))
        stage, folds = "loop", 0
    msg = f"name '{wrong}' is not defined"
    return Crash(
        kind="undefined_name",
        exc_type="NameError",
        exc_line=f"NameError: {msg}. Did you mean: '{right}'?",
        exc_info={"args": [msg], "name": wrong},
        frames=[_run_frame(s, "predict", wrong)],
        stage=stage,
        folds_done=folds,
        partial_loop=True,
        cause=f"`{wrong}` is used but the variable is called `{right}`",
        fix=f"rename `{wrong}` to `{right}`",
    )


def array_memory(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    cols = rng.choice((77312, 131072, 40000, 262144))
    rows = max(d.n_train, 50000)
    gib = rows * cols * 8 / 1024**3
    shape = f"({rows}, {cols})"
    msg = f"Unable to allocate {gib:.1f} GiB for an array with shape {shape} and data type float64"
    return Crash(
        kind="array_memory",
        exc_type="_ArrayMemoryError",
        exc_line=f"numpy.core._exceptions._ArrayMemoryError: {msg}",
        exc_info={"args": [shape, "float64"]},
        frames=[
            _frame_call(s, "features"),
            _lib(
                "numpy/core/shape_base.py",
                449,
                "stack",
                "return _nx.concatenate(expanded_arrays, axis=axis, out=out,",
                "_nx.concatenate(expanded_arrays, axis=axis, out=out,",
            ),
        ],
        stage="features",
        cause=f"a dense float64 feature matrix of {gib:.0f} GiB does not fit in memory",
        fix="use sparse or float32 features and fewer columns",
    )


def timeout(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    if r.model in TORCH_MODELS:
        frames = [
            _run_frame(s, "backward"),
            _lib(
                "torch/_tensor.py",
                581,
                "backward",
                "torch.autograd.backward(",
                "torch.autograd.backward(",
            ),
            _lib(
                "torch/autograd/__init__.py",
                347,
                "backward",
                "_engine_run_backward(",
                "_engine_run_backward(",
            ),
            _lib(
                "torch/autograd/graph.py",
                825,
                "_engine_run_backward",
                "return Variable._execution_engine.run_backward(  # Calls into the C++ engine to run the backward pass",
                "Variable._execution_engine.run_backward(",
            ),
        ]
    elif r.model == "lightgbm":
        frames = [
            _frame_call(s, "fit"),
            _lib("lightgbm/sklearn.py", 1189, "fit", "super().fit(", "super().fit("),
            _lib("lightgbm/sklearn.py", 955, "fit", "self._Booster = train(", "train("),
            _lib(
                "lightgbm/engine.py",
                307,
                "train",
                "booster.update(fobj=fobj)",
                "booster.update(fobj=fobj)",
            ),
            _lib(
                "lightgbm/basic.py",
                4136,
                "update",
                "_LIB.LGBM_BoosterUpdateOneIter(",
                "_LIB.LGBM_BoosterUpdateOneIter(",
            ),
        ]
    elif r.model == "xgboost":
        frames = [
            _frame_call(s, "fit"),
            _lib("xgboost/core.py", 726, "inner_f", "return func(**kwargs)", "func(**kwargs)"),
            _lib("xgboost/sklearn.py", 1108, "fit", "self._Booster = train(", "train("),
            _lib("xgboost/core.py", 726, "inner_f", "return func(**kwargs)", "func(**kwargs)"),
            _lib(
                "xgboost/training.py",
                181,
                "train",
                "bst.update(dtrain, iteration=i, fobj=obj)",
                "bst.update(dtrain, iteration=i, fobj=obj)",
            ),
            _lib(
                "xgboost/core.py",
                2100,
                "update",
                "_LIB.XGBoosterUpdateOneIter(",
                "_LIB.XGBoosterUpdateOneIter(",
            ),
        ]
    else:
        frames = [
            _frame_call(s, "fit"),
            _lib(
                "sklearn/base.py",
                1473,
                "wrapper",
                "return fit_method(estimator, *args, **kwargs)",
                "fit_method(estimator, *args, **kwargs)",
            ),
            _lib("sklearn/ensemble/_forest.py", 489, "fit", "trees = Parallel(", "Parallel("),
            _lib(
                "sklearn/utils/parallel.py",
                74,
                "__call__",
                "return super().__call__(iterable_with_config)",
                "super().__call__(iterable_with_config)",
            ),
            _lib(
                "joblib/parallel.py",
                2007,
                "__call__",
                "return output if self.return_generator else list(output)",
                "list(output)",
            ),
            _lib("joblib/parallel.py", 1650, "_get_outputs", "yield from self._retrieve()"),
            _lib("joblib/parallel.py", 1762, "_retrieve", "time.sleep(0.01)"),
        ]
    return Crash(
        kind="timeout",
        exc_type="TimeoutError",
        exc_line="KeyboardInterrupt",
        exc_info={"args": []},
        frames=frames,
        stage="loop",
        folds_done=rng.randrange(0, max(1, r.folds - 1)),
        partial_loop=True,
        timed_out=True,
        cause=f"training {r.folds} folds with {r.n_estimators} rounds / {r.epochs} epochs exceeded the time limit",
        fix="train fewer rounds, subsample the data and use 3 folds to fit within the time limit",
    )


def tensor_to_numpy(rng: random.Random, s: Script, r: Recipe, d: RunData) -> Crash:
    msg = "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."
    return Crash(
        kind="tensor_device",
        exc_type="TypeError",
        exc_line=f"TypeError: {msg}",
        exc_info={"args": [msg]},
        frames=[_run_frame(s, "forward", "model(xb)")],
        stage="loop",
        cause="a CUDA tensor is converted to numpy without moving it to the CPU",
        fix="call `.detach().cpu()` before `.numpy()`",
    )


FailureFn = Callable[[random.Random, Script, Recipe, RunData], Crash]

#: (kind, weight, applies-to-recipe predicate, renderer)
CATALOGUE: tuple[tuple[str, float, Callable[[Recipe], bool], FailureFn], ...] = (
    ("missing_module", 3.0, lambda r: True, missing_module),
    ("key_error", 2.5, lambda r: True, key_error),
    ("file_not_found", 1.5, lambda r: True, file_not_found),
    (
        "shape_mismatch",
        2.0,
        lambda r: r.model not in ("resnet", "efficientnet", "simple_cnn"),
        shape_mismatch,
    ),
    ("nan_input", 1.0, lambda r: r.model in ("ridge", "random_forest", "knn"), nan_input),
    ("cuda_oom", 2.5, lambda r: r.model in TORCH_MODELS, cuda_oom),
    ("timeout", 2.0, lambda r: True, timeout),
    ("removed_api", 1.5, lambda r: True, removed_api),
    ("undefined_name", 1.0, lambda r: True, undefined_name),
    (
        "array_memory",
        0.7,
        lambda r: r.task.kind in ("smiles", "singlecell", "sequence"),
        array_memory,
    ),
    ("tensor_device", 0.5, lambda r: r.model in TORCH_MODELS, tensor_to_numpy),
)


def choose_kind(rng: random.Random, recipe: Recipe, prefer: str | None = None) -> str:
    """A failure kind that can happen to this recipe; ``prefer`` wins when it applies."""
    usable = [(k, w) for k, w, ok, _ in CATALOGUE if ok(recipe)]
    if prefer and any(k == prefer for k, _ in usable):
        return prefer
    total = sum(w for _, w in usable)
    x = rng.uniform(0, total)
    for kind, weight in usable:
        x -= weight
        if x <= 0:
            return kind
    return usable[-1][0]


def apply(kind: str, rng: random.Random, script: Script, recipe: Recipe, data: RunData) -> Crash:
    """Break ``script`` (in place) the way ``kind`` says and describe the crash."""
    for name, _, _, fn in CATALOGUE:
        if name == kind:
            return fn(rng, script, recipe, data)
    raise KeyError(kind)
