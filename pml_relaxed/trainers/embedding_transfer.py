"""A PML trainer that trains a student from a frozen teacher (the only module tied to PML 2.x's trainers)."""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Tuple, Union

import torch
from pytorch_metric_learning.losses import CrossBatchMemory, SelfSupervisedLoss
from pytorch_metric_learning.trainers import MetricLossOnly
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import distributed as pml_distributed

from .. import _validation as v
from .._teacher import pml_equivalent, takes_teacher
from ..losses.transfer_cross_batch_memory import check_no_batch_miner

__all__ = ["EmbeddingTransfer", "takes_teacher"]


def _check_teacher_dtype(value: object) -> Optional[torch.dtype]:
    if value is None:
        return None
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise TypeError(
            f"teacher_dtype must be a floating-point torch.dtype (e.g. torch.float64, torch.bfloat16) "
            f"or None; got {value!r}"
        )
    return value


def _check_ema_momentum(value: object) -> Optional[float]:
    if value is None:
        return None
    return v.check_in_unit_interval("ema_momentum", value)


@torch.no_grad()
def ema_update_(teacher: torch.nn.Module, student: torch.nn.Module, momentum: float) -> None:
    """``theta_teacher <- momentum * theta_teacher + (1 - momentum) * theta_student``, in place.

    Runs over the parameters and the floating-point buffers (e.g. BatchNorm running statistics), paired in
    registration order (the teacher is a deep copy of the student); other buffers (BatchNorm's
    ``num_batches_tracked``) are copied. Student values are cast to the teacher's dtype and device.
    """
    pairs = list(zip(teacher.parameters(), student.parameters())) + list(zip(teacher.buffers(), student.buffers()))
    for teacher_tensor, student_tensor in pairs:
        source = student_tensor.detach().to(device=teacher_tensor.device, dtype=teacher_tensor.dtype)
        if teacher_tensor.is_floating_point():
            teacher_tensor.mul_(momentum).add_(source, alpha=1 - momentum)
        else:
            teacher_tensor.copy_(source)


def _teacher_readers(module: torch.nn.Module) -> list:
    """Class names of ``module`` or, when it reads no teacher, of the outermost modules it holds that do."""
    if takes_teacher(module):
        return [type(module).__name__]  # not what it holds: e.g. a relaxed loss's similarity takes teacher_emb too
    return sorted({name for child in module.children() for name in _teacher_readers(child)})


def _pml_wrapper_error(slot: str, module: torch.nn.Module) -> Optional[str]:
    """Why PML's wrapper ``module`` cannot fill ``slot`` here, with the pml_relaxed class to use; None if it can."""
    equivalent = pml_equivalent(module)
    if equivalent is None:
        return None
    name = type(module).__name__
    if isinstance(module, CrossBatchMemory):
        return (
            f"{slot} is PML's CrossBatchMemory, which keeps no teacher memory and would be called with labels=None "
            f"(the trainer gives labels only to a transfer loss that takes teacher_emb); use {equivalent}(loss, "
            "embedding_size, teacher_embedding_size, memory_size, miner=...) instead"
        )
    if isinstance(module, SelfSupervisedLoss):
        return (
            f"{slot} is PML's SelfSupervisedLoss, which takes two views (embeddings, ref_emb) and passes no teacher; "
            f"use {equivalent} outside the trainer, or give the trainer a two-view dataset "
            "(pml_relaxed.datasets.MultiViewDataset) and the transfer loss itself"
        )
    readers = _teacher_readers(module)
    if not readers:
        return None  # PML losses only: they learn from a teacher-based miner's pairs
    if isinstance(module, (pml_distributed.DistributedLossWrapper, pml_distributed.DistributedMinerWrapper)):
        return f"PML's {name} neither gathers nor passes teacher_emb; wrap {', '.join(readers)} in {equivalent} instead"
    return (
        f"{slot} is PML's {name}, which passes no teacher_emb to {', '.join(readers)}; use {equivalent} instead "
        "(it takes the same losses, miners and weights)"
    )


