"""The Python an AIDE step runs: rendered from a small, mutable ``Recipe``.

Why recipes rather than canned strings: a real AIDE journal is a family of near
copies (a debug step is its parent's script with a fix; an improve step is its
parent's script with one change), interleaved with fresh drafts. That is what
makes real journals compress 5-8x rather than 2x (random text) or 100x (one
repeated string). Rendering each node from its parent's recipe plus one change
reproduces exactly that structure, and the recorded *anchors* (which line loads
the data, which line fits the model...) let a failure put its traceback on a line
that really exists, with the right line number.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace

from job.demo.synthetic.catalog import Task

MODELS_BY_KIND: dict[str, tuple[str, ...]] = {
    "smiles": ("lightgbm", "xgboost", "random_forest", "ridge", "catboost", "mlp"),
    "sequence": ("ridge", "lightgbm", "xgboost", "cnn1d", "random_forest"),
    "image": ("resnet", "efficientnet", "simple_cnn"),
    "singlecell": ("ridge", "mlp", "lightgbm", "knn"),
    "tabular": ("lightgbm", "xgboost", "random_forest", "catboost", "ridge"),
}

TORCH_MODELS = frozenset({"mlp", "cnn1d", "resnet", "efficientnet", "simple_cnn"})

IMPROVEMENTS: tuple[str, ...] = (
    "more_estimators",
    "lower_lr",
    "extra_features",
    "scale_features",
    "seed_average",
    "bigger_model",
    "target_transform",
    "more_folds",
)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a script's text; a child step copies and tweaks it."""

    task: Task
    model: str
    seed: int
    folds: int
    lr: float
    n_estimators: int
    depth: int
    radius: int
    n_bits: int
    epochs: int
    batch_size: int
    hidden: int
    train_var: str
    x_var: str
    data_dir: str
    train_file: str
    comment_style: int
    flavor: int  # seeds the free-form parts: docstring, helpers, names, comments
    improvements: tuple[str, ...] = field(default=())

    def rewritten(self, rng: random.Random) -> Recipe:
        """The same solution as an LLM re-emits it: new wording, same logic."""
        changes: dict[str, object] = {
            "flavor": rng.getrandbits(32),
            "comment_style": rng.randrange(4),
        }
        if rng.random() < 0.3:
            changes["batch_size"] = rng.choice((32, 64, 128, 256, 512))
            changes["seed"] = rng.choice((0, 7, 13, 21, 42, 123, 2024, 2025, 1337))
        return replace(self, **changes)  # type: ignore[arg-type]

    def improved(self, what: str, rng: random.Random) -> Recipe:
        """The recipe of an *improve* child: one change on top of the parent."""
        changes: dict[str, object] = {"improvements": (*self.improvements, what)}
        if what == "more_estimators":
            changes["n_estimators"] = self.n_estimators + rng.choice((200, 500, 1000))
            changes["epochs"] = self.epochs + rng.choice((5, 10, 20))
        elif what == "lower_lr":
            changes["lr"] = round(self.lr * rng.choice((0.3, 0.5, 0.7)), 5)
        elif what == "bigger_model":
            changes["depth"] = self.depth + rng.choice((1, 2, 4))
            changes["hidden"] = self.hidden * 2
        elif what == "more_folds":
            changes["folds"] = min(10, self.folds + rng.choice((2, 3, 5)))
        elif what == "extra_features":
            changes["radius"] = self.radius + 1
            changes["n_bits"] = self.n_bits * 2
        return replace(self, **changes)  # type: ignore[arg-type]


def new_recipe(rng: random.Random, task: Task) -> Recipe:
    """A fresh draft: the choices an LLM would make for this task, at random."""
    model = rng.choice(MODELS_BY_KIND[task.kind])
    return Recipe(
        task=task,
        model=model,
        seed=rng.choice((0, 7, 13, 21, 42, 123, 2024, 2025, 1337)),
        folds=rng.choice((3, 5, 5, 5, 10)),
        lr=rng.choice((0.01, 0.02, 0.03, 0.05, 0.1, 1e-3, 3e-4)),
        n_estimators=rng.choice((200, 300, 500, 800, 1000, 2000)),
        depth=rng.choice((4, 6, 8, 10, -1)),
        radius=rng.choice((2, 2, 3)),
        n_bits=rng.choice((1024, 2048, 2048, 4096)),
        epochs=rng.choice((5, 8, 10, 15, 20)),
        batch_size=rng.choice((32, 64, 128, 256, 512)),
        hidden=rng.choice((128, 256, 512, 1024)),
        train_var=rng.choice(("train", "train_df", "df_train", "train_data")),
        x_var=rng.choice(("X", "X_train", "features", "X_all")),
        data_dir=rng.choice(("./input", "./input", "input", "/home/data")),
        train_file=rng.choice(
            ("train.csv", "train.parquet", "train.h5ad")
            if task.kind == "singlecell"
            else ("train.csv", "train.csv", "train.parquet")
        ),
        comment_style=rng.randrange(4),
        flavor=rng.getrandbits(32),
    )


