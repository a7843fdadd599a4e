"""Resuming PML runs bit for bit: the training state that PML's checkpoints leave out (random generators, samplers).

PML's ``HookContainer`` saves, at the end of each epoch, the ``state_dict`` of every entry of the trainer's
``models``, ``optimizers``, ``lr_schedulers``, ``loss_funcs`` and ``mining_funcs`` (``<name>_<epoch>.pth``), and
``load_latest_saved_models`` loads them back. It saves neither the random generators (the data order,
augmentation and dropout of the next epochs) nor the sampler's position. :func:`register_training_state`
adds both to what those two hooks save and load.
"""

from __future__ import annotations

import random
import warnings
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from pytorch_metric_learning.utils import common_functions as c_f

__all__ = ["RandomState", "register_training_state", "load_unwrapped_state_dicts", "TRAINING_STATE"]

#: the trainer attribute, and the name in ``HookContainer.saveable_trainer_objects``, of the extra state
TRAINING_STATE = "training_state"


class RandomState:
    """The global random generators of Python, NumPy and torch (CPU and CUDA) as an object with a ``state_dict``.

    ``state_dict()`` captures them when it is called (for PML's hooks: when the epoch's checkpoint is
    written) and ``load_state_dict()`` sets them back, so that everything drawn afterwards (the data order
    of PML's default shuffling and of PML's samplers, augmentations in ``__getitem__``, DataLoader worker
    seeds, dropout) is what the uninterrupted run drew. The state holds only tensors, numbers and
    strings, so ``torch.load(..., weights_only=True)`` (PML's loading, PyTorch's default) reads it. CUDA
    generators are saved once CUDA is initialized, each device's in device order; a loaded state with more
    CUDA devices than this process sees sets the first ones.

    Under DistributedDataParallel each process has its own generators: give each rank its own checkpoint
    folder (see docs/trainers.md, "Resuming a run").

    Examples:
        >>> import torch
        >>> rng = RandomState()
        >>> state = rng.state_dict()
        >>> first = torch.rand(3)
        >>> rng.load_state_dict(state)
        >>> torch.equal(torch.rand(3), first)
        True
    """

    def state_dict(self) -> Dict[str, Any]:
        """The generators' states now: ``{"python", "numpy", "torch", "cuda"}``."""
        numpy_state = np.random.get_state(legacy=False)
        return {
            "python": random.getstate(),
            "numpy": {
                "bit_generator": numpy_state["bit_generator"],
                "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                "pos": int(numpy_state["state"]["pos"]),
                "has_gauss": int(numpy_state["has_gauss"]),
                "gauss": float(numpy_state["gauss"]),
            },
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Sets the generators to a :meth:`state_dict` (its tensors may sit on any device)."""
        version, internal, gauss_next = state_dict["python"]
        random.setstate((version, tuple(internal), gauss_next))
        numpy_state = state_dict["numpy"]
        np.random.set_state(
            {
                "bit_generator": numpy_state["bit_generator"],
                "state": {"key": numpy_state["key"].cpu().numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                "has_gauss": numpy_state["has_gauss"],
                "gauss": numpy_state["gauss"],
            }
        )
        torch.set_rng_state(state_dict["torch"].cpu())
        cuda_states = state_dict["cuda"]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in cuda_states[: torch.cuda.device_count()]])


def _batches_per_pass(trainer: Any) -> Optional[int]:
    """The length of the trainer's DataLoader (one pass; PML builds it alike), or None when it has none."""
    try:
        loader = c_f.get_train_dataloader(trainer.dataset, trainer.batch_size, trainer.sampler, 0, trainer.collate_fn)
        return len(loader)
    except (TypeError, ValueError):  # an IterableDataset, a dataset without __len__
        return None


_WRAPPERS = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
_LOADS_UNWRAPPED = "_pml_relaxed_loads_unwrapped_state_dicts"


def _add_module_prefix(module: torch.nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """A load_state_dict pre-hook of a DDP/DataParallel wrapper: ``"w"`` -> ``"module.w"`` (what PML saved)."""
    inner = prefix + "module."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix) :]] = state_dict.pop(key)


def load_unwrapped_state_dicts(model: torch.nn.Module) -> None:
    """Lets a DistributedDataParallel (or DataParallel) wrapper load its inner module's state_dict.

    PML 2.9 saves a wrapped model's ``model.module.state_dict()`` (keys ``"weight"``) but loads the file
    with ``model.load_state_dict`` (which expects ``"module.weight"``), so ``load_latest_saved_models``
    fails on a DDP-wrapped student. This adds the prefix when it is missing; other models are left alone.

    Examples:
        >>> import torch
        >>> wrapped = torch.nn.DataParallel(torch.nn.Linear(3, 2))
        >>> load_unwrapped_state_dicts(wrapped)
        >>> wrapped.load_state_dict(torch.nn.Linear(3, 2).state_dict())
        <All keys matched successfully>
    """
    if isinstance(model, _WRAPPERS) and not getattr(model, _LOADS_UNWRAPPED, False):
        model.register_load_state_dict_pre_hook(_add_module_prefix)
        setattr(model, _LOADS_UNWRAPPED, True)