def _check_transfer_funcs(loss_funcs: dict, mining_funcs: dict) -> None:
    """Construction-time refusals of the losses and miners that would crash at step 1 or train silently wrong.

    In order: PML's wrappers that pass no teacher (looked for through the distributed wrappers), a
    ``metric_loss`` that reads the teacher, a ``transfer_loss`` that takes no teacher without a teacher-based
    ``tuple_miner``, and a ``tuple_miner`` beside a cross-batch memory.
    """
    transfer_loss = loss_funcs.get("transfer_loss")
    miner = mining_funcs.get("tuple_miner")
    for slot, module in (("loss_funcs['transfer_loss']", transfer_loss), ("mining_funcs['tuple_miner']", miner)):
        while module is not None:
            error = _pml_wrapper_error(slot, module)
            if error is not None:
                raise ValueError(error)
            module = getattr(module, "teacher_passthrough", None)
    metric_loss = loss_funcs.get("metric_loss")
    readers = _teacher_readers(metric_loss) if isinstance(metric_loss, torch.nn.Module) else []
    if readers:
        raise ValueError(
            f"loss_funcs['metric_loss'] {type(metric_loss).__name__} reads the teacher ({', '.join(readers)} "
            "takes teacher_emb), but the trainer calls metric_loss as a PML label loss, without it; make it the "
            "transfer_loss, or combine both in pml_relaxed.losses.TransferMultipleLosses as the transfer_loss"
        )
    if transfer_loss is not None and not takes_teacher(transfer_loss):
        if miner is None or not takes_teacher(miner):
            raise ValueError(
                f"transfer_loss {type(transfer_loss).__name__} takes no teacher_emb, so it needs a teacher-based "
                "tuple_miner (e.g. pml_relaxed.miners.TeacherSimilarityMiner) in mining_funcs; got "
                f"{type(miner).__name__ if miner is not None else 'no tuple_miner'}"
            )
    check_no_batch_miner(transfer_loss, miner, "mining_funcs['tuple_miner']")


def _first_tensor(module: torch.nn.Module, floating: bool) -> Optional[torch.Tensor]:
    """The module's first parameter (else buffer); with ``floating``, the first floating-point one."""
    for tensors in (module.parameters(), module.buffers()):
        for tensor in tensors:
            if not floating or tensor.is_floating_point():
                return tensor
    return None


def _third_item(batch: Any) -> Any:
    """The view ids of a ``(inputs, labels, view_ids)`` batch."""
    return batch[2] if isinstance(batch, (tuple, list)) and len(batch) == 3 else None


def _data_and_labels(batch: Any) -> Any:
    """PML's default getter (the batch itself is ``(data, labels)``), reading ``batch[:2]`` of a three-item batch."""
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1]
    return c_f.return_input(batch)