@dataclass
class Script:
    """Rendered source lines plus where the interesting statements are."""

    lines: list[str]
    anchors: dict[str, int]

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def line_no(self, role: str) -> int:
        """1-based line number of an anchor, as a traceback shows it."""
        return self.anchors[role] + 1

    def line(self, role: str) -> str:
        return self.lines[self.anchors[role]]

    def replace_line(self, role: str, new: str) -> None:
        self.lines[self.anchors[role]] = new

    def copy(self) -> Script:
        return Script(list(self.lines), dict(self.anchors))

    def insert_after(self, role: str, new: str, new_role: str) -> None:
        """Insert one line after an anchor, shifting every later anchor down."""
        at = self.anchors[role] + 1
        self.lines.insert(at, new)
        for name, index in self.anchors.items():
            if index >= at:
                self.anchors[name] = index + 1
        self.anchors[new_role] = at

    def last_import(self) -> str:
        """The role of the last import line (where an extra import goes)."""
        imports = [(i, r) for r, i in self.anchors.items() if r.startswith("import:")]
        return max(imports)[1]


class _Writer:
    """Collects lines and anchors while a script is rendered."""

    def __init__(self, flavor: random.Random | None = None, recipe: Recipe | None = None) -> None:
        self.lines: list[str] = []
        self.anchors: dict[str, int] = {}
        self.flavor = flavor
        self.recipe = recipe

    def remark(self, indent: str = "", p: float = 0.6) -> None:
        """Maybe a free-form comment, as LLM-written code is full of them."""
        if self.flavor is None or self.recipe is None or self.flavor.random() > p:
            return
        r, f = self.recipe, self.flavor
        text = f.choice(_REMARKS).format(
            folds=r.folds,
            n=r.n_estimators,
            lr=r.lr,
            seed=r.seed,
            bits=r.n_bits,
            target=r.task.target,
            metric=r.task.metric,
            bs=r.batch_size,
            epochs=r.epochs,
            k=f.randrange(2, 50),
            pct=f.randrange(5, 95),
        )
        self.lines.append(f"{indent}# {text}")

    def add(self, text: str = "", role: str | None = None) -> None:
        if role:
            self.anchors[role] = len(self.lines)  # the first line of a block
        self.lines.extend(text.split("\n"))

    def blank(self, n: int = 1) -> None:
        self.lines.extend([""] * n)

    def script(self) -> Script:
        return Script(self.lines, self.anchors)


_COMMENTS = (
    ("# Load the data", "# Features", "# Cross-validation", "# Train on all data and predict"),
    (
        "# ---- data ----",
        "# ---- featurisation ----",
        "# ---- CV loop ----",
        "# ---- submission ----",
    ),
    (
        "# Read train/test tables from the input directory",
        "# Build the feature matrix used by every model below",
        "# K-fold CV to estimate the leaderboard metric",
        "# Write predictions in the required submission format",
    ),
    ("", "", "", ""),
)

_METRIC_IMPORT = {
    "mean_absolute_error": (
        "from sklearn.metrics import mean_absolute_error",
        "mean_absolute_error",
    ),
    "roc_auc": ("from sklearn.metrics import roc_auc_score", "roc_auc_score"),
    "spearmanr": ("from scipy.stats import spearmanr", "spearman"),
    "spearman": ("from scipy.stats import spearmanr", "spearman"),
    "MCRMSE": ("from sklearn.metrics import mean_squared_error", "mcrmse"),
    "pF1": ("from sklearn.metrics import f1_score", "pf1"),
    "rmse": ("from sklearn.metrics import mean_squared_error", "rmse"),
    "accuracy": ("from sklearn.metrics import accuracy_score", "accuracy_score"),
    "MRRMSE": ("from sklearn.metrics import mean_squared_error", "mrrmse"),
    "r2": ("from sklearn.metrics import r2_score", "r2_score"),
}

_MODEL_IMPORTS = {
    "lightgbm": ("import lightgbm as lgb", "lightgbm"),
    "xgboost": ("import xgboost as xgb", "xgboost"),
    "catboost": ("from catboost import CatBoostRegressor", "catboost"),
    "random_forest": ("from sklearn.ensemble import RandomForestRegressor", None),
    "ridge": ("from sklearn.linear_model import Ridge", None),
    "knn": ("from sklearn.neighbors import KNeighborsRegressor", None),
    "mlp": (
        "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader, TensorDataset",
        "torch",
    ),
    "cnn1d": (
        "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader, TensorDataset",
        "torch",
    ),
    "resnet": (
        "import torch\nimport torch.nn as nn\nimport torchvision\nfrom torch.utils.data import DataLoader, Dataset",
        "torch",
    ),
    "efficientnet": (
        "import timm\nimport torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader, Dataset",
        "timm",
    ),
    "simple_cnn": (
        "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader, Dataset",
        "torch",
    ),
}