def register_training_state(hooks: Any, trainer: Any, **objects: Any) -> Dict[str, Any]:
    """Makes PML's ``HookContainer`` save and load the training state PML leaves out, so a resumed run is exact.

    Sets ``trainer.training_state`` to ``{"random_state": RandomState(), "sampler": trainer.sampler,
    **objects}`` (the sampler when it has ``state_dict`` and ``load_state_dict``, as
    :class:`~pml_relaxed.samplers.DistributedMPerClassSampler` and
    :class:`~pml_relaxed.samplers.NearestNeighbourBatchSampler`; PML's samplers draw from NumPy's global
    generator, which ``random_state`` holds) and adds ``"training_state"`` to
    ``hooks.saveable_trainer_objects``. The hooks' model saving then writes ``random_state_<epoch>.pth`` and
    ``sampler_<epoch>.pth`` beside ``trunk_<epoch>.pth``, and ``hooks.load_latest_saved_models(trainer,
    folder)`` loads them with the models. Call it after building the trainer and before
    ``load_latest_saved_models``, in the first run and in every resumed one. Models of ``trainer.models``
    wrapped in DistributedDataParallel or DataParallel are made to load the unwrapped state_dicts PML
    saves (:func:`load_unwrapped_state_dicts`; PML 2.9 cannot load them back otherwise).

    A resumed run then trains the same weights as an uninterrupted one, to the bit, when: every epoch
    is whole passes over the DataLoader (``iterations_per_epoch`` None, PML's default, or a multiple of
    its length; PML's trainer starts a new pass when it resumes; a warning says otherwise); the resumed run
    builds its models, optimizers, losses and sampler as the first run did; nothing else holds training
    state (pass such objects, e.g. a ``torch.amp.GradScaler``, as ``objects``); and the computation is
    deterministic on the device (CPU; on GPUs see ``torch.use_deterministic_algorithms``).

    Args:
        hooks: PML's ``HookContainer`` whose ``end_of_epoch_hook`` the trainer runs.
        trainer: the PML trainer (e.g. :class:`~pml_relaxed.trainers.EmbeddingTransfer`).
        **objects: more objects with ``state_dict`` / ``load_state_dict`` to save, by file name prefix.

    Returns:
        ``trainer.training_state``.

    Raises:
        TypeError: an object without ``state_dict`` and ``load_state_dict``; hooks without
            ``saveable_trainer_objects`` (not PML's HookContainer).

    Examples:
        >>> import torch
        >>> from pytorch_metric_learning.utils import logging_presets
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> from pml_relaxed.trainers import EmbeddingTransfer
        >>> student = torch.nn.Linear(4, 2)
        >>> trainer = EmbeddingTransfer(
        ...     models={"trunk": student, "teacher": torch.nn.Linear(4, 3)},
        ...     optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.1)},
        ...     batch_size=8, loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        ...     dataset=torch.utils.data.TensorDataset(torch.randn(32, 4)),
        ...     data_and_label_getter=lambda batch: (batch[0], None), dataloader_num_workers=0)
        >>> hooks = logging_presets.HookContainer(record_keeper=None)
        >>> sorted(register_training_state(hooks, trainer))
        ['random_state']
        >>> hooks.saveable_trainer_objects[-1]
        'training_state'
    """
    if not isinstance(getattr(hooks, "saveable_trainer_objects", None), list):
        raise TypeError(
            "hooks must be PML's logging_presets.HookContainer (with a saveable_trainer_objects list); got "
            f"{type(hooks).__name__}"
        )
    state: Dict[str, Any] = {"random_state": RandomState()}
    sampler = getattr(trainer, "sampler", None)
    if hasattr(sampler, "state_dict") and hasattr(sampler, "load_state_dict"):
        state["sampler"] = sampler
    for name, obj in objects.items():
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"{name} must have state_dict() and load_state_dict(); got {type(obj).__name__}")
        state[name] = obj
    iterations, batches = trainer.iterations_per_epoch, _batches_per_pass(trainer)
    if iterations and batches and iterations % batches != 0:
        warnings.warn(
            f"iterations_per_epoch={iterations} is not a multiple of the DataLoader's {batches} batches per pass: "
            "PML's trainer starts a new pass when it resumes, so a resumed run will not draw the batches the "
            "uninterrupted run would have (leave iterations_per_epoch None, or make it a multiple)",
            stacklevel=2,
        )
    for model in trainer.models.values():
        load_unwrapped_state_dicts(model)
    setattr(trainer, TRAINING_STATE, state)
    if TRAINING_STATE not in hooks.saveable_trainer_objects:
        hooks.saveable_trainer_objects.append(TRAINING_STATE)
    return state
