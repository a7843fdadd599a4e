"""A disk-backed cache of a frozen teacher's embeddings of seeded augmented views, built once, kill-safe."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import _validation as v

FORMAT = "pml_relaxed.TeacherCache/1"
MANIFEST = "manifest.json"
PLAN = "build.json"
_DTYPES = {torch.float16: "float16", torch.float32: "float32", torch.float64: "float64"}
_CHUNK = 1 << 20


def state_dict_sha256(module: torch.nn.Module, config: Optional[Dict[str, Any]] = None) -> str:
    """SHA-256 of ``module``'s state_dict (names, dtypes, shapes and the tensors' bytes) and, when given, of
    ``config`` (JSON, sorted keys): the content of a model, whatever folder it was loaded from."""
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(name.encode("utf-8"))
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode("ascii"))
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode("utf-8"))
    if config is not None:
        digest.update(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def teacher_fingerprint(teacher: torch.nn.Module) -> Dict[str, str]:
    """``{"class": ..., "sha256": ...}``: the teacher's class and a SHA-256 of its state_dict (names, dtypes,
    shapes and the tensors' bytes), so that another teacher, or the same one with other weights, differs.

    A teacher with a ``content_fingerprint()`` method (e.g.
    :class:`~pml_relaxed.models.SentenceTransformerTeacher`, whose output also depends on a tokenizer and a
    configuration that are not in its state_dict) gives its own dict of strings instead."""
    own = getattr(teacher, "content_fingerprint", None)
    if callable(own):
        return dict(own())
    kind = type(teacher)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", "sha256": state_dict_sha256(teacher)}


def dataset_fingerprint(dataset: Dataset) -> Dict[str, Any]:
    """A :class:`~pml_relaxed.datasets.SeededViewDataset`'s ``fingerprint()``; a plain dataset's size only."""
    fingerprint = getattr(dataset, "fingerprint", None)
    if callable(fingerprint):
        return dict(fingerprint())
    return {"size": len(dataset), "transform": "none", "seed": None, "probe": None}


def _check_dtype(dtype: object) -> torch.dtype:
    if dtype not in _DTYPES:
        raise TypeError(f"dtype must be one of torch.float16, torch.float32, torch.float64; got {dtype!r}")
    return dtype


def _describe_difference(what: str, expected: Dict[str, Any], got: Dict[str, Any]) -> Optional[str]:
    """``"<what> <key>: expected ..., got ..."`` for each key that differs, or None when all agree."""
    keys = sorted(set(expected) | set(got))
    parts = [
        f"{key}: expected {expected.get(key)!r}, got {got.get(key)!r}"
        for key in keys
        if expected.get(key) != got.get(key)
    ]
    return f"{what} differs ({'; '.join(parts)})" if parts else None


def _fsync_directory(folder: Path) -> None:
    if os.name == "nt":  # pragma: no cover - directories cannot be opened there
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_atomic(path: Path, payload: bytes) -> None:
    """Writes ``payload`` to a temporary name, fsyncs it and renames it to ``path``: ``path`` is whole or absent."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _write_json(path: Path, content: Dict[str, Any]) -> None:
    _write_atomic(path, (json.dumps(content, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _file_sha256(path: Path) -> Optional[str]:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _shard_name(shard: int) -> str:
    return f"shard_{shard:05d}.npy"


def _distributed_world() -> tuple:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier(world_size: int) -> None:
    if world_size > 1:
        torch.distributed.barrier()


class _ViewRows(Dataset):
    """Rows ``(sample, view)`` of one shard as a dataset of the teacher's inputs."""

    def __init__(self, dataset: Dataset, rows: Sequence[tuple]) -> None:
        self.dataset, self.rows = dataset, list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> torch.Tensor:
        index, view = self.rows[position]
        if hasattr(self.dataset, "view"):
            return self.dataset.view(index, view)
        item = self.dataset[index]
        return torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item)


def _teacher_device_and_dtype(teacher: torch.nn.Module, device: Optional[torch.device]) -> tuple:
    """Where and in which floating dtype the teacher's inputs go (the rule of EmbeddingTransfer's live teacher)."""
    tensors = list(teacher.parameters()) + list(teacher.buffers())
    floating = [tensor for tensor in tensors if tensor.is_floating_point()]
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")
    return device, (floating[0].dtype if floating else None)


class TeacherCache:
    """A frozen teacher's embeddings of ``views`` seeded augmented views of every sample, on disk, memory-mapped.

    :meth:`build` runs the teacher once over views ``0 .. views-1`` of every sample of a
    :class:`~pml_relaxed.datasets.SeededViewDataset` (view v of sample i is the image drawn with the seed
    (seed, i, v)) and writes the embeddings as ``.npy`` shards of ``shard_size`` samples, each of shape
    (samples, views, D), plus ``manifest.json``. ``TeacherCache(path)`` opens it without reading it: each shard
    is an ``np.load(..., mmap_mode="r", allow_pickle=False)`` and the manifest is JSON, so opening a cache
    runs no code and unpickles nothing. :meth:`lookup` returns the rows of (sample, view) pairs: the trainer
    (:class:`~pml_relaxed.trainers.EmbeddingTransfer` ``teacher_cache=``) gets from it exactly what the live
    teacher computes on the view the student sees.

    Manifest: the format, the teacher's fingerprint (class + SHA-256 of its state_dict, or the teacher's own
    ``content_fingerprint()``, see :func:`teacher_fingerprint`), the dataset's
    (size, transform fingerprint, seed, probe of two views), ``views``, the storage ``dtype``, ``shard_size``,
    the embedding width and each shard's file, rows and SHA-256. Opening with ``teacher=``, ``dataset=`` or
    ``views=`` checks them and raises naming what differs, expected vs got.

    Kill-safety: every file is written to a temporary name, fsynced and renamed, and each shard gets a
    ``shard_XXXXX.json`` with its SHA-256. A build started again with the same arguments keeps every shard whose
    file matches its checksum and redoes the others (a torn or missing one), so a build killed at any point
    (SIGKILL included) ends, once rerun, with files equal byte for byte to an uninterrupted build; a folder that
    holds another build's plan (``build.json``) is refused. Under ``torch.distributed`` (e.g. torchrun, gloo or
    NCCL) rank r builds the shards k with ``k % world_size == r``; after a barrier rank 0 writes the manifest and
    every rank opens the whole cache.

    Storage dtype: float32 (default), float64 (the float64 tests) or float16, half the bytes. float16 keeps 11
    significant bits: each stored value is within a relative 2**-11 (4.9e-4) of the float32 one (absolute
    2**-25 below 6.1e-5); measured by ``benchmarks/teacher_cache_speed.py`` on its teacher
    (``docs/teacher_cache.md``): largest relative error 4.9e-4, relative Frobenius error 2.0e-4.
    :meth:`lookup` returns the stored dtype; the trainer casts it to the student's.

    Args:
        path: the cache folder written by :meth:`build`.
        teacher: when given, the teacher the cache must come from.
        dataset: when given, the dataset (size, transform, seed, probe) the cache must come from.
        views: when given, the number of views the cache must hold at least.
        verify: also check every shard's SHA-256 (reads the whole cache); by default only the shards' shapes.

    Raises:
        FileNotFoundError: no ``manifest.json`` in ``path`` (a build that has not finished).
        ValueError: a teacher, dataset or number of views that differs from the cache's (the message names
            which, expected vs got); a shard missing, torn (shorter than its header says) or, with ``verify``,
            whose checksum differs: rebuild with the same arguments.

    Examples:
        >>> import tempfile, torch
        >>> from pml_relaxed.datasets import SeededViewDataset
        >>> teacher = torch.nn.Linear(3, 2)
        >>> data = SeededViewDataset(torch.utils.data.TensorDataset(torch.randn(10, 3)), lambda x: x + torch.randn(3))
        >>> folder = tempfile.mkdtemp()
        >>> cache = TeacherCache.build(teacher, data, folder, views=2, progress=False)
        >>> len(cache), cache.num_views, cache.lookup(torch.tensor([4, 7]), torch.tensor([1, 0])).shape
        (10, 2, torch.Size([2, 2]))
        >>> torch.allclose(cache.lookup([4], [1]), teacher(data.view(4, 1))[None].detach())
        True
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        teacher: Optional[torch.nn.Module] = None,
        dataset: Optional[Dataset] = None,
        views: Optional[int] = None,
        verify: bool = False,
    ) -> None:
        self.path = Path(path)
        manifest = _read_json(self.path / MANIFEST)
        if manifest is None:
            raise FileNotFoundError(
                f"no teacher cache in {str(self.path)!r}: {MANIFEST} is missing or unreadable (a build that has not "
                "finished: run TeacherCache.build with the same arguments to complete it)"
            )
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{self.path / MANIFEST} format: expected {FORMAT!r}, got {manifest.get('format')!r}")
        self.manifest = manifest
        self.check(teacher=teacher, dataset=dataset, views=views)
        self._dtype = np.dtype(manifest["dtype"])
        self._shards = [self._open_shard(shard, entry, verify) for shard, entry in enumerate(manifest["shards"])]

    def _open_shard(self, shard: int, entry: Dict[str, Any], verify: bool) -> np.ndarray:
        file = self.path / entry["file"]
        expected = (entry["rows"], self.num_views, self.dim)
        hint = "rebuild it: TeacherCache.build with the same arguments redoes the shards that do not match"
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"shard {file.name} of {str(self.path)!r} is missing or torn ({err}); {hint}") from err
        if not isinstance(array, np.ndarray):  # e.g. a zip (np.load opens it as an NpzFile, reading nothing)
            raise ValueError(f"shard {file.name} of {str(self.path)!r} is not a .npy array; {hint}")
        if array.shape != expected or array.dtype != self._dtype:
            raise ValueError(
                f"shard {file.name}: expected shape {expected} of {self._dtype}, got {array.shape} of {array.dtype}; "
                f"{hint}"
            )
        if verify and _file_sha256(file) != entry["sha256"]:
            raise ValueError(f"shard {file.name}: its SHA-256 differs from the manifest's; {hint}")
        return array

    def __len__(self) -> int:
        return int(self.manifest["dataset"]["size"])

    @property
    def num_views(self) -> int:
        """The number of views cached per sample."""
        return int(self.manifest["views"])

    @property
    def dim(self) -> int:
        """The teacher's embedding width D."""
        return int(self.manifest["dim"])

    @property
    def dtype(self) -> torch.dtype:
        """The storage dtype, which :meth:`lookup` returns."""
        return {name: dtype for dtype, name in _DTYPES.items()}[self.manifest["dtype"]]

    def check(
        self,
        *,
        teacher: Optional[torch.nn.Module] = None,
        dataset: Optional[Dataset] = None,
        views: Optional[int] = None,
    ) -> None:
        """Checks that the cache comes from ``teacher`` and ``dataset`` and holds at least ``views`` views.

        Raises:
            ValueError: what differs, expected (the cache's) vs got; ``views`` more than the cache holds.
        """
        problems = []
        if teacher is not None:
            problems.append(_describe_difference("teacher", self.manifest["teacher"], teacher_fingerprint(teacher)))
        if dataset is not None:
            problems.append(_describe_difference("dataset", self.manifest["dataset"], dataset_fingerprint(dataset)))
            pool = getattr(dataset, "view_pool", None)
            if pool is not None and pool > self.num_views:
                problems.append(
                    f"views: the dataset draws from {pool} views (view_pool), the cache holds {self.num_views}"
                )
        if views is not None and v.check_int("views", views, minimum=1) > self.num_views:
            problems.append(f"views: expected at most {self.num_views} (the cache's), got {views}")
        problems = [problem for problem in problems if problem]
        if problems:
            raise ValueError(f"teacher cache {str(self.path)!r} does not match: " + "; ".join(problems))

    def lookup(
        self, indices: Union[torch.Tensor, Sequence[int]], views: Union[torch.Tensor, Sequence[int], None] = None
    ) -> torch.Tensor:
        """The cached embeddings of view ``views[b]`` of sample ``indices[b]``.

        Args:
            indices: (B,) sample indices in ``[0, len(cache))``.
            views: (B,) view numbers in ``[0, num_views)``, or None (view 0 of each sample).

        Returns:
            (B, D) tensor of the storage dtype, on the CPU.

        Raises:
            ValueError: an index or a view out of range, ``views`` of another length than ``indices``.
        """
        index = torch.as_tensor(indices).long().reshape(-1).cpu()
        view = torch.zeros_like(index) if views is None else torch.as_tensor(views).long().reshape(-1).cpu()
        if view.shape != index.shape:
            raise ValueError(f"views must hold one view per index: expected {index.numel()} values, got {view.numel()}")
        for name, values, end in (("indices", index, len(self)), ("views", view, self.num_views)):
            if values.numel() and (int(values.min()) < 0 or int(values.max()) >= end):
                raise ValueError(
                    f"{name} must lie in [0, {end}); got values in [{int(values.min())}, {int(values.max())}]"
                )
        shard_size = int(self.manifest["shard_size"])
        index_np, view_np = index.numpy(), view.numpy()
        shard_of, row_of = index_np // shard_size, index_np % shard_size
        out = np.empty((index_np.shape[0], self.dim), dtype=self._dtype)
        for shard in np.unique(shard_of):
            mask = shard_of == shard
            out[mask] = self._shards[int(shard)][row_of[mask], view_np[mask]]
        return torch.from_numpy(out)

    @classmethod
    def build(
        cls,
        teacher: torch.nn.Module,
        dataset: Dataset,
        path: Union[str, os.PathLike],
        *,
        views: int = 1,
        batch_size: int = 256,
        device: Optional[Union[str, torch.device]] = None,
        num_workers: int = 0,
        progress: bool = True,
        dtype: torch.dtype = torch.float32,
        shard_size: int = 4096,
    ) -> "TeacherCache":
        """Runs ``teacher`` once over views ``0 .. views-1`` of every sample and writes the cache to ``path``.

        Continues a killed build (see the class docstring); on a finished cache it checks every shard and returns.
        The teacher runs in eval mode under no_grad (its mode is restored afterwards), its floating inputs cast to
        its dtype, on ``device``; batches never straddle shards, so each shard's bytes do not depend on which run
        wrote it.

        Args:
            teacher: the frozen teacher, mapping a batch of inputs to (batch, D) embeddings.
            dataset: a :class:`~pml_relaxed.datasets.SeededViewDataset` (its ``view(i, v)`` is what is cached), or a
                plain dataset of ``(x, label)`` / ``x`` with ``views=1`` (no augmentation). Views that are not
                tensors (texts) reach the teacher as the DataLoader collates them (a list of str).
            path: the cache folder (created).
            views: the number of views per sample, >= 1.
            batch_size: teacher batch size, >= 1.
            device: where the teacher runs (default: where its parameters are).
            num_workers: DataLoader workers drawing the views.
            progress: show a tqdm bar.
            dtype: storage dtype: torch.float32, torch.float16 or torch.float64.
            shard_size: samples per shard file, >= 1.

        Returns:
            The opened cache.

        Raises:
            ValueError: ``views > 1`` on a dataset without seeded views; ``path`` holding another build (what
                differs, expected vs got).
            TypeError: arguments of the wrong type.
        """
        views = v.check_int("views", views, minimum=1)
        batch_size = v.check_int("batch_size", batch_size, minimum=1)
        num_workers = v.check_int("num_workers", num_workers, minimum=0)
        shard_size = v.check_int("shard_size", shard_size, minimum=1)
        progress = v.check_bool("progress", progress)
        dtype = _check_dtype(dtype)
        device = v.check_optional_device("device", device)
        if not isinstance(teacher, torch.nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module; got {type(teacher).__name__}")
        if views > 1 and not hasattr(dataset, "view"):
            raise ValueError(
                f"views={views} needs seeded views: wrap the dataset in pml_relaxed.datasets.SeededViewDataset "
                f"(got {type(dataset).__name__}, whose views would all be the same sample)"
            )
        folder = Path(path)
        rank, world_size = _distributed_world()
        size = len(dataset)
        plan = {
            "format": FORMAT,
            "teacher": teacher_fingerprint(teacher),
            "dataset": dataset_fingerprint(dataset),
            "views": views,
            "dtype": _DTYPES[dtype],
            "shard_size": shard_size,
        }
        if rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
        _barrier(world_size)
        existing = _read_json(folder / PLAN)
        if existing is not None:
            difference = _describe_difference("the build", existing, plan)
            if difference:
                raise ValueError(
                    f"{str(folder)!r} holds another teacher cache build: {difference} (expected: the folder's, "
                    "got: this call's); remove the folder or build into another path"
                )
        _barrier(world_size)
        if rank == 0 and existing is None:
            _write_json(folder / PLAN, plan)
        num_shards = (size + shard_size - 1) // shard_size
        mine = [shard for shard in range(num_shards) if shard % world_size == rank]
        for leftover in folder.glob("*.tmp-*"):  # writes cut short: each rank removes those of its own files
            stem = leftover.name.split(".")[0]
            owner = int(stem[6:]) % world_size if stem.startswith("shard_") and stem[6:].isdigit() else 0
            if owner == rank:
                leftover.unlink(missing_ok=True)
        todo = [shard for shard in mine if not cls._shard_is_whole(folder, shard)]
        cls._build_shards(teacher, dataset, folder, todo, views, batch_size, device, num_workers, progress, dtype, plan)
        _barrier(world_size)
        if rank == 0:
            entries = [_read_json(folder / _shard_name(shard).replace(".npy", ".json")) for shard in range(num_shards)]
            dim = entries[0]["shape"][2] if entries else 0
            shards = [
                {"file": entry["file"], "rows": entry["shape"][0], "sha256": entry["sha256"]} for entry in entries
            ]
            _write_json(folder / MANIFEST, {**plan, "dim": dim, "shards": shards})
        _barrier(world_size)
        return cls(folder)

    @staticmethod
    def _shard_is_whole(folder: Path, shard: int) -> bool:
        """True if the shard's file and its checksum record both exist and agree (else it is redone)."""
        record = _read_json(folder / _shard_name(shard).replace(".npy", ".json"))
        if record is None or not isinstance(record.get("sha256"), str):
            return False
        return _file_sha256(folder / _shard_name(shard)) == record["sha256"]

    @staticmethod
    def _build_shards(
        teacher, dataset, folder, shards: List[int], views, batch_size, device, num_workers, progress, dtype, plan
    ) -> None:
        if not shards:
            return
        from tqdm.auto import tqdm

        shard_size, size = plan["shard_size"], plan["dataset"]["size"]
        device, input_dtype = _teacher_device_and_dtype(teacher, device)
        was_training = teacher.training
        teacher.eval()
        total = sum(min(size, (shard + 1) * shard_size) - shard * shard_size for shard in shards) * views
        bar = tqdm(total=total, desc="teacher cache", unit="view", disable=not progress)
        try:
            for shard in shards:
                start, end = shard * shard_size, min(size, (shard + 1) * shard_size)
                rows = [(index, view) for index in range(start, end) for view in range(views)]
                loader = DataLoader(_ViewRows(dataset, rows), batch_size=batch_size, num_workers=num_workers)
                outputs = []
                with torch.no_grad():
                    for inputs in loader:
                        if isinstance(inputs, torch.Tensor):  # else e.g. a list of texts, for a text teacher
                            if inputs.is_floating_point() and input_dtype is not None:
                                inputs = inputs.to(dtype=input_dtype)
                            inputs = inputs.to(device)
                        outputs.append(teacher(inputs).detach().to("cpu", dtype))
                        bar.update(len(inputs))
                array = torch.cat(outputs).reshape(end - start, views, -1).numpy()
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                payload = buffer.getvalue()
                _write_atomic(folder / _shard_name(shard), payload)
                record = {
                    "file": _shard_name(shard),
                    "shape": list(array.shape),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                }
                _write_json(folder / _shard_name(shard).replace(".npy", ".json"), record)
        finally:
            bar.close()
            teacher.train(was_training)