_KIND_IMPORTS = {
    "smiles": (
        "from rdkit import Chem, DataStructs\nfrom rdkit.Chem import AllChem, Descriptors",
        "rdkit",
    ),
    "sequence": ("", None),
    "image": ("from PIL import Image", "PIL"),
    "singlecell": ("import anndata as ad\nimport scanpy as sc", "scanpy"),
    "tabular": ("", None),
}


def render(recipe: Recipe) -> Script:
    """Turn a recipe into a plausible, runnable-looking AIDE solution script."""
    r = recipe
    t = r.task
    comments = _COMMENTS[r.comment_style]
    metric_import, metric_fn = _METRIC_IMPORT[t.metric]
    flavor = random.Random(r.flavor)
    w = _Writer(flavor, r)

    doc = _docstring(flavor, r)
    if doc:
        w.add(doc)
        w.blank()
    w.add("import os")
    if r.comment_style % 2:
        w.add("import time")
    w.add("import numpy as np")
    w.add("import pandas as pd", role="import:pandas")
    kind_import, kind_module = _KIND_IMPORTS[t.kind]
    if kind_import:
        w.add(kind_import, role=f"import:{kind_module}")
    w.add(
        "from sklearn.model_selection import KFold"
        if t.kind != "image"
        else "from sklearn.model_selection import StratifiedKFold"
    )
    w.add(metric_import)
    if "scale_features" in r.improvements:
        w.add("from sklearn.preprocessing import StandardScaler")
    model_import, model_module = _MODEL_IMPORTS[r.model]
    w.add(model_import, role=f"import:{model_module}" if model_module else "import:model")
    w.blank()
    w.add(f"SEED = {r.seed}")
    w.add(f"N_FOLDS = {r.folds}")
    w.add(f'DATA_DIR = "{r.data_dir}"')
    if r.model in TORCH_MODELS:
        w.add(f"EPOCHS = {r.epochs}")
        w.add(f"BATCH_SIZE = {r.batch_size}")
        w.add(f"LR = {r.lr}")
        w.add('DEVICE = "cuda" if torch.cuda.is_available() else "cpu"')
    w.add("np.random.seed(SEED)")
    w.blank(2)
    for helper in flavor.sample(_HELPERS, k=flavor.choice((0, 1, 2, 2, 3))):
        w.add(helper(flavor, r))
        w.blank(2)

    _render_metric(w, metric_fn, t)
    if comments[0]:
        w.add(comments[0])
    w.remark()
    _render_load(w, r)
    w.blank()
    if comments[1]:
        w.add(comments[1])
    w.remark()
    _render_features(w, r)
    w.remark()
    w.blank()
    if comments[2]:
        w.add(comments[2])
    w.remark()
    if r.model in TORCH_MODELS:
        _render_torch_cv(w, r)
    else:
        _render_tree_cv(w, r)
    w.blank()
    if comments[3]:
        w.add(comments[3])
    _render_submission(w, r)
    script = w.script()
    _rename(script, flavor)
    return script


def _render_metric(w: _Writer, fn: str, t: Task) -> None:
    if fn in ("spearman", "mcrmse", "pf1", "rmse", "mrrmse"):
        w.add("def score_fn(y_true, y_pred):")
        body = {
            "spearman": "    return spearmanr(y_true, y_pred).correlation",
            "mcrmse": "    return np.mean(np.sqrt(np.mean((y_true - y_pred) ** 2, axis=0)))",
            "pf1": "    return f1_score(y_true, y_pred > 0.5)",
            "rmse": "    return float(np.sqrt(mean_squared_error(y_true, y_pred)))",
            "mrrmse": "    return np.mean(np.sqrt(np.mean((y_true - y_pred) ** 2, axis=1)))",
        }[fn]
        w.add(body)
    else:
        w.add("def score_fn(y_true, y_pred):")
        w.add(f"    return {fn}(y_true, y_pred)")
    w.blank(2)


