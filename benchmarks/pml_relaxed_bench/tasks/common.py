"""What the three tasks beyond labelled metric learning share: their config (:class:`TaskConfig`, a
:class:`~pml_relaxed_bench.config.CommonConfig`), the digits and Omniglot splits and networks, two-view batches,
evaluation (retrieval, k-NN and top-1 accuracy) and the run log (runs.jsonl); they train with the benchmark's
:func:`~pml_relaxed_bench.runner.fit` and write with its :func:`~pml_relaxed_bench.report.write_results`."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from pml_relaxed.datasets import Digits, Omniglot
from pml_relaxed.datasets.transforms import Compose, GaussianNoise, RandomAffine
from pml_relaxed.evaluation import compute_embeddings, evaluate_embeddings
from pml_relaxed.models.conv4 import Conv4
from pml_relaxed.models.mlp import MLP

from ..config import CommonConfig, _option
from ..data import _split_alphabets
from ..registry import DATASETS as REGISTRY
from ..report import option_string
from ..runner import append_records, fit, load_done, seed_everything

RETRIEVAL_METRICS = ("recall_at_1", "mean_average_precision_at_r")
KNN_K = 5
#: the datasets the tasks run on: the registry's entries with a label-free / within-class protocol
DATASETS = tuple(name for name, entry in REGISTRY.items() if entry.tasks)
#: Omniglot validation split of the label-free tasks: whole alphabets held out of the training zip
OMNIGLOT_VAL_ALPHABETS, SPLIT_SEED = 2, 0


#: the tasks ``--task`` accepts (the metric benchmark is the default mode, without ``--task``)
TASK_NAMES = ("ssl", "classification", "self-taught")


@dataclass
class TaskConfig(CommonConfig):
    """One call of ``pml-relaxed bench --task ...``: the :class:`~pml_relaxed_bench.config.CommonConfig` options
    (with the tasks' own defaults) and the tasks' own; list-valued fields are grids (every combination runs)."""

    PROG: ClassVar[str] = "pml-relaxed bench --task"
    DESCRIPTION: ClassVar[str] = (
        "Tasks beyond labelled metric learning: pml-relaxed bench --task ssl|classification|self-taught."
    )
    #: the tasks' recorded results (docs/results) were trained with the unfused AdamW: a rerun gives them again
    FUSED_ADAMW: ClassVar[bool] = False

    dataset: str = _option(
        "digits",
        "digits (scikit-learn, no download) or omniglot (the zips under $PML_RELAXED_DATA/omniglot)",
        choices=DATASETS,
    )
    epochs: int = _option(30, "student epochs")
    teacher_epochs: int = _option(30, "teacher epochs")
    batch_size: int = _option(64, "images per batch (before views)")
    lr: float = _option(3e-3, "learning rate")
    task: str = _option("ssl", "the task", choices=TASK_NAMES, required=True)
    split: str = _option(
        "val",
        "val: held-out training classes (ssl, self-taught) or items (classification), for model selection; test: "
        "the unseen test classes / items",
        choices=("val", "test"),
    )
    temperatures: List[float] = _option(
        [0.1], "NTXent temperatures of the baselines (and of the ssl teacher by default): a grid"
    )
    teacher_temperatures: Optional[List[float]] = _option(
        None, "ssl: NTXent temperatures of the teachers (default: --temperatures)"
    )
    sigmas: List[float] = _option([1.0], "relaxed-label bandwidths")
    ks: List[int] = _option([4], "self-taught: ContextualSimilarity k")
    ema_momenta: List[float] = _option([0.99], "self-taught: EMA teacher momenta")
    stml_kl_weights: List[float] = _option(
        [0.0], "self-taught: weights of STML's self-distillation term (a second head g; 0, the default: off)"
    )
    stml_neighbours: List[int] = _option(
        [0],
        "self-taught: STML's batches, batch-size / N random queries each with its N - 1 nearest neighbours in the "
        "student's embedding, refreshed every epoch (N divides --batch-size; 0, the default: random batches)",
    )
    stml_centers: List[int] = _option(
        [0],
        "self-taught: 1 centres the teacher embeddings on the batch mean before the relaxed labels "
        "(ContextualSimilarity(center=True), not in STML); 0, the default: STML's uncentred labels",
        choices=(0, 1),
    )
    weights: List[float] = _option([1.0], "classification: weights of the transfer loss next to cross-entropy")
    kd_temperatures: List[float] = _option([4.0], "classification: Hinton KD temperatures")


#: the grids of a TaskConfig: ``--quick`` keeps the first value of each
GRIDS = (
    "temperatures",
    "teacher_temperatures",
    "sigmas",
    "ks",
    "ema_momenta",
    "stml_kl_weights",
    "stml_neighbours",
    "stml_centers",
    "weights",
    "kd_temperatures",
)


def quick_config(cfg: "TaskConfig", default_output_dir: str) -> "TaskConfig":
    """``cfg`` as a smoke run of a minute or two: 1 seed, at most 2 epochs (teacher too), the first value of
    every grid, and, without an ``output_dir``, ``<default_output_dir>_quick`` (a quick run's records never
    mix with a full run's)."""
    from dataclasses import replace

    grids = {name: getattr(cfg, name)[:1] for name in GRIDS if getattr(cfg, name) is not None}
    return replace(
        cfg,
        seeds=1,
        epochs=min(cfg.epochs, 2),
        teacher_epochs=min(cfg.teacher_epochs, 2),
        output_dir=cfg.output_dir or f"{default_output_dir}_quick",
        **grids,
    )


def grid(**options: Sequence) -> List[dict]:
    """Every combination of the option lists, as dicts."""
    names = list(options)
    return [dict(zip(names, values)) for values in itertools.product(*(options[n] for n in names))]


# ------------------------------------------------------------------------------------------------ data


def digits_augment() -> Callable[[torch.Tensor], torch.Tensor]:
    """The two-view augmentation of the label-free tasks (batched: one affine draw per image); Omniglot's views
    use it too (28 x 28 strokes: the same small affine jitter and noise)."""
    return Compose([RandomAffine(degrees=15, translate=0.15, scale=(0.8, 1.2)), GaussianNoise(0.1)])


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}; got {dataset!r}")
    return dataset


def dataset_tag(dataset: str, template: str = "{}_") -> str:
    """``template`` filled with ``dataset``, or ``""`` for digits (whose file and folder names predate the option)."""
    return "" if check_dataset(dataset) == "digits" else template.format(dataset)


@lru_cache(maxsize=2)
def omniglot(split: str) -> Omniglot:
    """Omniglot at 28 x 28 from $PML_RELAXED_DATA (decoded once per process): ``"train"`` is
    images_background_small1, ``"test"`` images_background_small2 without the characters shared with it."""
    return Omniglot(split=split, image_size=28)


def unseen_classes(split: str, dataset: str = "digits") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, evaluation images, evaluation labels), class-disjoint.

    Digits: ``test`` trains on the images of digits 0-4 and evaluates on digits 5-9; ``val`` trains on digits
    0, 1, 2 and evaluates on 3, 4 (both within the training classes; the test digits are never looked at).
    Omniglot: ``test`` trains on images_background_small1 and evaluates on small2's unseen alphabets; ``val``
    holds 2 whole small1 alphabets out (drawn with seed 0: Balinese and Latin) for evaluation and trains on
    the other 3.
    """
    if check_dataset(dataset) == "digits":
        train = Digits("train")
        if split == "test":
            test = Digits("test")
            return train.images, test.images, test.labels
        keep = train.labels <= 2
        return train.images[keep], train.images[~keep], train.labels[~keep]
    train = omniglot("train")
    if split == "test":
        test = omniglot("test")
        return train.images, test.images, test.labels
    _, held_out_classes, _ = _split_alphabets(train.class_names, OMNIGLOT_VAL_ALPHABETS, SPLIT_SEED)
    held = torch.isin(train.labels, torch.as_tensor(held_out_classes))
    return train.images[~held], train.images[held], train.labels[held]


def within_class_split(split: str, split_seed: int = SPLIT_SEED, dataset: str = "digits"):
    """Every class's items split 60/20/20 into train / val / test (seeded): returns (train images, train labels,
    evaluation images, evaluation labels) with evaluation = ``split``. Digits: all ten digits; Omniglot: the
    136 characters of images_background_small1, each one's 20 drawers split 12 / 4 / 4."""
    data = Digits("all") if check_dataset(dataset) == "digits" else omniglot("train")
    generator = torch.Generator().manual_seed(split_seed)
    parts: Dict[str, List[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for c in range(int(data.labels.max()) + 1):
        idx = torch.nonzero(data.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_train, n_val = int(0.6 * len(idx)), int(0.2 * len(idx))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    train, evaluation = torch.cat(parts["train"]), torch.cat(parts[split])
    return data.images[train], data.labels[train], data.images[evaluation], data.labels[evaluation]


class Images(torch.utils.data.Dataset):
    """Images without labels (the label-free tasks never see the class labels)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def mlp(hidden: int, dim: int) -> torch.nn.Module:
    """The digits networks of the benchmark: flatten, one hidden layer with BatchNorm, linear output."""
    return torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [hidden], dim, batch_norm=True))


def network(arch: str, dim: int) -> torch.nn.Module:
    """``"mlp<H>"``: :func:`mlp` (digits); ``"conv4-w<W>"``: Conv-4 of width W on 28 x 28 images (Omniglot);
    ``dim`` is the output (embedding) dimension."""
    if arch.startswith("mlp"):
        return mlp(int(arch[3:]), dim)
    if arch.startswith("conv4-w"):
        return Conv4(in_channels=1, width=int(arch[7:]), embedding_dim=dim, image_size=28)
    raise ValueError(f"arch must be 'mlp<H>' or 'conv4-w<W>'; got {arch!r}")


# ------------------------------------------------------------------------------------------ evaluation


def knn_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, k: int = KNN_K) -> float:
    """Leave-one-out k-NN classification accuracy (cosine): the majority label of the k nearest others, a tie
    going to the class of the nearer neighbours (each vote weighs 1 + 1e-3 (k - rank))."""
    emb = torch.nn.functional.normalize(embeddings.double(), dim=1)
    sim = emb @ emb.T
    sim.fill_diagonal_(-math.inf)
    k = min(k, len(labels) - 1)
    nearest = sim.topk(k, dim=1).indices
    votes = torch.zeros(len(labels), int(labels.max()) + 1, dtype=torch.float64)
    weight = 1 + 1e-3 * (k - torch.arange(k, dtype=torch.float64))
    votes.scatter_add_(1, labels[nearest], weight.expand(len(labels), k).contiguous())
    return float((votes.argmax(dim=1) == labels).double().mean())


def retrieval_scores(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str) -> dict:
    """R@1 and MAP@R (leave-one-out retrieval, L2-normalised) and k-NN accuracy on the evaluation classes."""
    dataset = torch.utils.data.TensorDataset(images, labels)
    embeddings, _ = compute_embeddings(model, dataset, batch_size=512, device=device, show_progress=False)
    scores = evaluate_embeddings(embeddings, labels, RETRIEVAL_METRICS, normalize=True, device="cpu")
    scores[f"knn{KNN_K}_accuracy"] = knn_accuracy(embeddings.cpu(), labels.cpu())
    return scores


def top1_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str) -> dict:
    model.eval()
    with torch.no_grad():
        logits = model(images.to(device))
    return {"top1_accuracy": float((logits.argmax(dim=1).cpu() == labels).double().mean())}


# --------------------------------------------------------------------------------------------- results


def record(
    cfg: TaskConfig, setting: str, method: str, seed: int, options: dict, metrics: dict, seconds: float, epochs: int
) -> dict:
    return {
        "task": cfg.task,
        "split": cfg.split,
        "setting": setting,
        "method": method,
        "seed": seed,
        "options": options,
        "metrics": metrics,
        "train_seconds": round(seconds, 2),
        "epochs": epochs,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("output_dir",)},
    }


def choose_on_validation(records: Iterable[dict], metric: str, seeds: int = 3) -> Dict[Tuple[str, str], dict]:
    """The protocol's choice: per (setting, method), the validation options with the best mean ``metric`` over
    ``seeds`` seeds (groups with fewer seeds are ignored; on equal means the first in run order wins)."""
    groups: Dict[Tuple[str, str, str], List[dict]] = {}
    for r in records:
        if r["split"] == "val":
            groups.setdefault((r["setting"], r["method"], option_string(r["options"])), []).append(r)
    best: Dict[Tuple[str, str], Tuple[float, dict]] = {}
    for (setting, method, _), runs in groups.items():
        if len(runs) < seeds:
            continue
        mean = sum(run["metrics"][metric] for run in runs) / len(runs)
        if (setting, method) not in best or mean > best[(setting, method)][0]:
            best[(setting, method)] = (mean, runs[0]["options"])
    return {key: options for key, (_, options) in best.items()}


def verdict(a_mean: float, a_std: float, b_mean: float, b_std: float) -> str:
    """'win' / 'loss' for a against b, 'tie' when the difference is within one std (the larger of the two)."""
    if abs(a_mean - b_mean) <= max(a_std, b_std):
        return "tie"
    return "win" if a_mean > b_mean else "loss"


class RunLog:
    """runs.jsonl in the output folder, read and appended with the runner's :func:`load_done` /
    :func:`append_records`: run by run, and the runs already there are skipped."""

    def __init__(self, out: Path) -> None:
        self.path = out / "runs.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        self.records = load_done(self.path)

    @staticmethod
    def key(split: str, setting: str, method: str, seed: int, options: dict) -> tuple:
        return split, setting, method, seed, option_string(options)

    def done(self, split, setting, method, seed, options) -> bool:
        wanted = self.key(split, setting, method, seed, options)
        return any(
            self.key(r["split"], r["setting"], r["method"], r["seed"], r["options"]) == wanted for r in self.records
        )

    def add(self, rec: dict) -> None:
        self.records.append(rec)
        append_records(self.path, [rec])


__all__ = ["TASK_NAMES", "TaskConfig", "fit", "seed_everything"]
