"""``--task ssl``: a teacher trained without labels (NTXent on two views) transferred to a student with the
relaxed contrastive loss, against the same student trained with NTXent alone; no class label is ever read."""

from __future__ import annotations

from typing import Dict, List

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import trainers

from pml_relaxed.datasets import TwoViewCollate
from pml_relaxed.losses import RelaxedContrastiveLoss, TwoViewLoss
from pml_relaxed.trainers import EmbeddingTransfer

from .common import (
    Images,
    RunLog,
    TaskConfig,
    dataset_tag,
    digits_augment,
    fit,
    grid,
    network,
    record,
    retrieval_scores,
    seed_everything,
    unseen_classes,
)

#: the teacher's (architecture, embedding dimension) per dataset (see :func:`.common.network`)
TEACHER = {"digits": ("mlp256", 64), "omniglot": ("conv4-w64", 128)}
#: student settings: per dataset, (architecture, embedding dimension)
SETTINGS = {
    "self_transfer": {"digits": ("mlp256", 64), "omniglot": ("conv4-w64", 128)},
    "compression": {"digits": ("mlp64", 16), "omniglot": ("conv4-w32", 32)},
}
METHODS = ("ntxent", "relaxed_contrastive")


def unlabeled_getter(batch):
    """(views, None): the transfer student sees no labels at all, not even instance ids."""
    return batch[0], None


def train_ntxent(
    arch: str, dim: int, images: torch.Tensor, cfg: TaskConfig, temperature: float, seed: int, epochs: int
):
    """A network trained from scratch with SelfSupervisedLoss(NTXentLoss) on two views (PML's MetricLossOnly)."""
    seed_everything(seed)
    model = network(arch, dim).to(cfg.device)
    loss = TwoViewLoss(pml_losses.NTXentLoss(temperature=temperature))
    seconds = fit(
        trainers.MetricLossOnly,
        {"trunk": model},
        {"metric_loss": loss},
        Images(images),
        cfg,
        epochs,
        collate_fn=TwoViewCollate(digits_augment()),
    )
    return model, seconds


def run_ntxent(
    cfg: TaskConfig,
    log: RunLog,
    setting: str,
    arch: str,
    dim: int,
    seed: int,
    train_images: torch.Tensor,
    eval_images: torch.Tensor,
    eval_labels: torch.Tensor,
) -> None:
    """The NT-Xent baseline of one (setting, seed) at every ``cfg.temperatures``, each run logged once."""
    for temperature in cfg.temperatures:
        options = {"temperature": temperature}
        if log.done(cfg.split, setting, "ntxent", seed, options):
            continue
        model, seconds = train_ntxent(arch, dim, train_images, cfg, temperature, seed, cfg.epochs)
        scores = retrieval_scores(model, eval_images, eval_labels, cfg.device)
        log.add(record(cfg, setting, "ntxent", seed, options, scores, seconds, cfg.epochs))


def train_transfer(teacher, arch: str, dim: int, images: torch.Tensor, cfg: TaskConfig, sigma: float, seed: int):
    """A student trained from the frozen teacher with RelaxedContrastiveLoss on the same two-view batches."""
    seed_everything(seed)
    model = network(arch, dim).to(cfg.device)
    loss = RelaxedContrastiveLoss(sigma=sigma, delta=cfg.delta)
    seconds = fit(
        EmbeddingTransfer,
        {"trunk": model, "teacher": teacher},
        {"transfer_loss": loss},
        Images(images),
        cfg,
        cfg.epochs,
        collate_fn=TwoViewCollate(digits_augment()),
        data_and_label_getter=unlabeled_getter,
    )
    return model, seconds


def run(cfg: TaskConfig, log: RunLog) -> List[dict]:
    train_images, eval_images, eval_labels = unseen_classes(cfg.split, cfg.dataset)
    teacher_arch, teacher_dim = TEACHER[cfg.dataset]
    prefix = dataset_tag(cfg.dataset)
    methods = cfg.methods or list(METHODS)
    teachers: Dict[float, torch.nn.Module] = {}
    for temperature in (cfg.teacher_temperatures or cfg.temperatures) if "relaxed_contrastive" in methods else []:
        options = {"temperature": temperature}
        cache = log.path.parent / (
            f"teacher_ssl_{prefix}{cfg.split}_t{temperature:g}_e{cfg.teacher_epochs}_s{cfg.teacher_seed}.pt"
        )  # a teacher of another dataset, split or budget never loads
        if cache.exists():
            teacher, seconds = network(teacher_arch, teacher_dim).to(cfg.device), 0.0
            teacher.load_state_dict(torch.load(cache, map_location=cfg.device, weights_only=True))
        else:
            teacher, seconds = train_ntxent(
                teacher_arch, teacher_dim, train_images, cfg, temperature, cfg.teacher_seed, cfg.teacher_epochs
            )
            torch.save(teacher.state_dict(), cache)
        teacher.eval()
        teachers[temperature] = teacher
        if not log.done(cfg.split, "teacher", "ntxent", cfg.teacher_seed, options):
            log.add(
                record(
                    cfg,
                    "teacher",
                    "ntxent",
                    cfg.teacher_seed,
                    options,
                    retrieval_scores(teacher, eval_images, eval_labels, cfg.device),
                    seconds,
                    cfg.teacher_epochs,
                )
            )
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for setting, archs in SETTINGS.items():
            arch, dim = archs[cfg.dataset]
            if cfg.settings is not None and setting not in cfg.settings:
                continue
            if "ntxent" in methods:
                run_ntxent(cfg, log, setting, arch, dim, seed, train_images, eval_images, eval_labels)
            if "relaxed_contrastive" in methods:
                for options in grid(teacher_temperature=list(teachers), sigma=cfg.sigmas):
                    if log.done(cfg.split, setting, "relaxed_contrastive", seed, options):
                        continue
                    model, seconds = train_transfer(
                        teachers[options["teacher_temperature"]], arch, dim, train_images, cfg, options["sigma"], seed
                    )
                    log.add(
                        record(
                            cfg,
                            setting,
                            "relaxed_contrastive",
                            seed,
                            options,
                            retrieval_scores(model, eval_images, eval_labels, cfg.device),
                            seconds,
                            cfg.epochs,
                        )
                    )
    return log.records