def _render_load(w: _Writer, r: Recipe) -> None:
    tv = r.train_var
    reader = "pd.read_parquet" if r.train_file.endswith(".parquet") else "pd.read_csv"
    if r.task.kind == "singlecell" and r.train_file.endswith(".h5ad"):
        w.add(f'adata = ad.read_h5ad(os.path.join(DATA_DIR, "{r.train_file}"))', role="load_train")
        w.add(f"{tv} = adata.obs.copy()")
        w.add('test = pd.read_csv(os.path.join(DATA_DIR, "test.csv"))', role="load_test")
    else:
        w.add(f'{tv} = {reader}(os.path.join(DATA_DIR, "{r.train_file}"))', role="load_train")
        w.add('test = pd.read_csv(os.path.join(DATA_DIR, "test.csv"))', role="load_test")
    w.add(f'print("train", {tv}.shape, "test", test.shape)', role="print_shapes")
    if r.comment_style == 2:
        w.add(f"print({tv}.head())")


def _render_features(w: _Writer, r: Recipe) -> None:
    t, tv, xv = r.task, r.train_var, r.x_var
    if t.kind == "smiles":
        w.add(f"def featurize(smiles, radius={r.radius}, n_bits={r.n_bits}):")
        w.add('    """Morgan fingerprint bits plus a handful of RDKit descriptors."""')
        w.add("    mol = Chem.MolFromSmiles(smiles)")
        w.add("    if mol is None:")
        w.add("        return np.zeros(n_bits + 4, dtype=np.float32)")
        w.add("    fp = AllChem.GetMorganFingerprintAsBitVect(mol, radius, nBits=n_bits)")
        w.add("    arr = np.zeros((n_bits,), dtype=np.float32)")
        w.add("    DataStructs.ConvertToNumpyArray(fp, arr)")
        w.add("    desc = [")
        w.add("        Descriptors.MolWt(mol),")
        w.add("        Descriptors.MolLogP(mol),")
        w.add("        Descriptors.TPSA(mol),")
        w.add("        Descriptors.NumHDonors(mol),")
        if "extra_features" in r.improvements:
            w.add("        Descriptors.NumRotatableBonds(mol),")
            w.add("        Descriptors.FractionCSP3(mol),")
        w.add("    ]")
        w.add("    return np.concatenate([arr, np.asarray(desc, dtype=np.float32)])")
        w.blank(2)
        w.add(f'{xv} = np.stack([featurize(s) for s in {tv}["{_smiles_col(t)}"]])', role="features")
        w.add(f'X_test = np.stack([featurize(s) for s in test["{_smiles_col(t)}"]])')
    elif t.kind == "sequence":
        w.add('AMINO = "ACDEFGHIKLMNPQRSTVWY"')
        w.add("AA_INDEX = {a: i for i, a in enumerate(AMINO)}")
        w.blank()
        w.add("def one_hot(seq):")
        w.add("    out = np.zeros((len(seq), len(AMINO)), dtype=np.float32)")
        w.add("    for i, a in enumerate(seq):")
        w.add("        if a in AA_INDEX:")
        w.add("            out[i, AA_INDEX[a]] = 1.0")
        w.add("    return out.ravel()")
        w.blank(2)
        w.add(f'{xv} = np.stack([one_hot(s) for s in {tv}["mutated_sequence"]])', role="features")
        w.add('X_test = np.stack([one_hot(s) for s in test["mutated_sequence"]])')
        if "extra_features" in r.improvements:
            w.add(f'{tv}["n_mut"] = {tv}["{t.id_col}"].str.count(":") + 1')
            w.add(f'{xv} = np.hstack([{xv}, {tv}[["n_mut"]].values])')
    elif t.kind == "image":
        w.add("class PatchDataset(Dataset):")
        w.add("    def __init__(self, df, folder, labels=True):")
        w.add(f'        self.ids = df["{t.id_col}"].values')
        w.add(f'        self.y = df["{t.target}"].values if labels else None')
        w.add("        self.folder = folder")
        w.blank()
        w.add("    def __len__(self):")
        w.add("        return len(self.ids)")
        w.blank()
        w.add("    def __getitem__(self, i):")
        w.add(
            '        img = Image.open(os.path.join(self.folder, f"{self.ids[i]}.png")).convert("RGB")'
        )
        w.add(
            "        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)"
        )
        w.add("        return (x, self.y[i]) if self.y is not None else x")
        w.blank(2)
        w.add(f'{xv} = {tv}["{t.id_col}"].values', role="features")
    elif t.kind == "singlecell":
        if r.train_file.endswith(".h5ad"):
            w.add("sc.pp.normalize_total(adata, target_sum=1e4)")
            w.add("sc.pp.log1p(adata)")
            w.add(f"sc.pp.pca(adata, n_comps={min(r.hidden, 256)})")
            w.add(f'{xv} = adata.obsm["X_pca"]', role="features")
        else:
            w.add(f'gene_cols = [c for c in {tv}.columns if c not in ("{t.id_col}", "{t.target}")]')
            w.add(f"{xv} = np.log1p({tv}[gene_cols].values.astype(np.float32))", role="features")
        w.add(f"X_test = np.log1p(test.drop(columns=[{t.id_col!r}]).values.astype(np.float32))")
    else:
        w.add(f'num_cols = {tv}.select_dtypes("number").columns.drop("{t.target}")')
        w.add(f"{xv} = {tv}[num_cols].fillna({tv}[num_cols].median()).values", role="features")
        w.add("X_test = test[num_cols].fillna(test[num_cols].median()).values")
    if "scale_features" in r.improvements and t.kind != "image":
        w.add("scaler = StandardScaler()")
        w.add(f"{xv} = scaler.fit_transform({xv})")
        w.add("X_test = scaler.transform(X_test)")
    target_expr = f'{tv}["{t.target}"].values'
    if "target_transform" in r.improvements:
        target_expr = f"np.log1p({target_expr})"
    w.add(f"y = {target_expr}", role="target")
    w.add(f'print("features", {xv}.shape, "target", y.shape)', role="print_features")