class EmbeddingTransfer(MetricLossOnly):
    """PML's MetricLossOnly plus a frozen teacher whose embeddings feed the transfer loss and miner.

    models:
        ``trunk`` (+ optional ``embedder``): the student; ``teacher``: any nn.Module mapping a batch of
        inputs to teacher embeddings. The teacher runs in eval mode under no_grad on exactly the batch
        the student sees (same augmentation), is always in ``freeze_these``, needs no optimizer and is
        never stepped. It lives in ``trainer.teacher``; unless ``save_teacher=True`` a frozen teacher is
        kept out of ``trainer.models`` (so PML's ``HookContainer`` neither saves nor loads ``teacher_*.pth``).
    loss_funcs:
        ``transfer_loss`` (required): a pml_relaxed loss (called with ``teacher_emb=``), or any PML pair
        loss when the ``tuple_miner`` is teacher-based (e.g. TeacherSimilarityMiner). ``metric_loss``
        (optional): any PML label loss on the student embeddings. Combined with PML's ``loss_weights``.
        The teacher does not run on a step where the transfer loss has weight 0 and no miner takes it.
    mining_funcs:
        ``tuple_miner``: its pairs go to the transfer loss; it receives ``teacher_emb=`` when it takes
        it. ``subset_batch_miner`` works as in PML.

    Unlabeled data: a ``data_and_label_getter`` returning ``(data, None)`` trains without labels; the
    miner and the transfer loss then get ``labels=None``, and a ``metric_loss`` that needs labels
    raises ValueError.

    Teacher precision and placement: the teacher may run in another dtype or on another device than
    the student (e.g. a float64 or bfloat16 teacher beside a float32 student). Floating-point inputs
    reach it in its dtype and on its device, taken from ``teacher_dtype`` / ``teacher_device`` when
    given (the teacher is then moved there once, at construction) and otherwise from its first
    floating-point parameter (else buffer; else the trainer's ``dtype`` / ``data_device``). Its
    embeddings are cast to the student embeddings' dtype and device before mining and the losses.

    EMA teacher (``ema_momentum`` set; STML, Kim et al. CVPR 2022): no ``teacher`` is given; the trainer
    builds it at construction as a deep copy of the student, ``torch.nn.Sequential(trunk, embedder)``, and
    on every step, after the backward pass and before the optimizer step (STML's order), updates it from the
    student's current weights as ``theta_t <- m theta_t + (1 - m) theta_s`` (parameters and floating-point
    buffers; see :func:`ema_update_`); after the first step it still equals the initial student. It is
    otherwise the frozen teacher above (eval mode, no_grad, no optimizer, ``trainer.teacher``), but training
    state: it is always in ``trainer.models`` (``models["teacher"]``, whatever ``save_teacher``), so PML's
    ``HookContainer`` saves it as ``teacher_<epoch>.pth`` with the student and ``load_latest_saved_models``
    restores it (a resumed run continues from the saved teacher, not from a copy of the initial student).
    There PML's trainer treats it as frozen: it is in ``freeze_these`` (``set_to_train`` keeps it in eval mode
    without gradients), needs no ``teacher_optimizer`` (none is stepped; giving one logs PML's warning on
    freezing) and is not tested (the testers get the trunk and embedder). With ``ema_momentum=None``
    (default) the teacher is frozen. Resuming bit for bit also needs the random generators and the sampler:
    :func:`~pml_relaxed.trainers.register_training_state`. Initialisation is a choice: STML builds its teacher
    as a second network (its own random head g, no head f) that is never copied from the student; the deep
    copy here starts teacher and student at the same weights, so the first relaxed labels are the student's
    own. For STML's objective pass :class:`~pml_relaxed.losses.STMLLoss` as ``transfer_loss`` (with
    ``embedding_size`` for a two-head student whose output is ``[f | g]``).

    Classifier head (PML's TrainWithClassifier pattern): ``models["classifier"]`` maps the student
    embeddings to logits and ``loss_funcs["classifier_loss"]`` (e.g. ``torch.nn.CrossEntropyLoss()``) scores
    them against the labels; both or neither must be given. Its optimizer is ``classifier_optimizer``.

    Everything else (samplers, lr schedulers, hooks, logging presets, testers) is PML's.
    Under torchrun with DistributedDataParallel: wrap the student (trunk, embedder) in DDP and not the
    teacher, wrap the losses and the miner in :mod:`pml_relaxed.distributed`'s wrappers (looked through
    here) and use a distributed sampler such as :class:`pml_relaxed.samplers.DistributedMPerClassSampler`
    (see ``examples/ddp_transfer.py``).
    For multi-view batches use :class:`pml_relaxed.datasets.MultiViewDataset` with
    ``collate_fn=pml_relaxed.datasets.multi_view_collate``.

    Cached teacher (``teacher_cache=``, no ``models["teacher"]``): a :class:`~pml_relaxed.models.TeacherCache`
    built once from the teacher over seeded views (:class:`~pml_relaxed.datasets.SeededViewDataset` with
    ``collate_fn=pml_relaxed.datasets.seeded_view_collate``, whose batches are ``(inputs, labels, view_ids)``)
    takes the teacher's place: on every step ``teacher_emb = teacher_cache.lookup(view_ids[:, 0], view_ids[:, 1])``,
    cast to the student embeddings' dtype and device, where ``view_ids`` (B, 2) comes from ``view_ids_getter(batch)``
    (default ``batch[2]``). The student then trains as with the live teacher on the same views (equal to float64
    rounding in float64), and the transfer loss, the miner, a cross-batch memory and the distributed wrappers get
    the same ``teacher_emb``. At construction the cache is checked against ``dataset`` (size, transform, seed,
    views): a mismatch raises naming what differs. A ``subset_batch_miner`` (which would drop rows from the batch
    without their ids) and ``ema_momentum`` (a moving teacher cannot be cached) are refused with a cache. A
    batch of three items (a seeded-view batch) reaches ``data_and_label_getter``'s default as ``batch[:2]``.

    Args:
        *args: PML ``BaseTrainer`` arguments (``models``, ``optimizers``, ``batch_size``, ...).
        save_teacher: keep a frozen teacher in ``trainer.models``, so that PML's model saving writes (and
            its loading reads) ``teacher_*.pth`` with the student; default False. An EMA teacher is always
            kept there.
        teacher_dtype: floating-point dtype to run the teacher in, or None (its own).
        teacher_device: device to run the teacher on, or None (its own).
        ema_momentum: momentum m in [0, 1] of an EMA teacher built from the student (then no
            ``models["teacher"]``), or None for the given frozen teacher. STML uses values near 0.999.
        teacher_cache: a :class:`~pml_relaxed.models.TeacherCache` (or any object with
            ``lookup(indices, views)``) in place of ``models["teacher"]``, or None.
        view_ids_getter: maps a batch to its (B, 2) ``[sample index, view]`` rows for ``teacher_cache``;
            default ``batch[2]`` (the third item of a :func:`~pml_relaxed.datasets.seeded_view_collate` batch).
        **kwargs: PML ``BaseTrainer`` keyword arguments.

    Raises:
        ValueError: a transfer_loss that takes no teacher_emb without a teacher-based tuple_miner; a
            bad ``teacher_device`` string; a teacher-fed loss or miner inside PML's MultipleLosses,
            DistributedLossWrapper or DistributedMinerWrapper, PML's CrossBatchMemory or SelfSupervisedLoss
            as the transfer_loss (each message names the pml_relaxed class to use); a metric_loss that reads
            the teacher; a tuple_miner beside a cross-batch memory transfer_loss (give the miner to the
            memory's ``miner=``); ``ema_momentum`` outside [0, 1] or given with a ``models["teacher"]``; a
            classifier without a classifier_loss or the reverse; a ``teacher_cache`` beside a ``models["teacher"]``,
            ``ema_momentum`` or a ``subset_batch_miner``, or built from another dataset, transform or fewer views; at
            training time, a batch without labels reaching a ``metric_loss``, a ``classifier_loss`` or a
            ``subset_batch_miner`` that needs them, a batch whose ``view_ids`` are not one (index, view) row per input.
        TypeError: a non-bool ``save_teacher``, a ``teacher_dtype`` that is not a floating-point
            torch.dtype, a ``teacher_device`` that is not a device, a non-number ``ema_momentum``.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> student, teacher = torch.nn.Linear(4, 2), torch.nn.Linear(4, 3).double()
        >>> images = torch.utils.data.TensorDataset(torch.randn(32, 4))  # no labels
        >>> trainer = EmbeddingTransfer(
        ...     models={"trunk": student, "teacher": teacher},
        ...     optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.1)},
        ...     batch_size=8, loss_funcs={"transfer_loss": RelaxedContrastiveLoss()}, dataset=images,
        ...     data_and_label_getter=lambda batch: (batch[0], None), iterations_per_epoch=2,
        ...     dataloader_num_workers=0, data_device=torch.device("cpu"))
        >>> trainer.train(num_epochs=1)
        >>> sorted(trainer.models), trainer.teacher is teacher
        (['embedder', 'trunk'], True)
    """

    def __init__(
        self,
        *args: Any,
        save_teacher: bool = False,
        teacher_dtype: Optional[torch.dtype] = None,
        teacher_device: Optional[Union[str, torch.device]] = None,
        ema_momentum: Optional[float] = None,
        teacher_cache: Optional[Any] = None,
        view_ids_getter: Optional[Callable[[Any], torch.Tensor]] = None,
        **kwargs: Any,
    ) -> None:
        if teacher_cache is not None and not callable(getattr(teacher_cache, "lookup", None)):
            raise TypeError(
                "teacher_cache must be a pml_relaxed.models.TeacherCache (an object with lookup(indices, views)) or "
                f"None; got {type(teacher_cache).__name__}"
            )
        if view_ids_getter is not None and not callable(view_ids_getter):
            raise TypeError(f"view_ids_getter must be callable or None; got {type(view_ids_getter).__name__}")
        self.teacher_cache = teacher_cache
        self.view_ids_getter = view_ids_getter or _third_item
        self.view_ids: Optional[torch.Tensor] = None
        self.save_teacher = v.check_bool("save_teacher", save_teacher)
        self.ema_momentum = _check_ema_momentum(ema_momentum)
        self.teacher_dtype = _check_teacher_dtype(teacher_dtype)
        self.teacher_device = v.check_optional_device("teacher_device", teacher_device)
        super().__init__(*args, **kwargs)

    def custom_setup(self) -> None:
        if self.teacher_cache is not None:
            self._check_teacher_cache()
        elif self.ema_momentum is not None:
            self.models = dict(self.models)  # the caller's dict stays as it was
            if "teacher" in self.models:
                raise ValueError(
                    "ema_momentum builds the teacher as a momentum copy of the student, so models must not hold a "
                    f"'teacher'; got models['teacher'] = {type(self.models['teacher']).__name__} (drop it, or pass "
                    "ema_momentum=None for a frozen teacher)"
                )
            student = torch.nn.Sequential(self.models["trunk"], self.models.get("embedder", torch.nn.Identity()))
            self.models["teacher"] = copy.deepcopy(student)
        has_classifier, has_loss = "classifier" in self.models, "classifier_loss" in self.loss_funcs
        if has_classifier != has_loss:
            given, missing = "models['classifier']", "loss_funcs['classifier_loss']"
            if not has_classifier:
                given, missing = missing, given
            raise ValueError(
                f"a classifier head needs both models['classifier'] and loss_funcs['classifier_loss']; "
                f"got {given} without {missing}"
            )
        if "teacher" not in self.freeze_these and self.teacher_cache is None:
            self.freeze_these = tuple(self.freeze_these) + ("teacher",)
        _check_transfer_funcs(self.loss_funcs, self.mining_funcs)

    def _check_teacher_cache(self) -> None:
        """The refusals of a ``teacher_cache`` beside what it replaces or cannot serve, and its check on the dataset."""
        clashes = [
            (self.models is not None and "teacher" in self.models, "models['teacher'] (the cache replaces it)"),
            (self.ema_momentum is not None, "ema_momentum (an EMA teacher moves: it cannot be cached)"),
            (
                "subset_batch_miner" in self.mining_funcs,
                "mining_funcs['subset_batch_miner'] (it subsets the batch without its view_ids)",
            ),
        ]
        for clash, what in clashes:
            if clash:
                raise ValueError(f"teacher_cache takes the teacher's place, so it cannot be given with {what}")
        check = getattr(self.teacher_cache, "check", None)
        if callable(check) and self.dataset is not None:
            check(dataset=self.dataset)

    def initialize_data_and_label_getter(self) -> None:
        if self.data_and_label_getter is None:
            self.data_and_label_getter = _data_and_labels
        super().initialize_data_and_label_getter()

    def modify_schema(self) -> None:
        self.schema["models"].keys += ["teacher"]
        if self.teacher_cache is None:
            self.schema["models"].essential += ["teacher"]
        self.schema["models"].keys += ["classifier"]
        self.schema["models"].important = ["embedder"]  # the classifier head is optional: no warning without it
        self.schema["loss_funcs"].keys += ["transfer_loss", "classifier_loss"]
        self.schema["loss_funcs"].essential = ["transfer_loss"]
        # metric_loss is optional here: PML's default "important" keys (keys minus essential) would warn
        # 'loss_funcs is missing "metric_loss"' on every construction without one.
        self.schema["loss_funcs"].important = []
        self.schema["optimizers"].important = c_f.append_map(
            [k for k in self.models.keys() if k != "teacher"], "_optimizer"
        )

    def initialize_models(self) -> None:
        super().initialize_models()
        if self.teacher_cache is not None:
            self.teacher = None
            return
        self.teacher = self.models["teacher"]
        if self.teacher_device is not None or self.teacher_dtype is not None:
            self.teacher.to(device=self.teacher_device, dtype=self.teacher_dtype)
        c_f.set_requires_grad(self.teacher, requires_grad=False)
        self.teacher.zero_grad()  # stale gradients of its own training; frozen, it gets no new ones
        self.teacher.eval()
        if not self.keeps_teacher_in_models():
            # PML's HookContainer saves and loads every entry of trainer.models (a new dict: the caller's stays)
            self.models = {name: model for name, model in self.models.items() if name != "teacher"}

    def keeps_teacher_in_models(self) -> bool:
        """Whether ``trainer.models`` holds the teacher, so that PML's hooks save and load ``teacher_*.pth``: an
        EMA teacher always (it is training state), a frozen one with ``save_teacher=True``."""
        return (self.save_teacher or self.ema_momentum is not None) and self.teacher_cache is None

    def get_batch(self) -> Tuple[Any, Optional[torch.Tensor]]:
        self.dataloader_iter, curr_batch = c_f.try_next_on_generator(self.dataloader_iter, self.dataloader)
        if self.teacher_cache is not None:
            self.view_ids = self.view_ids_getter(curr_batch)
        data, labels = self.data_and_label_getter(curr_batch)
        if labels is None:  # PML's process_label and subset batch mining need labels
            if "subset_batch_miner" in self.mining_funcs:
                raise ValueError(
                    f"subset_batch_miner {type(self.mining_funcs['subset_batch_miner']).__name__} needs labels, but "
                    "data_and_label_getter returned labels None; drop the subset_batch_miner or return labels"
                )
            return data, None
        labels = c_f.process_label(labels, self.label_hierarchy_level, self.label_mapper)
        return self.maybe_do_batch_mining(data, labels)

    def teacher_input_spec(self) -> Tuple[torch.device, Optional[torch.dtype]]:
        """The device and floating-point dtype the teacher's inputs are given (see the class docstring)."""
        device, dtype = self.teacher_device, self.teacher_dtype
        if device is None:
            tensor = _first_tensor(self.teacher, floating=False)
            device = tensor.device if tensor is not None else self.data_device
        if dtype is None:
            tensor = _first_tensor(self.teacher, floating=True)
            dtype = tensor.dtype if tensor is not None else self.dtype
        return device, dtype

    def compute_teacher_embeddings(self, data: Any, student_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The teacher's embeddings of ``data`` under no_grad, cast to ``student_emb``'s dtype and device.

        With a ``teacher_cache``, the cache's rows of the batch's ``view_ids`` instead."""
        if self.teacher_cache is not None:
            teacher_emb = self.cached_teacher_embeddings(data)
            if student_emb is not None:
                teacher_emb = teacher_emb.to(device=student_emb.device, dtype=student_emb.dtype)
            return teacher_emb
        self.teacher.eval()
        if isinstance(data, torch.Tensor):
            device, dtype = self.teacher_input_spec()
            data = data.to(device=device, dtype=dtype if data.is_floating_point() and dtype is not None else None)
        with torch.no_grad():
            teacher_emb = self.teacher(data)
        if student_emb is not None:
            teacher_emb = teacher_emb.to(device=student_emb.device, dtype=student_emb.dtype)
        return teacher_emb

    def cached_teacher_embeddings(self, data: Any) -> torch.Tensor:
        """``teacher_cache.lookup(view_ids[:, 0], view_ids[:, 1])`` of the current batch's ``view_ids``."""
        ids = self.view_ids
        rows = len(data) if hasattr(data, "__len__") else None
        if (
            not isinstance(ids, torch.Tensor)
            or ids.ndim != 2
            or ids.shape[1] != 2
            or (rows is not None and ids.shape[0] != rows)
        ):
            got = f"shape {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(
                f"view_ids_getter must give one [sample index, view] row per input: expected a ({rows}, 2) tensor, "
                f"got {got} (use pml_relaxed.datasets.SeededViewDataset with collate_fn=seeded_view_collate)"
            )
        return self.teacher_cache.lookup(ids[:, 0].cpu(), ids[:, 1].cpu())

    def teacher_is_needed(self) -> bool:
        """False on a step where the transfer loss has weight 0 and no tuple_miner takes the teacher."""
        miner = self.mining_funcs.get("tuple_miner")
        return self.loss_weights.get("transfer_loss", 0) != 0 or (miner is not None and takes_teacher(miner))

    def calculate_loss(self, curr_batch) -> None:
        data, labels = curr_batch
        embeddings = self.compute_embeddings(data)
        teacher_emb = self.compute_teacher_embeddings(data, embeddings) if self.teacher_is_needed() else None
        indices_tuple = self.maybe_mine_embeddings(embeddings, labels, teacher_emb)
        self.losses["transfer_loss"] = self.get_transfer_loss(embeddings, labels, indices_tuple, teacher_emb)
        if "metric_loss" in self.loss_funcs:
            self.losses["metric_loss"] = self.maybe_get_metric_loss(embeddings, labels, None)
        if "classifier_loss" in self.loss_funcs:
            self.losses["classifier_loss"] = self.maybe_get_classifier_loss(embeddings, labels)

    def maybe_get_classifier_loss(self, embeddings: torch.Tensor, labels: Optional[torch.Tensor]):
        """``classifier_loss(classifier(embeddings), labels)``, or 0 at weight 0."""
        if self.loss_weights.get("classifier_loss", 0) == 0:
            return 0
        if labels is None:
            raise ValueError(
                f"classifier_loss {type(self.loss_funcs['classifier_loss']).__name__} needs labels, but "
                "data_and_label_getter returned labels None (an unlabeled batch); return labels or drop the classifier"
            )
        logits = self.models["classifier"](embeddings)
        return self.loss_funcs["classifier_loss"](logits, c_f.to_device(labels, logits))

    def step_optimizers(self) -> None:
        if self.ema_momentum is not None:  # STML's order: the teacher moves towards the student before its step
            self.update_teacher()
        super().step_optimizers()

    def update_teacher(self) -> None:
        """The EMA step of an ``ema_momentum`` teacher, from the student's weights before each optimizer step."""
        student = (self.models["trunk"], self.models["embedder"])
        for teacher_part, student_part in zip(self.teacher, student):
            ema_update_(teacher_part, student_part, self.ema_momentum)

    def maybe_get_metric_loss(self, embeddings, labels, indices_tuple):
        if labels is not None or self.loss_weights.get("metric_loss", 0) <= 0:
            return super().maybe_get_metric_loss(embeddings, labels, indices_tuple)
        metric_loss = self.loss_funcs["metric_loss"]
        try:
            return metric_loss(embeddings, None, indices_tuple)
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(
                f"metric_loss {type(metric_loss).__name__} needs labels, but data_and_label_getter returned labels "
                "None (an unlabeled batch); return labels, drop the metric_loss or give it weight 0"
            ) from err

    def maybe_mine_embeddings(
        self, embeddings: torch.Tensor, labels: Optional[torch.Tensor], teacher_emb: Optional[torch.Tensor] = None
    ):
        miner = self.mining_funcs.get("tuple_miner")
        if miner is None:
            return None
        if takes_teacher(miner):
            return miner(embeddings, labels, teacher_emb=teacher_emb)
        return miner(embeddings, labels)

    def get_transfer_loss(self, embeddings, labels, indices_tuple, teacher_emb):
        if self.loss_weights.get("transfer_loss", 0) == 0:
            return 0
        loss_fn = self.loss_funcs["transfer_loss"]
        if takes_teacher(loss_fn):  # by keyword: STMLLoss's second argument is aux_embeddings
            return loss_fn(embeddings, labels=labels, indices_tuple=indices_tuple, teacher_emb=teacher_emb)
        return loss_fn(embeddings, labels=None, indices_tuple=indices_tuple)
