"""``--task self-taught``: STML's metric learning without labels from a random initialisation: an EMA copy of the
student gives ContextualSimilarity relaxed labels to :class:`~pml_relaxed.losses.STMLLoss`, against NTXent trained
for the same number of steps; evaluated on unseen classes. ``--stml-kl-weights`` adds STML's self-distillation
term and its second, wider head g next to the evaluated head f (STML's objective at weight 1; off by default:
head f alone); ``--stml-neighbours`` builds STML's
batches (random queries, each with its nearest neighbours in the student's embedding, refreshed every epoch;
off by default: random batches); ``--stml-centers 1`` centres the teacher embeddings on the batch mean before the
relaxed labels (not in STML; off by default)."""

from __future__ import annotations

from typing import List, Optional

import torch

from pml_relaxed.datasets import TwoViewCollate
from pml_relaxed.evaluation import compute_embeddings
from pml_relaxed.losses import STMLLoss
from pml_relaxed.samplers import NearestNeighbourBatchSampler
from pml_relaxed.similarities import ContextualSimilarity
from pml_relaxed.trainers import EmbeddingTransfer

from .common import (
    Images,
    RunLog,
    TaskConfig,
    digits_augment,
    fit,
    grid,
    network,
    record,
    retrieval_scores,
    seed_everything,
    unseen_classes,
)
from .ssl import run_ntxent

#: the network (architecture, embedding dimension) per dataset, randomly initialised (see :func:`.common.network`)
SETTING = {"digits": ("mlp256", 64), "omniglot": ("conv4-w64", 128)}
METHODS = ("ntxent", "stml")
#: with the self-distillation term, the width of the auxiliary head g is this multiple of the embedding dimension
G_WIDTH = 4


class DualHead(torch.nn.Module):
    """Two linear heads on the same features, concatenated: ``[f(x), g(x)]`` (``dim_f + dim_g`` columns)."""

    def __init__(self, in_features: int, dim_f: int, dim_g: int) -> None:
        super().__init__()
        self.f, self.g = torch.nn.Linear(in_features, dim_f), torch.nn.Linear(in_features, dim_g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.f(x), self.g(x)], dim=1)


class Columns(torch.nn.Module):
    """One head of a two-head network: columns ``[start, stop)`` of its output (head f: ``(0, dim)``, the
    evaluated embedding; head g: ``(dim, None)``)."""

    def __init__(self, model: torch.nn.Module, start: int, stop: Optional[int] = None) -> None:
        super().__init__()
        self.model, self.start, self.stop = model, start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.start : self.stop]


def two_head_network(arch: str, dim: int) -> torch.nn.Module:
    """:func:`.common.network` with its last linear layer replaced by a :class:`DualHead` (f: ``dim``, g:
    ``G_WIDTH * dim``)."""
    model = network(arch, dim)
    if hasattr(model, "embedder"):  # Conv-4: its linear embedding head
        model.embedder = DualHead(model.embedder.in_features, dim, G_WIDTH * dim)
    else:  # flatten + MLP: the MLP's output layer
        layers = model[1].net
        layers[-1] = DualHead(layers[-1].in_features, dim, G_WIDTH * dim)
    return model


def neighbour_batches(model: torch.nn.Module, images: torch.Tensor, cfg: TaskConfig, neighbours: int):
    """STML's batches for ``model``: :class:`~pml_relaxed.samplers.NearestNeighbourBatchSampler` over the
    model's embeddings of the un-augmented ``images`` (recomputed every epoch; queries from the global
    generator, so the run's seed fixes them)."""

    dataset = Images(images)

    def embed() -> torch.Tensor:
        return compute_embeddings(model, dataset, batch_size=512, device=cfg.device, show_progress=False)[0]

    return NearestNeighbourBatchSampler(embed, batch_size=cfg.batch_size, neighbours_per_query=neighbours)


def train_stml(
    cfg: TaskConfig,
    images,
    k: int,
    momentum: float,
    sigma: float,
    seed: int,
    kl_weight: float = 0.0,
    neighbours: int = 0,
    center: bool = False,
):
    """Random-init student; the teacher is its EMA; relaxed labels: ContextualSimilarity on the teacher, with the
    two views of an image ranked first (the batch's instance ids, never class labels). ``kl_weight > 0``: STML's
    two-head student and :class:`STMLLoss`; the returned model gives head f. ``neighbours > 0``: STML's batches
    (:func:`neighbour_batches`, searched in head g with two heads, as STML), else random batches. ``center``: the
    teacher embeddings are centred on the batch mean before the labels (``ContextualSimilarity(center=True)``)."""
    seed_everything(seed)
    arch, dim = SETTING[cfg.dataset]
    model = (two_head_network(arch, dim) if kl_weight else network(arch, dim)).to(cfg.device)
    sampler = None
    if neighbours:
        sampler = neighbour_batches(Columns(model, dim) if kl_weight else model, images, cfg, neighbours)
    similarity = ContextualSimilarity(k=k, sigma=sigma, labels_mark_views=True, center=center)
    loss = STMLLoss(similarity, delta=cfg.delta, kl_weight=kl_weight, embedding_size=dim if kl_weight else None)
    seconds = fit(
        EmbeddingTransfer,
        {"trunk": model},
        {"transfer_loss": loss},
        Images(images),
        cfg,
        cfg.epochs,
        collate_fn=TwoViewCollate(digits_augment()),
        ema_momentum=momentum,
        sampler=sampler,
    )
    return (Columns(model, 0, dim) if kl_weight else model), seconds


def run(cfg: TaskConfig, log: RunLog) -> List[dict]:
    train_images, eval_images, eval_labels = unseen_classes(cfg.split, cfg.dataset)
    methods = cfg.methods or list(METHODS)
    arch, dim = SETTING[cfg.dataset]
    setting = arch
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        if "ntxent" in methods:
            run_ntxent(cfg, log, setting, arch, dim, seed, train_images, eval_images, eval_labels)
        if "stml" in methods:
            for options in grid(
                k=cfg.ks,
                ema_momentum=cfg.ema_momenta,
                sigma=cfg.sigmas,
                kl_weight=cfg.stml_kl_weights,
                neighbours=cfg.stml_neighbours,
                center=cfg.stml_centers,
            ):
                for off_by_default in ("kl_weight", "neighbours", "center"):  # runs without them keep their resume keys
                    if not options[off_by_default]:
                        del options[off_by_default]
                if log.done(cfg.split, setting, "stml", seed, options):
                    continue
                model, seconds = train_stml(
                    cfg,
                    train_images,
                    options["k"],
                    options["ema_momentum"],
                    options["sigma"],
                    seed,
                    options.get("kl_weight", 0.0),
                    options.get("neighbours", 0),
                    bool(options.get("center", 0)),
                )
                log.add(
                    record(
                        cfg,
                        setting,
                        "stml",
                        seed,
                        options,
                        retrieval_scores(model, eval_images, eval_labels, cfg.device),
                        seconds,
                        cfg.epochs,
                    )
                )
    return log.records