def _m(template: str, metric: str) -> str:
    """Put the metric's name into a line of generated code that is itself an f-string."""
    return template.replace("METRIC", metric)


def _smiles_col(t: Task) -> str:
    return "Drug" if t.id_col == "Drug_ID" else "smiles"


def _model_ctor(r: Recipe) -> str:
    depth = r.depth
    if r.model == "lightgbm":
        return (
            f"lgb.LGBMRegressor(n_estimators={r.n_estimators}, learning_rate={r.lr}, "
            f"num_leaves={2 ** max(depth, 5) - 1}, subsample=0.8, colsample_bytree=0.7, "
            "random_state=SEED + fold, verbose=-1)"
        )
    if r.model == "xgboost":
        return (
            f"xgb.XGBRegressor(n_estimators={r.n_estimators}, learning_rate={r.lr}, "
            f"max_depth={max(depth, 3)}, subsample=0.8, colsample_bytree=0.7, "
            'tree_method="hist", random_state=SEED + fold)'
        )
    if r.model == "catboost":
        return (
            f"CatBoostRegressor(iterations={r.n_estimators}, learning_rate={r.lr}, "
            f"depth={min(max(depth, 4), 10)}, random_seed=SEED + fold, verbose=200)"
        )
    if r.model == "random_forest":
        return (
            f"RandomForestRegressor(n_estimators={r.n_estimators}, "
            f"max_depth={None if depth < 0 else depth * 2}, n_jobs=-1, random_state=SEED + fold)"
        )
    if r.model == "knn":
        return f"KNeighborsRegressor(n_neighbors={max(depth, 3) * 2 + 1}, weights='distance')"
    return f"Ridge(alpha={r.lr * 100:g}, random_state=SEED + fold)"


def _render_tree_cv(w: _Writer, r: Recipe) -> None:
    xv = r.x_var
    w.add(f"oof = np.zeros(len({xv}))")
    w.add("test_pred = np.zeros(len(X_test))")
    w.add("scores = []")
    w.add("kf = KFold(n_splits=N_FOLDS, shuffle=True, random_state=SEED)")
    w.add(f"for fold, (tr_idx, va_idx) in enumerate(kf.split({xv})):", role="loop")
    w.add(f"    X_tr, X_va = {xv}[tr_idx], {xv}[va_idx]")
    w.add("    y_tr, y_va = y[tr_idx], y[va_idx]")
    w.remark("    ")
    w.add(f"    model = {_model_ctor(r)}", role="model")
    if r.model == "lightgbm":
        w.add(
            "    model.fit(X_tr, y_tr, eval_set=[(X_va, y_va)], "
            "callbacks=[lgb.early_stopping(100, verbose=False), lgb.log_evaluation(200)])",
            role="fit",
        )
    elif r.model == "xgboost":
        w.add("    model.fit(X_tr, y_tr, eval_set=[(X_va, y_va)], verbose=200)", role="fit")
    else:
        w.add("    model.fit(X_tr, y_tr)", role="fit")
    w.add("    oof[va_idx] = model.predict(X_va)", role="predict")
    w.add("    test_pred += model.predict(X_test) / N_FOLDS")
    w.add("    score = score_fn(y_va, oof[va_idx])")
    w.add("    scores.append(score)")
    w.remark("    ")
    w.add(_m('    print(f"Fold {fold}: METRIC = {score:.4f}")', r.task.metric), role="print_fold")
    if "seed_average" in r.improvements:
        w.add("    # second seed for a more stable average")
        w.add("    model.set_params(random_state=SEED + 100 + fold)")
        w.add("    model.fit(X_tr, y_tr)")
        w.add("    test_pred += model.predict(X_test) / N_FOLDS")
        w.add("test_pred /= 2")
    w.blank()
    w.add("cv_score = score_fn(y, oof)")
    w.add(
        _m(
            'print(f"Validation METRIC: {cv_score:.4f} (mean of folds {np.mean(scores):.4f} +- {np.std(scores):.4f})")',
            r.task.metric,
        ),
        role="print_cv",
    )


