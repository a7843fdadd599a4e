"""``--task self-taught``: STML-style metric learning without labels from a random initialisation: an EMA copy
of the student gives ContextualSimilarity relaxed labels to RelaxedContrastiveLoss, against NTXent trained for
the same number of steps; evaluated on unseen classes."""

from __future__ import annotations

from typing import List

from ...losses import RelaxedContrastiveLoss
from ...similarities import ContextualSimilarity
from ...trainers import EmbeddingTransfer
from .common import (
    Images,
    RunLog,
    TaskConfig,
    TwoViewCollate,
    digits_augment,
    fit,
    grid,
    network,
    record,
    retrieval_scores,
    seed_everything,
    unseen_classes,
)
from .ssl import train_ntxent

#: the network (architecture, embedding dimension) per dataset, randomly initialised (see :func:`.common.network`)
SETTING = {"digits": ("mlp256", 64), "omniglot": ("conv4-w64", 128)}
METHODS = ("ntxent", "stml")


def train_stml(cfg: TaskConfig, images, k: int, momentum: float, sigma: float, seed: int):
    """Random-init student; the teacher is its EMA; relaxed labels: ContextualSimilarity on the teacher, with the
    two views of an image ranked first (the batch's instance ids, never class labels)."""
    seed_everything(seed)
    model = network(*SETTING[cfg.dataset]).to(cfg.device)
    similarity = ContextualSimilarity(k=k, sigma=sigma, labels_mark_views=True)
    loss = RelaxedContrastiveLoss(similarity=similarity, delta=cfg.delta, block_size=0)
    seconds = fit(
        EmbeddingTransfer,
        {"trunk": model},
        {"transfer_loss": loss},
        Images(images),
        cfg,
        cfg.epochs,
        collate_fn=TwoViewCollate(digits_augment()),
        ema_momentum=momentum,
    )
    return model, seconds


def run(cfg: TaskConfig, log: RunLog) -> List[dict]:
    train_images, eval_images, eval_labels = unseen_classes(cfg.split, cfg.dataset)
    methods = cfg.methods or list(METHODS)
    arch, dim = SETTING[cfg.dataset]
    setting = arch
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        if "ntxent" in methods:
            for temperature in cfg.temperatures:
                options = {"temperature": temperature}
                if log.done(cfg.split, setting, "ntxent", seed, options):
                    continue
                model, seconds = train_ntxent(arch, dim, train_images, cfg, temperature, seed, cfg.epochs)
                log.add(
                    record(
                        cfg,
                        setting,
                        "ntxent",
                        seed,
                        options,
                        retrieval_scores(model, eval_images, eval_labels, cfg.device),
                        seconds,
                        cfg.epochs,
                    )
                )
        if "stml" in methods:
            for options in grid(k=cfg.ks, ema_momentum=cfg.ema_momenta, sigma=cfg.sigmas):
                if log.done(cfg.split, setting, "stml", seed, options):
                    continue
                model, seconds = train_stml(
                    cfg, train_images, options["k"], options["ema_momentum"], options["sigma"], seed
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
