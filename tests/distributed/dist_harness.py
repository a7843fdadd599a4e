"""Runs a function on a 2-process gloo group on 127.0.0.1 and brings each rank's result back.

``run_world(module_name, function_name, world_size)`` spawns ``world_size`` processes; each joins the
process group, calls ``module.function(rank, world_size)`` and saves its return value (a dict of
tensors) with torch.save; the caller gets the list of per-rank results. One spawn per test module
keeps the suite fast: the function runs every scenario and the tests read their part.
"""

from __future__ import annotations

import datetime
import importlib
import os
import socket
import tempfile
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, module_name: str, function_name: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{HOST}:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        result = getattr(importlib.import_module(module_name), function_name)(rank, world_size)
    except Exception:  # noqa: BLE001 - the parent re-raises it with the traceback
        result = {"__error__": traceback.format_exc()}
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def run_world(module_name: str, function_name: str, world_size: int = 2) -> list:
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_entry, args=(world_size, free_port(), module_name, function_name, out_dir), nprocs=world_size)
        results = [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
    for rank, result in enumerate(results):
        if "__error__" in result:
            raise RuntimeError(f"rank {rank} failed:\n{result['__error__']}")
    return results