def _render_torch_cv(w: _Writer, r: Recipe) -> None:
    xv, t = r.x_var, r.task
    if r.model in ("resnet", "efficientnet", "simple_cnn"):
        w.add("def build_model():")
        if r.model == "resnet":
            w.add("    net = torchvision.models.resnet18(weights=None)")
            w.add("    net.fc = nn.Linear(net.fc.in_features, 1)")
        elif r.model == "efficientnet":
            w.add('    net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=1)')
        else:
            w.add("    net = nn.Sequential(")
            w.add("        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),")
            w.add(
                f"        nn.Conv2d(32, {r.hidden // 4}, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),"
            )
            w.add(f"        nn.Flatten(), nn.Linear({r.hidden // 4}, 1),")
            w.add("    )")
        w.add("    return net.to(DEVICE)")
    else:
        w.add("class Net(nn.Module):")
        w.add("    def __init__(self, n_in):")
        w.add("        super().__init__()")
        w.add("        self.body = nn.Sequential(")
        w.add(f"            nn.Linear(n_in, {r.hidden}), nn.ReLU(), nn.Dropout(0.2),")
        w.add(f"            nn.Linear({r.hidden}, {r.hidden // 2}), nn.ReLU(),")
        w.add(f"            nn.Linear({r.hidden // 2}, 1),")
        w.add("        )")
        w.blank()
        w.add("    def forward(self, x):")
        w.add("        return self.body(x).squeeze(-1)", role="forward_inner")
        w.blank()
        w.add("def build_model():")
        w.add(f"    return Net({xv}.shape[1]).to(DEVICE)")
    w.blank(2)
    split = "StratifiedKFold" if t.kind == "image" else "KFold"
    w.add(f"oof = np.zeros(len({xv}))")
    w.add("scores = []")
    w.add(f"kf = {split}(n_splits=N_FOLDS, shuffle=True, random_state=SEED)")
    split_args = f"{xv}, y" if split == "StratifiedKFold" else xv
    w.add(f"for fold, (tr_idx, va_idx) in enumerate(kf.split({split_args})):")
    w.add("    model = build_model()")
    w.add("    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)")
    w.add(
        "    loss_fn = nn.MSELoss()"
        if t.kind != "image"
        else "    loss_fn = nn.BCEWithLogitsLoss()"
    )
    if t.kind == "image":
        w.add(
            f'    train_ds = PatchDataset({r.train_var}.iloc[tr_idx], os.path.join(DATA_DIR, "train"))'
        )
        w.add(
            f'    valid_ds = PatchDataset({r.train_var}.iloc[va_idx], os.path.join(DATA_DIR, "train"))'
        )
    else:
        w.add(
            f"    train_ds = TensorDataset(torch.tensor({xv}[tr_idx]), torch.tensor(y[tr_idx], dtype=torch.float32))"
        )
        w.add(
            f"    valid_ds = TensorDataset(torch.tensor({xv}[va_idx]), torch.tensor(y[va_idx], dtype=torch.float32))"
        )
    w.add("    train_dl = DataLoader(train_ds, batch_size=BATCH_SIZE, shuffle=True, num_workers=4)")
    w.add("    valid_dl = DataLoader(valid_ds, batch_size=BATCH_SIZE * 2)")
    w.remark("    ")
    w.add("    for epoch in range(EPOCHS):", role="loop")
    w.add("        model.train()")
    w.add("        total = 0.0")
    w.add("        for xb, yb in train_dl:")
    w.add("            xb, yb = xb.to(DEVICE), yb.to(DEVICE).float()")
    w.add("            opt.zero_grad()")
    w.add("            out = model(xb).squeeze(-1)", role="forward")
    w.add("            loss = loss_fn(out, yb)")
    w.add("            loss.backward()", role="backward")
    w.add("            opt.step()")
    w.add("            total += loss.item() * len(xb)")
    w.add("        model.eval()")
    w.add("        with torch.no_grad():")
    w.add(
        "            preds = torch.cat([model(xb.to(DEVICE)).squeeze(-1).cpu() for xb, _ in valid_dl]).numpy()"
    )
    w.add("        score = score_fn(y[va_idx], preds)")
    w.add(
        _m(
            '        print(f"fold {fold} epoch {epoch + 1}/{EPOCHS} train_loss {total / len(train_ds):.4f} val METRIC {score:.4f}")',
            t.metric,
        ),
        role="print_epoch",
    )
    w.add("    oof[va_idx] = preds", role="predict")
    w.add("    scores.append(score)")
    w.add('    torch.save(model.state_dict(), f"./working/model_fold{fold}.pt")')
    w.blank()
    w.add("cv_score = score_fn(y, oof)")
    w.add(_m('print(f"Validation METRIC: {cv_score:.4f}")', t.metric), role="print_cv")


