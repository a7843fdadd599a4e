"""The one runner: :func:`fit` trains with PML's trainers (every mode), :func:`run_all` runs the metric
benchmark's teachers and students and scores them on unseen classes."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import types
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
import tqdm
from pytorch_metric_learning import samplers, trainers
from pytorch_metric_learning.trainers import base_trainer

from pml_relaxed.evaluation import DEFAULT_METRICS, compute_embeddings, evaluate_embeddings, faiss_backend
from pml_relaxed.trainers import EmbeddingTransfer

from .config import BenchConfig, CommonConfig, check_teacher_checkpoint
from .data import BenchData
from .methods import METHODS, MethodContext, teacher_loss
from .parallel import run_parallel
from .unlabelled import LabelledRowsOnly, MixUnlabelledCollate, check_label_free_transfer

#: the metric benchmark's metrics: the library's defaults
METRICS = DEFAULT_METRICS


@contextlib.contextmanager
def quiet_pml() -> Iterator[None]:
    """Silences PML's per-iteration progress bars and logs; the benchmark shows its own bars."""
    original = base_trainer.tqdm
    base_trainer.tqdm = types.SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True))
    logger = logging.getLogger("PML")
    level = logger.level
    logger.setLevel(logging.ERROR)  # schema warnings about the optional embedder
    try:
        yield
    finally:
        base_trainer.tqdm = original
        logger.setLevel(level)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)  # PML's samplers draw from numpy's global generator


def _optimizers_and_schedulers(models: dict, loss_funcs: dict, lr: float, total_iterations: int, fused: bool = True):
    """One AdamW (``fused`` or not) per trained model (``lr``) and per loss function with parameters of its own
    (proxies, regressors: ``10 * lr``; a parameter a model already holds, e.g. Hinton KD's student head, is the
    model's), each with a per-iteration cosine schedule; the teacher trains never."""
    optimizers, schedulers = {}, {}
    owned = {id(p) for name, module in models.items() if name != "teacher" for p in module.parameters()}
    for name, module in list(models.items()) + list(loss_funcs.items()):
        if name == "teacher":
            continue
        params = [p for p in module.parameters() if p.requires_grad]
        if name not in models:
            params = [p for p in params if id(p) not in owned]
        if not params:
            continue
        group_lr = lr if name in models else lr * 10  # proxies / regressors learn faster
        optimizers[f"{name}_optimizer"] = torch.optim.AdamW(params, lr=group_lr, weight_decay=1e-4, fused=fused)
        schedulers[f"{name}_scheduler_by_iteration"] = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizers[f"{name}_optimizer"], T_max=max(total_iterations, 1)
        )
    return optimizers, schedulers


