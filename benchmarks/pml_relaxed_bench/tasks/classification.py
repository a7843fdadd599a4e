"""``--task classification``: a small student classifier trained with cross-entropy alone, or with a transfer
loss from a trained teacher classifier next to it: RelaxedContrastiveLoss or RKD on the penultimate
embeddings, or Hinton KD on the logits; top-1 accuracy on a within-class split of digits or Omniglot characters."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch
from pytorch_metric_learning import trainers

from pml_relaxed.datasets.transforms import Compose, GaussianNoise, RandomAffine
from pml_relaxed.losses import HintonKDLoss, RelaxedContrastiveLoss, RKDLoss
from pml_relaxed.trainers import EmbeddingTransfer

from .common import (
    RunLog,
    TaskConfig,
    dataset_tag,
    fit,
    grid,
    network,
    record,
    seed_everything,
    top1_accuracy,
    within_class_split,
)

#: classes of the within-class split: the ten digits, the 136 characters of Omniglot's images_background_small1
NUM_CLASSES = {"digits": 10, "omniglot": 136}
#: (architecture, penultimate embedding dimension) per dataset (see :func:`.common.network`), a linear head on top
TEACHER = {"digits": ("mlp256", 64), "omniglot": ("conv4-w64", 128)}
STUDENT = {"digits": ("mlp32", 16), "omniglot": ("conv4-w16", 32)}
METHODS = ("ce", "ce+relaxed_contrastive", "ce+kd", "ce+rkd")


def augment():
    return Compose([RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1)), GaussianNoise(0.05)])


class AugmentCollate:
    def __init__(self) -> None:
        self.augment = augment()

    def __call__(self, batch):
        images = torch.stack([item[0] for item in batch])
        return self.augment(images), torch.stack([torch.as_tensor(item[1]) for item in batch])


def classifier(arch_dim, cfg: TaskConfig):
    """(trunk, linear head) of an (architecture, embedding dimension) pair, on ``cfg.device``."""
    arch, dim = arch_dim
    return network(arch, dim).to(cfg.device), torch.nn.Linear(dim, NUM_CLASSES[cfg.dataset]).to(cfg.device)


def train_teacher(images, labels, cfg: TaskConfig, cache: Optional[Path] = None):
    """The teacher classifier (trunk, head, seconds), loaded from ``cache`` when that file exists (the teacher
    trains on the train items for both splits), else trained and saved there."""
    seed_everything(cfg.teacher_seed)
    trunk, head = classifier(TEACHER[cfg.dataset], cfg)
    teacher = torch.nn.Sequential(trunk, head)
    if cache is not None and cache.exists():
        teacher.load_state_dict(torch.load(cache, map_location=cfg.device, weights_only=True))
        seconds = 0.0
    else:
        seconds = fit(
            trainers.TrainWithClassifier,
            {"trunk": trunk, "classifier": head},
            {"classifier_loss": torch.nn.CrossEntropyLoss()},
            torch.utils.data.TensorDataset(images, labels),
            cfg,
            cfg.teacher_epochs,
            collate_fn=AugmentCollate(),
        )
        if cache is not None:
            torch.save(teacher.state_dict(), cache)
    trunk.eval(), head.eval()
    return trunk, head, seconds


def train_student(method: str, options: dict, teacher_trunk, teacher_head, images, labels, cfg: TaskConfig, seed: int):
    seed_everything(seed)
    trunk, head = classifier(STUDENT[cfg.dataset], cfg)
    models = {"trunk": trunk, "classifier": head}
    loss_funcs = {"classifier_loss": torch.nn.CrossEntropyLoss()}
    dataset, collate = torch.utils.data.TensorDataset(images, labels), AugmentCollate()
    if method == "ce":
        seconds = fit(trainers.TrainWithClassifier, models, loss_funcs, dataset, cfg, cfg.epochs, collate_fn=collate)
    else:
        if method == "ce+kd":
            models["teacher"] = torch.nn.Sequential(teacher_trunk, teacher_head)
            loss_funcs["transfer_loss"] = HintonKDLoss(head, temperature=options["kd_temperature"])
        else:
            models["teacher"] = teacher_trunk
            loss_funcs["transfer_loss"] = (
                RelaxedContrastiveLoss(sigma=options["sigma"], delta=cfg.delta)
                if method == "ce+relaxed_contrastive"
                else RKDLoss()
            )
        weights = {"classifier_loss": 1.0, "transfer_loss": options["weight"]}
        seconds = fit(
            EmbeddingTransfer, models, loss_funcs, dataset, cfg, cfg.epochs, collate_fn=collate, loss_weights=weights
        )
    return torch.nn.Sequential(trunk, head), seconds


def method_options(method: str, cfg: TaskConfig) -> List[dict]:
    if method == "ce":
        return [{}]
    if method == "ce+relaxed_contrastive":
        return grid(weight=cfg.weights, sigma=cfg.sigmas)
    if method == "ce+kd":
        return grid(weight=cfg.weights, kd_temperature=cfg.kd_temperatures)
    return grid(weight=cfg.weights)


def run(cfg: TaskConfig, log: RunLog) -> List[dict]:
    train_images, train_labels, eval_images, eval_labels = within_class_split(cfg.split, dataset=cfg.dataset)
    prefix = dataset_tag(cfg.dataset)
    cache = log.path.parent / f"teacher_classification_{prefix}e{cfg.teacher_epochs}_s{cfg.teacher_seed}.pt"
    teacher_trunk, teacher_head, seconds = train_teacher(train_images, train_labels, cfg, cache)
    setting = f"{TEACHER[cfg.dataset][0]}->{STUDENT[cfg.dataset][0]}"
    if not log.done(cfg.split, "teacher", "ce", cfg.teacher_seed, {}):
        log.add(
            record(
                cfg,
                "teacher",
                "ce",
                cfg.teacher_seed,
                {},
                top1_accuracy(torch.nn.Sequential(teacher_trunk, teacher_head), eval_images, eval_labels, cfg.device),
                seconds,
                cfg.teacher_epochs,
            )
        )
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for method in cfg.methods or METHODS:
            for options in method_options(method, cfg):
                if log.done(cfg.split, setting, method, seed, options):
                    continue
                model, seconds = train_student(
                    method, options, teacher_trunk, teacher_head, train_images, train_labels, cfg, seed
                )
                log.add(
                    record(
                        cfg,
                        setting,
                        method,
                        seed,
                        options,
                        top1_accuracy(model, eval_images, eval_labels, cfg.device),
                        seconds,
                        cfg.epochs,
                    )
                )
    return log.records