def _render_submission(w: _Writer, r: Recipe) -> None:
    t = r.task
    w.remark()
    w.add('os.makedirs("./submission", exist_ok=True)')
    if r.model in TORCH_MODELS:
        w.add("final = build_model()")
        w.add('final.load_state_dict(torch.load("./working/model_fold0.pt"))')
        w.add("final.eval()")
        if t.kind == "image":
            w.add(
                'test_dl = DataLoader(PatchDataset(test, os.path.join(DATA_DIR, "test"), labels=False), batch_size=BATCH_SIZE)'
            )
            w.add("with torch.no_grad():")
            w.add(
                "    test_pred = torch.cat([torch.sigmoid(final(xb.to(DEVICE))).squeeze(-1).cpu() for xb in test_dl]).numpy()"
            )
        else:
            w.add("with torch.no_grad():")
            w.add("    test_pred = final(torch.tensor(X_test).to(DEVICE)).cpu().numpy()")
    if "target_transform" in r.improvements:
        w.add("test_pred = np.expm1(test_pred)")
    w.add(
        f'sub = pd.DataFrame({{"{t.id_col}": test["{t.id_col}"], "{t.target}": test_pred}})',
        role="submission_frame",
    )
    w.add('sub.to_csv("./submission/submission.csv", index=False)', role="submission")
    w.add('print("Saved submission with shape", sub.shape)')


# --- free-form variety: what differs between two LLM answers with the same logic -------

_RENAMES = {
    "oof": ("oof", "oof_preds", "oof_pred", "val_pred_all", "oof_predictions"),
    "test_pred": ("test_pred", "test_preds", "preds_test", "sub_preds", "test_predictions"),
    "kf": ("kf", "kfold", "cv", "splitter", "folds"),
    "scores": ("scores", "fold_scores", "cv_scores", "val_scores", "metrics"),
    "score_fn": ("score_fn", "metric_fn", "compute_metric", "evaluate", "competition_metric"),
    "featurize": (
        "featurize",
        "smiles_to_features",
        "mol_features",
        "compute_fp",
        "encode_molecule",
    ),
    "sub": ("sub", "submission", "sub_df", "submission_df", "out"),
    "cv_score": ("cv_score", "overall", "oof_score", "final_score", "cv_metric"),
}
_RENAME_RE = re.compile(r"\b(" + "|".join(_RENAMES) + r")\b")


def _rename(script: Script, flavor: random.Random) -> None:
    """Pick this answer's variable names (the logic and anchors stay put)."""
    chosen = {name: flavor.choice(options) for name, options in _RENAMES.items()}
    sub = _RENAME_RE.sub
    script.lines[:] = [
        line
        if line.lstrip().startswith(("import ", "from "))
        else sub(lambda m: chosen[m.group(1)], line)
        for line in script.lines
    ]


_TITLES = (
    "Baseline for {task}",
    "{model} solution for {task}",
    "AIDE solution: {task}",
    "{task}: {model} with {folds}-fold CV",
    "Train {model} and write submission.csv for {task}",
)

_DOC_LINES = (
    "Reads ./input, builds features, runs {folds}-fold cross-validation and saves predictions.",
    "The validation metric ({metric}) is printed at the end, as required by the grader.",
    "Kept deliberately simple so it finishes well within the time limit.",
    "Uses seed {seed} everywhere for reproducibility.",
    "Predictions of the fold models are averaged for the test set.",
    "Fixes the previous run's crash and keeps the rest of the pipeline.",
    "Hyper-parameters: lr={lr}, n_estimators={n}, depth={depth}.",
    "Note: the GPU is used if available, otherwise the CPU.",
)


def _docstring(flavor: random.Random, r: Recipe) -> str:
    if flavor.random() < 0.35:
        return ""
    fill = {
        "task": r.task.name,
        "model": r.model.replace("_", " "),
        "folds": r.folds,
        "metric": r.task.metric,
        "seed": r.seed,
        "lr": r.lr,
        "n": r.n_estimators,
        "depth": r.depth,
    }
    title = flavor.choice(_TITLES).format(**fill)
    body = [line.format(**fill) for line in flavor.sample(_DOC_LINES, k=flavor.randrange(1, 4))]
    return '"""' + title + "\n\n" + "\n".join(body) + '\n"""'


