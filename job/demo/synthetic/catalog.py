"""Fixed vocabularies: biomlbench tasks, run-group and experiment names, ids.

Why a catalog: realistic variety (domains, metrics that are maximised or
minimised, id and target columns, data kinds that decide what code an agent
writes) is what makes generated journals exercise a parser the way real ones do.
Every helper takes the caller's ``random.Random`` so output stays a function of
the seed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Task:
    """One biomlbench task and what its data looks like to an agent."""

    domain: str
    name: str
    kind: str  # "smiles" | "sequence" | "image" | "singlecell" | "tabular"
    metric: str
    maximize: bool
    id_col: str
    target: str
    description: str

    @property
    def task_id(self) -> str:
        return f"{self.domain}/{self.name}"


TASKS: tuple[Task, ...] = (
    Task(
        "polarishub",
        "polaris-adme-fang-perm-1",
        "smiles",
        "mean_absolute_error",
        False,
        "smiles",
        "LOG_MDR1-MDCK_ER",
        "Predict the MDR1-MDCK efflux ratio (log10) of small molecules from their SMILES.",
    ),
    Task(
        "polarishub",
        "polaris-adme-fang-solu-1",
        "smiles",
        "mean_absolute_error",
        False,
        "smiles",
        "LOG_SOLUBILITY",
        "Predict the aqueous solubility (log10 ug/mL at pH 6.8) of drug-like compounds.",
    ),
    Task(
        "polarishub",
        "tdcommons-herg",
        "smiles",
        "roc_auc",
        True,
        "Drug_ID",
        "Y",
        "Classify whether a compound blocks the hERG potassium channel (cardiotoxicity).",
    ),
    Task(
        "polarishub-extended",
        "biogen-adme-fang-hppb-reg-v1",
        "smiles",
        "spearmanr",
        True,
        "smiles",
        "LOG_HPPB",
        "Predict human plasma protein binding (log10 % unbound) for Biogen compounds.",
    ),
    Task(
        "proteingym-dms",
        "A0A140D2T1_ZIKV_Sourisseau_2019",
        "sequence",
        "spearman",
        True,
        "mutant",
        "DMS_score",
        "Predict deep mutational scanning fitness scores of Zika virus envelope protein variants.",
    ),
    Task(
        "proteingym-dms",
        "BLAT_ECOLX_Stiffler_2015",
        "sequence",
        "spearman",
        True,
        "mutant",
        "DMS_score",
        "Predict ampicillin resistance of TEM-1 beta-lactamase single mutants.",
    ),
    Task(
        "proteingym-dms",
        "GFP_AEQVI_Sarkisyan_2016",
        "sequence",
        "spearman",
        True,
        "mutant",
        "DMS_score",
        "Predict log-fluorescence of avGFP variants carrying one to fifteen mutations.",
    ),
    Task(
        "kaggle",
        "histopathologic-cancer-detection",
        "image",
        "roc_auc",
        True,
        "id",
        "label",
        "Identify metastatic tissue in 96x96 patches of lymph node histopathology scans.",
    ),
    Task(
        "kaggle",
        "stanford-covid-vaccine",
        "sequence",
        "MCRMSE",
        False,
        "id_seqpos",
        "reactivity",
        "Predict per-base degradation rates of mRNA vaccine candidates.",
    ),
    Task(
        "kaggle_big",
        "rsna-breast-cancer-detection",
        "image",
        "pF1",
        True,
        "prediction_id",
        "cancer",
        "Detect breast cancer in screening mammograms (probabilistic F1 per patient-side).",
    ),
    Task(
        "manual",
        "open-problems-predict-modality",
        "singlecell",
        "rmse",
        False,
        "cell_id",
        "target",
        "Predict surface protein abundance (ADT) from gene expression in CITE-seq cells.",
    ),
    Task(
        "manual",
        "open-problems-label-projection",
        "singlecell",
        "accuracy",
        True,
        "cell_id",
        "label",
        "Transfer cell-type labels from an annotated reference batch to unlabelled batches.",
    ),
    Task(
        "manual",
        "open-problems-single-cell-perturbations",
        "singlecell",
        "MRRMSE",
        False,
        "id",
        "A1BG",
        "Predict differential expression of genes in PBMCs after small-molecule perturbation.",
    ),
    Task(
        "biorxiv",
        "caco2-permeability-tabular",
        "tabular",
        "r2",
        True,
        "compound_id",
        "log_papp",
        "Predict Caco-2 apparent permeability from precomputed physicochemical descriptors.",
    ),
)

AGENTS: tuple[str, ...] = ("aide", "biomni", "stella", "mlagentbench")

_ADJECTIVES = ("bright", "quiet", "dusky", "brave", "lucky", "swift", "calm", "bold", "shy")
_COLOURS = ("teal", "amber", "olive", "coral", "ivory", "slate", "crimson", "indigo", "jade")
_ANIMALS = ("dog", "heron", "owl", "wasp", "otter", "lynx", "finch", "newt", "ibex", "crane")


def run_group_name(when: datetime, agent: str) -> str:
    """``2025-08-25T17-09-05-GMT_run-group_aide``: biomlbench's run-group folder name."""
    return f"{when.strftime('%Y-%m-%dT%H-%M-%S')}-GMT_run-group_{agent}"


def created_at(when: datetime) -> str:
    return f"{when.strftime('%Y-%m-%dT%H-%M-%S')}-GMT"


def experiment_name(rng: random.Random) -> str:
    """AIDE's ``<index>-<adjective>-<colour>-<animal>`` experiment folder name."""
    return (
        f"{rng.randrange(10)}-{rng.choice(_ADJECTIVES)}-"
        f"{rng.choice(_COLOURS)}-{rng.choice(_ANIMALS)}"
    )


def run_uuid(rng: random.Random) -> str:
    """Run folders carry a UUID-shaped suffix (biomlbench's is not a strict uuid4)."""
    return str(uuid.UUID(int=rng.getrandbits(128)))


def node_id(rng: random.Random) -> str:
    """AIDE node ids are ``uuid.uuid4().hex``."""
    return uuid.UUID(int=rng.getrandbits(128), version=4).hex


def natural_delta(seconds: float) -> str:
    """``humanize.naturaldelta`` as AIDE prints it in "Execution time: ..." lines."""
    if seconds < 1:
        return "a moment"
    if seconds < 2:
        return "a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 120:
        return "a minute"
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes"
    if seconds < 7200:
        return "an hour"
    return f"{int(seconds // 3600)} hours"