def fit(
    trainer_cls: type,
    models: dict,
    loss_funcs: dict,
    dataset: torch.utils.data.Dataset,
    config: CommonConfig,
    epochs: int,
    *,
    lr: Optional[float] = None,
    batch_size: Optional[int] = None,
    iterations: Optional[int] = None,
    mining_funcs: Optional[dict] = None,
    loss_weights: Optional[dict] = None,
    collate_fn=None,
    desc: str = "",
    **trainer_kwargs,
) -> float:
    """Trains with a PML trainer, the one training loop of every mode (the metric benchmark and the tasks).

    AdamW per trained model (fused with the config's ``FUSED_ADAMW``) and cosine schedules (see
    ``_optimizers_and_schedulers``); the loss and mining
    functions move to ``config.device``; a tqdm bar counts the epochs when the config has ``progress`` set.

    Args:
        trainer_cls: a PML trainer class, e.g. ``MetricLossOnly``, ``TrainWithClassifier``, ``EmbeddingTransfer``.
        models: the trainer's models (``"teacher"``, if any, is never trained).
        loss_funcs: the trainer's loss functions.
        dataset: the training set.
        config: the run's config: ``device`` and, unless given here, ``lr`` and ``batch_size``.
        epochs: epochs to train.
        lr: the models' learning rate (default ``config.lr``).
        batch_size: items per batch (default ``config.batch_size``).
        iterations: iterations per epoch (default ``len(dataset) // batch_size``, at least 1).
        mining_funcs, loss_weights, collate_fn: the trainer's.
        desc: the progress bar's label.
        **trainer_kwargs: any other trainer argument (``sampler``, ``ema_momentum``, ``data_and_label_getter``...).

    Returns:
        Training time in seconds.
    """
    lr = config.lr if lr is None else lr
    batch_size = int(config.batch_size if batch_size is None else batch_size)
    iterations = iterations or max(len(dataset) // batch_size, 1)
    mining_funcs = {} if mining_funcs is None else mining_funcs
    for module in list(loss_funcs.values()) + list(mining_funcs.values()):
        module.to(config.device)  # proxies and FitNet's projection live where the embeddings do
    optimizers, schedulers = _optimizers_and_schedulers(
        models, loss_funcs, lr, iterations * epochs, fused=config.FUSED_ADAMW
    )
    bar = tqdm.tqdm(total=epochs, desc=desc, leave=False, disable=not getattr(config, "progress", False))

    def end_of_epoch(trainer) -> bool:
        bar.update(1)
        return True

    trainer = trainer_cls(
        models=models,
        optimizers=optimizers,
        batch_size=batch_size,
        loss_funcs=loss_funcs,
        mining_funcs=mining_funcs,
        loss_weights=loss_weights,
        dataset=dataset,
        collate_fn=collate_fn,
        lr_schedulers=schedulers,
        iterations_per_epoch=iterations,
        dataloader_num_workers=0,
        data_device=torch.device(config.device),
        end_of_epoch_hook=end_of_epoch,
        **trainer_kwargs,
    )
    start = time.perf_counter()
    with quiet_pml():
        trainer.train(num_epochs=epochs)
    bar.close()
    return time.perf_counter() - start


def train_model(
    model: torch.nn.Module,
    data: BenchData,
    config: BenchConfig,
    loss_funcs: dict,
    mining_funcs: dict,
    loss_weights: dict,
    epochs: int,
    lr: float,
    teacher: Optional[torch.nn.Module] = None,
    desc: str = "",
) -> float:
    """Trains ``model`` on ``data`` with :func:`fit`: PML's MetricLossOnly, or pml_relaxed's EmbeddingTransfer
    when a teacher is given, on ``MPerClassSampler`` batches of augmented views.

    With a teacher and ``data.unlabelled`` (``--unlabelled-texts``), each batch is followed by
    ``--unlabelled-per-batch`` unlabelled rows (label -1) that only the transfer loss sees
    (:mod:`pml_relaxed_bench.unlabelled`).

    Returns:
        Training time in seconds.
    """
    views = config.views if data.augment is not None else 1  # identical views add nothing
    batch_size = int(config.batch_size or data.defaults["batch_size"])
    m = int(config.m or data.defaults["m"])
    batch_size = min(batch_size, m * data.num_train_classes)  # MPerClassSampler needs m * classes >= batch
    batch_size -= batch_size % m
    iterations = max(len(data.train) // batch_size, 1)
    dataset, collate = data.training_set(views)
    if uses_unlabelled(data, teacher):
        check_label_free_transfer(desc, loss_funcs, mining_funcs)
        collate = MixUnlabelledCollate(collate, data.unlabelled, config.unlabelled_per_batch)
        loss_funcs = {
            name: LabelledRowsOnly(loss) if name == "metric_loss" else loss for name, loss in loss_funcs.items()
        }
    models = {"trunk": model, "embedder": torch.nn.Identity()}
    if teacher is not None:
        models["teacher"] = teacher
    sampler = samplers.MPerClassSampler(
        data.train.labels, m=m, batch_size=batch_size, length_before_new_iter=iterations * batch_size
    )
    trainer_cls = EmbeddingTransfer if teacher is not None else trainers.MetricLossOnly
    return fit(
        trainer_cls,
        models,
        loss_funcs,
        dataset,
        config,
        epochs,
        lr=lr,
        batch_size=batch_size,
        iterations=iterations,
        mining_funcs=mining_funcs,
        loss_weights=loss_weights,
        collate_fn=collate,
        desc=desc,
        sampler=sampler,
    )


def uses_unlabelled(data: BenchData, teacher: Optional[torch.nn.Module]) -> bool:
    """Whether a student's batches get the unlabelled rows: the data has some and the method a teacher."""
    return teacher is not None and data.unlabelled is not None


def evaluate(model: torch.nn.Module, data: BenchData, config: BenchConfig) -> Dict[str, float]:
    """Leave-one-out retrieval on the evaluation classes (never seen in training), with FAISS on the GPU
    when ``--device`` is a CUDA device and FAISS a GPU build (``faiss_backend(config.device)``, recorded)."""
    embeddings, labels = compute_embeddings(
        model, data.evaluation, batch_size=256, device=config.device, show_progress=False
    )
    return evaluate_embeddings(embeddings, labels, METRICS, normalize=config.eval_normalize, device=config.device)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Times inference on one thread: comparable across models and robust to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def throughput(model: torch.nn.Module, data: BenchData, config: BenchConfig, batch_size: int = 256) -> Optional[float]:
    """Single-thread inference items per second at ``batch_size`` (eval mode, no_grad), best of a few repeats;
    None with ``--no-throughput``."""
    if not config.throughput:
        return None
    with single_thread():
        if data.throughput_fn is not None:
            model.eval()
            return data.throughput_fn(model)
        return _throughput(model, data, config, batch_size)


def _throughput(model: torch.nn.Module, data: BenchData, config: BenchConfig, batch_size: int) -> float:
    items = [data.evaluation[i][0] for i in range(min(batch_size, len(data.evaluation)))]
    batch = torch.stack([torch.as_tensor(x) for x in items]).to(config.device)
    was_training = model.training
    model.eval()
    best = float("inf")
    synchronize = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    with torch.no_grad():
        model(batch)
        for _ in range(5):
            synchronize()
            start = time.perf_counter()
            model(batch)
            synchronize()  # CUDA kernels run asynchronously: time their end, not their launch
            best = min(best, time.perf_counter() - start)
    model.train(was_training)
    return len(items) / best


def get_teacher(data: BenchData, config: BenchConfig, records: List[dict]) -> torch.nn.Module:
    """The given pretrained teacher, a cached one, or a teacher trained now with ``--teacher-loss``.

    Raises:
        ValueError: ``--teacher-checkpoint`` for a dataset with a given pretrained teacher.
        FileNotFoundError: a ``--teacher-checkpoint`` that is not a file.
    """
    check_teacher_checkpoint(config, data.teacher is not None)
    if data.teacher is not None:
        teacher = data.teacher
        if not any(r["kind"] == "teacher" for r in load_done(Path(config.output_dir) / "runs.jsonl")):
            if data.teacher_throughput_fn is not None and config.throughput:
                with single_thread():
                    speed = data.teacher_throughput_fn()
            else:
                speed = throughput(teacher, data, config)
            records.append(
                _record(
                    data,
                    config,
                    "teacher",
                    f"teacher:{data.teacher_arch}",
                    "teacher",
                    0,
                    data.teacher_arch,
                    data.teacher_dim,
                    evaluate(teacher, data, config),
                    0.0,
                    speed,
                )
            )
    else:
        folder = Path(config.teacher_dir or config.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        epochs = int(config.teacher_epochs or data.defaults["teacher_epochs"])
        lr = float(config.teacher_lr or data.defaults["lr"])
        # the budget is in the name: a cached teacher of another budget is never loaded by mistake
        path = folder / (
            f"teacher_{data.name}_{data.eval_split}_{config.teacher_loss}_e{epochs}_lr{lr:g}_{config.teacher_seed}.pt"
        )
        if config.teacher_checkpoint:
            path = Path(config.teacher_checkpoint)
            if not path.is_file():
                raise FileNotFoundError(
                    f"--teacher-checkpoint must be a state_dict file saved with torch.save; got {path}"
                )
        seed_everything(config.teacher_seed)  # before the model: its initial weights are part of the seed
        teacher = data.make_model(data.teacher_arch, data.teacher_dim).to(config.device)
        if path.exists():
            teacher.load_state_dict(torch.load(path, map_location=config.device, weights_only=True))
        else:
            loss = teacher_loss(config.teacher_loss, data.num_train_classes, data.teacher_dim)
            seconds = train_model(
                teacher,
                data,
                config,
                {"metric_loss": loss},
                {},
                {"metric_loss": 1.0},
                epochs,
                lr=lr,
                desc=f"teacher {config.teacher_loss}",
            )
            torch.save(teacher.state_dict(), path)
            records.append(
                _record(
                    data,
                    config,
                    "teacher",
                    f"teacher:{config.teacher_loss}",
                    "teacher",
                    config.teacher_seed,
                    data.teacher_arch,
                    data.teacher_dim,
                    evaluate(teacher, data, config),
                    seconds,
                    throughput(teacher, data, config),
                    epochs=epochs,
                    lr=lr,
                )
            )
    teacher.eval()
    return teacher


def _record(
    data: BenchData,
    config: BenchConfig,
    setting,
    method,
    kind,
    seed,
    arch,
    dim,
    metrics,
    seconds,
    items_per_second,
    epochs: Optional[int] = None,
    lr: Optional[float] = None,
) -> dict:
    """One line of ``runs.jsonl``; ``epochs`` and ``lr`` are the ones the model trained with."""
    hparams = {
        "sigma": config.sigma,
        "delta": config.delta,
        "views": config.views,
        "epochs": epochs,
        "batch_size": config.batch_size,
        "m": config.m,
        "lr": lr,
        "eval_normalize": config.eval_normalize,
        "normalize_student": config.normalize_student,
        "label_weight": config.label_weight,
        "rkd_angle_weight": config.rkd_angle_weight,
        "text_ngram_dropout": config.text_ngram_dropout,
        "faiss_backend": faiss_backend(config.device),
    }
    if data.student_options is not None:
        hparams["student_options"] = data.student_options
    if data.unlabelled is not None:  # what the student's transfer batches added (0: a method without a teacher)
        hparams["unlabelled_texts"] = config.unlabelled_texts
        hparams["unlabelled_per_batch"] = config.unlabelled_per_batch if kind in ("transfer", "combined") else 0
    return {
        "dataset": data.name,
        "setting": setting,
        "method": method,
        "kind": kind,
        "seed": seed,
        "eval_split": data.eval_split,
        "student_arch": arch,
        "student_dim": dim,
        "teacher_arch": data.teacher_arch,
        "teacher_dim": data.teacher_dim,
        "teacher_sha256": data.teacher_sha256,
        "metrics": metrics,
        "train_seconds": seconds,
        "throughput": items_per_second,
        "hparams": hparams,
    }


def run_student(data: BenchData, config: BenchConfig, setting: str, method_name: str, seed: int, teacher) -> dict:
    arch, dim = data.settings[setting]
    method = METHODS[method_name]
    ctx = MethodContext(
        student_dim=dim,
        teacher_dim=data.teacher_dim,
        num_classes=data.num_train_classes,
        sigma=config.sigma,
        delta=config.delta,
        pos_topk=config.pos_topk,
        normalize_student=config.normalize_student,
        label_weight=config.label_weight,
        rkd_angle_weight=config.rkd_angle_weight,
    )
    seed_everything(seed)
    student = data.make_model(arch, dim).to(config.device)
    # After the seed (a proxy loss's initial proxies are part of the run), after the model (whose
    # initial weights stay those of the seed alone).
    loss_funcs, mining_funcs, loss_weights = method.build(ctx)
    epochs = int(config.epochs or data.defaults["epochs"])
    lr = float(config.lr or data.defaults["lr"])
    seconds = train_model(
        student,
        data,
        config,
        loss_funcs,
        mining_funcs,
        loss_weights,
        epochs,
        lr=lr,
        teacher=teacher if method.kind != "scratch" else None,
        desc=f"{setting} {method_name} seed {seed}",
    )
    return _record(
        data,
        config,
        setting,
        method_name,
        method.kind,
        seed,
        arch,
        dim,
        evaluate(student, data, config),
        seconds,
        throughput(student, data, config),
        epochs=epochs,
        lr=lr,
    )


def load_done(path: Path) -> List[dict]:
    """The records of a ``runs.jsonl`` (one JSON object a line, blank lines skipped), [] if there is none yet:
    the runs a resumed call skips, in every mode."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(record: dict) -> tuple:
    return record["dataset"], record["eval_split"], record["setting"], record["method"], record["seed"]


def append_records(runs_path: Path, records: List[dict]) -> None:
    """Appends ``records`` to ``runs_path`` (a ``runs.jsonl``), one JSON object a line."""
    with runs_path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def check_same_students(records: List[dict], data: BenchData, config: BenchConfig, runs_path: Path) -> None:
    """Refuses to resume into a ``runs.jsonl`` whose students of a setting are other students: another
    architecture (e.g. another ``--text-student`` family) or, for a method with a transfer term, other
    ``--unlabelled-texts``; their runs would be taken for this call's and skipped.

    Raises:
        ValueError: a student record of one of ``data``'s settings with another ``student_arch``, or a
            transfer or combined one with other unlabelled texts.
    """
    for record in records:
        setting = data.settings.get(record["setting"])
        if record["kind"] not in ("transfer", "scratch", "combined") or setting is None:
            continue
        if (record["dataset"], record["eval_split"]) != (data.name, data.eval_split):
            continue
        if record.get("student_arch", setting[0]) != setting[0]:
            raise ValueError(
                f"{runs_path} holds {record['setting']} students of architecture {record['student_arch']!r}, this "
                f"call trains {setting[0]!r} ones (another --text-student?); give it its own --output-dir"
            )
        recorded = record.get("hparams", {}).get("unlabelled_texts")
        if record["kind"] != "scratch" and recorded != getattr(config, "unlabelled_texts", None):
            raise ValueError(
                f"{runs_path} holds {record['method']} students trained with --unlabelled-texts {recorded}, this "
                f"call gives {config.unlabelled_texts}; give it its own --output-dir"
            )


def run_all(data: BenchData, config: BenchConfig) -> List[dict]:
    """Runs every (setting, method, seed), appending each record to ``runs.jsonl`` (resumable)."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.jsonl"
    records = load_done(runs_path)
    check_same_students(records, data, config, runs_path)
    done = {_key(r) for r in records}
    new: List[dict] = []
    teacher = get_teacher(data, config, new)
    # Seed-major order: an interrupted run still holds every method for the first seeds.
    seeds = range(config.seed, config.seed + config.seeds)
    jobs = [(s, m, seed) for seed in seeds for s in config.settings for m in config.methods]
    todo = [job for job in jobs if (data.name, data.eval_split, *job) not in done]
    if config.workers > 1 and todo:
        return _run_with_workers(config, runs_path, new, todo)
    for setting, method, seed in tqdm.tqdm(todo, desc=f"bench {data.name}", disable=not config.progress):
        new.append(run_student(data, config, setting, method, seed, teacher))
        append_records(runs_path, new)
        records.extend(new)
        new = []
    if new:  # the teacher's record when every student was already done
        append_records(runs_path, new)
        records.extend(new)
    return records


def _run_with_workers(config: BenchConfig, runs_path: Path, new: List[dict], todo: List[tuple]) -> List[dict]:
    """``--workers N``: one ``pml-relaxed bench`` process per pending (setting, method), N at a time."""
    if new:  # the teacher's record goes first, so that no worker records it again
        append_records(runs_path, new)
    pairs = list(dict.fromkeys((setting, method) for setting, method, _ in todo))
    failed = run_parallel(config, pairs)
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(pairs)} bench workers failed (their finished runs are kept in "
            f"{runs_path}; rerun to resume): " + "; ".join(failed)
        )
    return load_done(runs_path)
