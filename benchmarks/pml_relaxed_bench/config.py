"""The benchmark's settings as typed objects, their command line and back.

One family of dataclasses describes every option: :class:`CommonConfig` holds what every mode shares
(dataset, quick, seeds, budget, output folder, device), :class:`BenchConfig` adds the metric benchmark's
options and :class:`~pml_relaxed_bench.tasks.TaskConfig` the tasks'. :func:`get_args_parser` is built from a
config's fields (type, default, help), :meth:`CommonConfig.from_args` parses a command line into it, and
:meth:`CommonConfig.to_argv` writes the command line that gives it back (``--workers`` runs each job as
``pml-relaxed bench`` with such a command line).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

from .methods import DEFAULT_METHODS

#: the datasets ``--dataset`` accepts (the registry in :mod:`pml_relaxed_bench.registry` builds them)
DATASET_NAMES = ("digits", "omniglot", "banking77", "cub", "cars", "sop")
#: the datasets whose teacher is a given pretrained model, never trained by the benchmark (``--teacher-checkpoint``
#: loads a trained teacher's state_dict, so it does not apply to them)
PRETRAINED_TEACHER_DATASETS = ("banking77",)
#: the peers ``--peers`` accepts (:mod:`pml_relaxed_bench.text_peers` builds them)
PEER_NAMES = ("model2vec", "pca")
#: the text student families ``--text-student`` accepts (:mod:`pml_relaxed_bench.text_data` builds them)
TEXT_STUDENT_NAMES = ("hashed", "attention", "conv")


def _option(default: Any, help: str, **argparse_options: Any) -> Any:
    """A field with its command-line help (and any other ``add_argument`` option, e.g. ``choices``); a list
    default is copied for every instance."""
    metadata = {"help": help, **argparse_options}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _default(spec: dataclasses.Field) -> Any:
    """The default value of a config field (``default`` or ``default_factory()``)."""
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def check_teacher_checkpoint(config: "BenchConfig", pretrained_teacher: bool) -> None:
    """Refuses ``--teacher-checkpoint`` for a dataset whose teacher is a given pretrained model.

    The option loads the state_dict of the teacher the benchmark would otherwise train; a dataset with a
    given teacher (Banking77: all-MiniLM-L6-v2) would train from that model anyway, ignoring it.

    Args:
        config: the benchmark's settings.
        pretrained_teacher: whether ``config.dataset`` comes with a given pretrained teacher.

    Raises:
        ValueError: ``--teacher-checkpoint`` given with such a dataset.

    Examples:
        >>> config = BenchConfig(dataset="banking77", teacher_checkpoint="minilm/")
        >>> check_teacher_checkpoint(config, pretrained_teacher=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --teacher-checkpoint loads the state_dict of a teacher the benchmark trains (--dataset digits, ...
    """
    if config.teacher_checkpoint and pretrained_teacher:
        trained = ", ".join(name for name in DATASET_NAMES if name not in PRETRAINED_TEACHER_DATASETS)
        raise ValueError(
            f"--teacher-checkpoint loads the state_dict of a teacher the benchmark trains (--dataset {trained}); "
            f"--dataset {config.dataset} has a given pretrained teacher instead, which the option would not replace; "
            f"got --teacher-checkpoint {config.teacher_checkpoint}"
        )


ConfigT = TypeVar("ConfigT", bound="CommonConfig")


@dataclass
class CommonConfig:
    """The options every mode of ``pml-relaxed bench`` shares (the metric benchmark, :class:`BenchConfig`, and the
    tasks, :class:`TaskConfig`): what to train on, how many seeds, the budget, where to write, on which device.

    A field's command-line option is ``--`` + its name with ``-`` for ``_`` (booleans also take ``--no-...``);
    a mode's config subclasses this one and may give a field its own default.
    """

    #: ``prog`` of the mode's parser (:func:`get_args_parser`)
    PROG: ClassVar[str] = "pml-relaxed bench"
    DESCRIPTION: ClassVar[str] = "pml-relaxed bench"
    #: the mode trains with fused AdamW (one kernel for all parameters: 7x faster steps for the text students'
    #: tables); fused AdamW rounds differently from the unfused one, so a mode keeps the one its results used
    FUSED_ADAMW: ClassVar[bool] = True

    dataset: str = _option("digits", f"one of {list(DATASET_NAMES)}")
    quick: bool = _option(
        False,
        "a short smoke run: the metric benchmark runs fewer methods, 2 seeds and half the epochs; a --task runs "
        "1 seed, 2 epochs and the first value of every grid, into its default folder with _quick added",
    )
    seeds: int = _option(3, "number of student seeds")
    seed: int = _option(0, "first student seed")
    teacher_seed: int = _option(0, "seed of the teacher's initialisation and batches")
    epochs: Optional[int] = _option(None, "student epochs (default: per dataset)")
    teacher_epochs: Optional[int] = _option(None, "teacher epochs (default: per dataset)")
    batch_size: Optional[int] = _option(None, "items per batch before views")
    lr: Optional[float] = _option(None, "students' learning rate (default: per dataset)")
    delta: float = _option(1.0, "relaxed-contrastive margin")
    methods: Optional[List[str]] = _option(
        None, f"default: all of the metric benchmark's {list(DEFAULT_METHODS)}, or all of the --task's methods"
    )
    settings: Optional[List[str]] = _option(
        None, "self_transfer, dim_reduction, compression (--task ssl: self_transfer, compression; default: all)"
    )
    output_dir: Optional[str] = _option(
        None,
        "default: results/<dataset>[_<--text-student> unless hashed][_val]; a --task: "
        "results/task_<task>[_<dataset> unless digits]",
    )
    device: str = _option("cpu", "torch device of the training, e.g. cuda")

    @classmethod
    def from_args(cls: Type[ConfigT], argv: Optional[Sequence[str]] = None) -> ConfigT:
        """Parses a ``pml-relaxed bench`` command line (without the ``bench``); None: ``sys.argv[1:]``.

        Examples:
            >>> BenchConfig.from_args(["--dataset", "omniglot", "--methods", "pkt", "rkd", "--no-progress"]).methods
            ['pkt', 'rkd']
            >>> from pml_relaxed_bench.tasks import TaskConfig
            >>> TaskConfig.from_args(["--task", "ssl", "--sigmas", "0.5", "1"]).sigmas
            [0.5, 1.0]
        """
        return cls(**vars(get_args_parser(config_class=cls).parse_args(argv)))

    def to_argv(self) -> List[str]:
        """The command line that :meth:`from_args` turns back into this config (its non-default options, and
        the required ones).

        Examples:
            >>> BenchConfig(dataset="omniglot", seeds=2, eval_normalize=False, text_mlp=[]).to_argv()
            ['--dataset', 'omniglot', '--seeds', '2', '--no-eval-normalize', '--text-mlp']
            >>> from pml_relaxed_bench.tasks import TaskConfig
            >>> TaskConfig(task="ssl", seeds=1).to_argv()
            ['--seeds', '1', '--task', 'ssl']
        """
        argv: List[str] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value == _default(spec) and not spec.metadata.get("required"):
                continue
            flag = _flag(spec.name)
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, (list, tuple)):
                argv += [flag, *map(str, value)]
            else:
                argv += [flag, str(value)]
        return argv


@dataclass
class BenchConfig(CommonConfig):
    """Everything one ``pml-relaxed bench`` call (the metric benchmark) is given: the :class:`CommonConfig` options
    and the metric benchmark's own."""

    DESCRIPTION: ClassVar[str] = (
        "Embedding transfer against PML's label losses and other transfer methods, on unseen classes."
    )

    data_root: Optional[str] = _option(
        None,
        "folder holding the dataset (default: the dataset's own variable, e.g. $PML_RELAXED_OMNIGLOT, else "
        "$PML_RELAXED_DATA/<dataset>, else ~/.cache/pml_relaxed/<dataset>)",
    )
    teacher_loss: str = _option("ProxyAnchorLoss", "PML loss class that trains the teacher")
    teacher_lr: Optional[float] = _option(
        None, "teacher learning rate (default: per dataset; --lr sets the students' only)"
    )
    teacher_dir: Optional[str] = _option(None, "where trained teachers are cached (default: --output-dir)")
    teacher_checkpoint: Optional[str] = _option(
        None,
        "load the teacher's state_dict from this file instead of training one (the datasets whose teacher the "
        f"benchmark trains; not {', '.join(PRETRAINED_TEACHER_DATASETS)}, whose teacher is a given pretrained model)",
    )
    teacher: Optional[str] = _option(
        None,
        "the teacher a user brings: banking77, a sentence-transformers folder or hub name (default: the packaged "
        "all-MiniLM-L6-v2); the image datasets, a .safetensors state_dict of the bench's teacher architecture, or "
        "torchvision:<name> / timm:<name> for cub/cars/sop (pip install 'pml-relaxed[vision]'); default: the "
        "teacher the benchmark trains",
    )
    m: Optional[int] = _option(None, "items per class in a batch (MPerClassSampler)")
    views: int = _option(2, "augmented views of each item in a batch")
    sigma: float = _option(1.0, "relaxed-label bandwidth")
    normalize_student: bool = _option(
        False, "relaxed losses measure the student's distances on L2-normalised embeddings"
    )
    label_weight: float = _option(0.5, "relaxed_contrastive+labels: weight of same-class labels in the relaxed labels")
    rkd_angle_weight: float = _option(
        2.0, "rkd: weight of the angle-wise term (distance-wise weight 1; Park et al.: 2)"
    )
    pos_topk: int = _option(1, "TeacherSimilarityMiner positives per anchor")
    val_classes: int = _option(0, "hold out this many training classes and evaluate on them (model selection)")
    val_alphabets: int = _option(
        0, "omniglot: hold out this many whole training alphabets instead (split 'val-alphabets')"
    )
    split_seed: int = _option(0, "seed of the validation-class draw")
    eval_normalize: bool = _option(True, "L2-normalise embeddings before retrieval")
    text_hidden_dim: Optional[int] = _option(
        None, "banking77 student: width of the hashed n-gram embeddings (default 64)"
    )
    text_mlp: Optional[List[int]] = _option(
        None, "banking77 student: hidden widths of the MLP head (default 256; none: linear head)", nargs="*"
    )
    text_init_std: Optional[float] = _option(
        None, "banking77 student: std of the n-gram embeddings' initialisation (default 0.1)"
    )
    text_student: str = _option(
        "hashed",
        "banking77 student family: hashed (HashedNgramEmbedder, a mean of hashed n-gram vectors), attention "
        "(AttentionPooledNgramEmbedder, learned softmax pooling) or conv (ConvNgramEmbedder, token vectors and a "
        "residual 1-D convolution); the --text-* options shape each",
        choices=TEXT_STUDENT_NAMES,
    )
    text_kernel_size: Optional[int] = _option(
        None, "banking77 --text-student conv: tokens its convolution sees at once, odd (default 3)"
    )
    unlabelled_texts: Optional[str] = _option(
        None,
        "banking77: a UTF-8 text file, one text per line (blank lines skipped), added to the batches of every "
        "method with a transfer loss: the teacher embeds them (cached), they enter the transfer loss only, "
        "never a label loss (label -1, masked); scratch methods train without them",
    )
    unlabelled_per_batch: int = _option(
        64, "--unlabelled-texts: unlabelled texts appended to each batch (before views), cycling through the file"
    )
    text_ngram_dropout: float = _option(
        0.0,
        "banking77: drop each hashed n-gram id of a training view with this probability, so a text's two "
        "views differ (NgramDropout; the cached teacher sees the whole text)",
    )
    peers: Optional[List[str]] = _option(
        None,
        "banking77: also score and time what a user would pick instead of training a student, in the same run: "
        "model2vec (its distillation of the same teacher; pip install 'pml-relaxed[model2vec]'), pca (the "
        "teacher's embeddings reduced by a PCA fitted on the training texts)",
        choices=PEER_NAMES,
    )
    model2vec_dims: Optional[List[int]] = _option(None, "--peers model2vec: its dimensions (default: 32 64 256)")
    pca_dims: Optional[List[int]] = _option(None, "--peers pca: its dimensions (default: 16 32 64)")
    backbone: str = _option(
        "resnet50",
        "cub/cars/sop: torchvision ImageNet ResNets (paper) or a from-scratch Conv-4",
        choices=("resnet50", "conv4"),
    )
    image_size: int = _option(224, "cub/cars/sop input size")
    download: bool = _option(False, "cub/cars/sop: let PML download the data")
    progress: bool = _option(True, "tqdm progress bars")
    workers: int = _option(1, "train the (setting, method) jobs in this many parallel processes (a GPU or many cores)")
    throughput: bool = _option(
        True,
        "measure single-thread inference items/s of the teacher and the students; --no-throughput records "
        "none (model selection: a sentence-transformers teacher's measurement alone takes over a minute on a "
        "CPU)",
    )
    report_only: bool = _option(False, "train nothing: write the report of the runs already in --output-dir/runs.jsonl")
    report: bool = _option(
        True, "write the report; --no-report only trains and appends to runs.jsonl (a later call reports)"
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(annotation: Any) -> Tuple[type, bool]:
    """``(element type, is a list)`` of a field annotation: ``Optional[List[int]]`` -> ``(int, True)``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        annotation, args = args[0], list(typing.get_args(args[0]))
    if typing.get_origin(annotation) is list:
        return args[0], True
    return annotation, False


def get_args_parser(add_help: bool = True, config_class: Type[CommonConfig] = None) -> argparse.ArgumentParser:
    """The parser of a mode of ``pml-relaxed bench``, one option per field of its config.

    Args:
        add_help: add ``-h/--help``.
        config_class: the mode's config, a :class:`CommonConfig` subclass (default :class:`BenchConfig`: the
            metric benchmark; :class:`~pml_relaxed_bench.tasks.TaskConfig`: ``--task``).

    Raises:
        TypeError: ``config_class`` is not a :class:`CommonConfig` subclass.
    """
    config_class = BenchConfig if config_class is None else config_class
    if not (isinstance(config_class, type) and issubclass(config_class, CommonConfig)):
        raise TypeError(f"config_class must be a CommonConfig subclass (BenchConfig, TaskConfig); got {config_class!r}")
    parser = argparse.ArgumentParser(prog=config_class.PROG, description=config_class.DESCRIPTION, add_help=add_help)
    hints = typing.get_type_hints(config_class)
    for spec in dataclasses.fields(config_class):
        options: Dict[str, Any] = dict(spec.metadata)
        value_type, is_list = _value_type(hints[spec.name])
        if value_type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = value_type
            if is_list:
                options.setdefault("nargs", "+")
        parser.add_argument(_flag(spec.name), default=_default(spec), **options)
    return parser


def add_held_out_options(parser: argparse.ArgumentParser, val_classes: int = 30) -> argparse.ArgumentParser:
    """Adds the bench's ``--val-classes`` (default ``val_classes``) and ``--val-alphabets`` options, with their
    :class:`BenchConfig` help, to a script's parser; :func:`held_out_args` passes them on to the bench.

    Examples:
        >>> args = add_held_out_options(argparse.ArgumentParser()).parse_args(["--val-alphabets", "2"])
        >>> args.val_classes, args.val_alphabets
        (30, 2)
    """
    helps = {spec.name: spec.metadata["help"] for spec in dataclasses.fields(BenchConfig)}
    parser.add_argument("--val-classes", type=int, default=val_classes, help=helps["val_classes"])
    parser.add_argument("--val-alphabets", type=int, default=0, help=helps["val_alphabets"])
    return parser


def held_out_args(val_classes: int, val_alphabets: int) -> List[str]:
    """The bench options that pick the validation classes, for scripts that call the bench: whole alphabets
    if ``val_alphabets`` is set, else ``val_classes`` classes.

    Examples:
        >>> held_out_args(30, 0), held_out_args(30, 2)
        (['--val-classes', '30'], ['--val-alphabets', '2'])
    """
    if val_alphabets:
        return ["--val-alphabets", str(val_alphabets)]
    return ["--val-classes", str(val_classes)]
