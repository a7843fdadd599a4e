"""The methods the benchmark compares: transfer losses, PML label losses from scratch, and both combined.

A method builds PML ``loss_funcs`` / ``mining_funcs`` / ``loss_weights`` for a student. Transfer
methods see the teacher (``EmbeddingTransfer``); scratch methods see labels only (PML's
``MetricLossOnly``); combined methods see both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance

from pml_relaxed.losses import (
    DarkRankLoss,
    FitNetLoss,
    PKTLoss,
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    RKDLoss,
)
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import GaussianKernel, LabelSimilarity, MixedSimilarity


@dataclass
class MethodContext:
    """What a method may depend on."""

    student_dim: int
    teacher_dim: int
    num_classes: int
    sigma: float = 1.0
    delta: float = 1.0
    pos_topk: int = 1
    normalize_student: bool = False  # relaxed losses on L2-normalised student embeddings
    label_weight: float = 0.5  # share of the label similarity in relaxed_contrastive+labels
    rkd_angle_weight: float = 2.0  # RKD's angle-wise weight (its distance-wise weight is 1)


def _relaxed_kwargs(ctx: MethodContext) -> dict:
    kwargs = {"sigma": ctx.sigma, "delta": ctx.delta}
    if ctx.normalize_student:
        kwargs["distance"] = LpDistance(normalize_embeddings=True)
    return kwargs


@dataclass
class Method:
    """One compared method of ``--methods``: how to build its losses from a :class:`MethodContext`.

    Attributes:
        name: the ``--methods`` name, e.g. ``"relaxed_contrastive"``.
        kind: ``"transfer"`` (learns from the teacher), ``"scratch"`` (PML label loss, no teacher) or
            ``"combined"`` (both).
        build: ``build(ctx) -> (loss_funcs, mining_funcs, loss_weights)``, the dicts
            :class:`~pml_relaxed.trainers.EmbeddingTransfer` takes.
        description: one line for the results tables.

    Examples:
        >>> method = METHODS["rkd"]
        >>> method.kind, sorted(method.build(MethodContext(student_dim=8, teacher_dim=64, num_classes=5))[0])
        ('transfer', ['transfer_loss'])
    """

    name: str
    kind: str  # "transfer" | "scratch" | "combined"
    build: Callable[[MethodContext], Tuple[dict, dict, dict]]
    description: str


def _transfer(loss_factory: Callable[[MethodContext], object]) -> Callable[[MethodContext], Tuple[dict, dict, dict]]:
    return lambda ctx: ({"transfer_loss": loss_factory(ctx)}, {}, {"transfer_loss": 1.0})


def _scratch(loss_factory: Callable[[MethodContext], object], miner_factory=None):
    def build(ctx: MethodContext):
        miners = {} if miner_factory is None else {"tuple_miner": miner_factory()}
        return {"metric_loss": loss_factory(ctx)}, miners, {"metric_loss": 1.0}

    return build


def _proxy_anchor(ctx: MethodContext):
    return pml_losses.ProxyAnchorLoss(num_classes=ctx.num_classes, embedding_size=ctx.student_dim)


def _fitnet(ctx: MethodContext):
    if ctx.student_dim == ctx.teacher_dim:
        return FitNetLoss()
    return FitNetLoss(student_dim=ctx.student_dim, teacher_dim=ctx.teacher_dim)


def _miner_contrastive(ctx: MethodContext):
    return (
        {"transfer_loss": pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)},
        {"tuple_miner": TeacherSimilarityMiner(pos_topk=ctx.pos_topk, sigma=ctx.sigma)},
        {"transfer_loss": 1.0},
    )


def _relaxed_plus_proxy_anchor(ctx: MethodContext):
    return (
        {"transfer_loss": RelaxedContrastiveLoss(**_relaxed_kwargs(ctx)), "metric_loss": _proxy_anchor(ctx)},
        {},
        {"transfer_loss": 1.0, "metric_loss": 1.0},
    )


def _relaxed_with_labels(ctx: MethodContext):
    kwargs = _relaxed_kwargs(ctx)
    kernel = GaussianKernel(sigma=kwargs.pop("sigma"))
    similarity = MixedSimilarity(kernel, LabelSimilarity(), label_weight=ctx.label_weight)
    return RelaxedContrastiveLoss(similarity=similarity, **kwargs)


METHODS: Dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "relaxed_contrastive",
            "transfer",
            _transfer(lambda c: RelaxedContrastiveLoss(**_relaxed_kwargs(c))),
            "RelaxedContrastiveLoss (Kim et al. 2021)",
        ),
        Method(
            "relaxed_ms",
            "transfer",
            _transfer(lambda c: RelaxedMultiSimilarityLoss(**_relaxed_kwargs(c))),
            "RelaxedMultiSimilarityLoss (Kim et al. 2021)",
        ),
        Method(
            "miner_contrastive",
            "transfer",
            _miner_contrastive,
            "PML ContrastiveLoss on TeacherSimilarityMiner pairs (label-free)",
        ),
        Method(
            "rkd",
            "transfer",
            _transfer(lambda c: RKDLoss(angle_weight=c.rkd_angle_weight)),
            "RKD, distance x1 + angle x2 by default (Park et al. 2019)",
        ),
        Method("pkt", "transfer", _transfer(lambda c: PKTLoss()), "PKT (Passalis & Tefas 2018)"),
        Method(
            "darkrank",
            "transfer",
            _transfer(lambda c: DarkRankLoss(normalize_embeddings=True)),
            "DarkRank + triplet on labels (Chen et al. 2018), on L2-normalised embeddings",
        ),
        Method("fitnet", "transfer", _transfer(_fitnet), "FitNet embedding regression (Romero et al. 2015)"),
        Method("contrastive", "scratch", _scratch(lambda c: pml_losses.ContrastiveLoss()), "PML ContrastiveLoss"),
        Method(
            "triplet",
            "scratch",
            _scratch(
                lambda c: pml_losses.TripletMarginLoss(margin=0.1), lambda: pml_miners.TripletMarginMiner(margin=0.1)
            ),
            "PML TripletMarginLoss + TripletMarginMiner",
        ),
        Method(
            "multi_similarity",
            "scratch",
            _scratch(lambda c: pml_losses.MultiSimilarityLoss(), lambda: pml_miners.MultiSimilarityMiner()),
            "PML MultiSimilarityLoss + MultiSimilarityMiner",
        ),
        Method("proxy_anchor", "scratch", _scratch(_proxy_anchor), "PML ProxyAnchorLoss"),
        Method("supcon", "scratch", _scratch(lambda c: pml_losses.SupConLoss(temperature=0.1)), "PML SupConLoss"),
        Method(
            "relaxed_contrastive+proxy_anchor",
            "combined",
            _relaxed_plus_proxy_anchor,
            "RelaxedContrastiveLoss + PML ProxyAnchorLoss",
        ),
        Method(
            "relaxed_contrastive+labels",
            "combined",
            _transfer(_relaxed_with_labels),
            "RelaxedContrastiveLoss on (1 - label_weight) teacher kernel + label_weight same-class labels",
        ),
    ]
}

"""Every method ``--methods`` accepts, by name (the default runs them all)."""

DEFAULT_METHODS = tuple(METHODS)
QUICK_METHODS = ("relaxed_contrastive", "rkd", "pkt", "proxy_anchor", "multi_similarity")


def teacher_loss(name: str, num_classes: int, dim: int):
    """The label loss that trains the teacher: any PML loss by class name, e.g. "ProxyAnchorLoss"."""
    if not hasattr(pml_losses, name):
        raise ValueError(f"--teacher-loss must name a PML loss class (e.g. ProxyAnchorLoss); got {name!r}")
    cls = getattr(pml_losses, name)
    if name in (
        "ProxyAnchorLoss",
        "ProxyNCALoss",
        "NormalizedSoftmaxLoss",
        "SoftTripleLoss",
        "ArcFaceLoss",
        "CosFaceLoss",
        "SubCenterArcFaceLoss",
        "LargeMarginSoftmaxLoss",
        "SphereFaceLoss",
    ):
        return cls(num_classes=num_classes, embedding_size=dim)
    return cls()