def _helper_seed(flavor: random.Random, r: Recipe) -> str:
    extra = (
        "\n    torch.manual_seed(seed)\n    torch.cuda.manual_seed_all(seed)"
        if r.model in TORCH_MODELS
        else ""
    )
    return (
        f"def {flavor.choice(('seed_everything', 'set_seed', 'fix_seeds'))}(seed=SEED):\n"
        f'    """Make runs repeatable."""\n'
        "    import random\n\n"
        "    random.seed(seed)\n"
        '    os.environ["PYTHONHASHSEED"] = str(seed)\n'
        f"    np.random.seed(seed){extra}"
    )


def _helper_timer(flavor: random.Random, r: Recipe) -> str:
    name = flavor.choice(("timer", "timed", "log_time", "stopwatch"))
    return (
        "from contextlib import contextmanager\n\n\n"
        "@contextmanager\n"
        f"def {name}(label):\n"
        "    import time as _time\n\n"
        "    start = _time.time()\n"
        "    yield\n"
        f'    print(f"[{{label}}] done in {{_time.time() - start:.{flavor.choice((1, 2, 3))}f}}s")'
    )


def _helper_memory(flavor: random.Random, r: Recipe) -> str:
    return (
        f"def {flavor.choice(('reduce_mem_usage', 'downcast', 'shrink_frame'))}(df):\n"
        '    """Downcast numeric columns to save memory on the larger tables."""\n'
        '    for col in df.select_dtypes("number").columns:\n'
        f'        if df[col].dtype == "float64":\n'
        f'            df[col] = df[col].astype("{flavor.choice(("float32", "float32", "float16"))}")\n'
        '        elif df[col].dtype == "int64":\n'
        '            df[col] = pd.to_numeric(df[col], downcast="integer")\n'
        "    return df"
    )


def _helper_check(flavor: random.Random, r: Recipe) -> str:
    t = r.task
    return (
        f"def {flavor.choice(('check_submission', 'validate_submission', 'sanity_check'))}(frame, test_frame):\n"
        f'    assert list(frame.columns) == ["{t.id_col}", "{t.target}"], frame.columns\n'
        "    assert len(frame) == len(test_frame), (len(frame), len(test_frame))\n"
        f'    assert frame["{t.target}"].notna().all(), "NaN predictions"\n'
        f'    print("submission looks valid:", frame.shape)'
    )


def _helper_log(flavor: random.Random, r: Recipe) -> str:
    fmt = flavor.choice(("%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%H:%M"))
    return (
        f"def {flavor.choice(('log', 'info', 'say'))}(*args):\n"
        "    from datetime import datetime\n\n"
        f'    print(datetime.now().strftime("{fmt}"), *args, flush=True)'
    )


def _helper_clip(flavor: random.Random, r: Recipe) -> str:
    lo, hi = sorted((round(flavor.uniform(-5, 0), 2), round(flavor.uniform(1, 8), 2)))
    return (
        f"def {flavor.choice(('clip_predictions', 'postprocess', 'clip_preds'))}(pred, lo={lo}, hi={hi}):\n"
        f'    """Targets outside [{lo}, {hi}] do not occur in training; clip to that range."""\n'
        "    return np.clip(pred, lo, hi)"
    )


_HELPERS = (_helper_seed, _helper_timer, _helper_memory, _helper_check, _helper_log, _helper_clip)


_REMARKS = (
    "{folds} folds is a compromise between runtime and variance of the estimate",
    "TODO: try more than {n} estimators once the pipeline is stable",
    "learning rate {lr} worked reasonably in the previous iteration",
    "keep the seed fixed ({seed}) so folds are identical across runs",
    "{bits}-bit fingerprints; collisions are rare at this size",
    "the target column is {target}",
    "evaluation metric: {metric}",
    "batch size {bs} fits comfortably on a 16 GB GPU",
    "{epochs} epochs was enough for convergence in earlier experiments",
    "roughly {pct}% of rows have at least one missing descriptor",
    "drop near-constant columns (std < 1e-{k} is useless for the model)",
    "NOTE: the test set has no labels, only ids",
    "make sure predictions are aligned with the original test order",
    "predictions are averaged over the {folds} fold models",
    "use float32 everywhere to halve the memory footprint",
    "{k} features were removed after the correlation filter",
    "this mirrors the competition's {metric} implementation",
    "about {pct}% of the time is spent in featurisation",
    "avoid data leakage: fit the preprocessing inside each fold",
    "early stopping patience of {k} rounds",
    "sanity check: shapes should match before fitting",
    "reuse the same split for every model so the OOF scores are comparable",
    "clip extreme values at the {pct}th percentile",
    "the grader expects exactly two columns",
)
