"""examples/ddp_transfer.py runs under torchrun with 2 CPU processes (gloo), and on one process."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.distributed.dist_harness import HOST, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ddp_transfer.py"


def load_example():
    spec = importlib.util.spec_from_file_location("ddp_transfer", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_runs_under_torchrun_with_two_cpu_processes():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_addr={HOST}",
        f"--master_port={free_port()}",
        str(EXAMPLE),
        "--steps",
        "3",
    ]
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "2 rank(s), backend gloo, global batch 40, full mode" in out
    steps = re.findall(r"^step (\d)/3  loss (\d+\.\d+)$", out, flags=re.MULTILINE)
    assert [s for s, _ in steps] == ["1", "2", "3"], "each step printed once, by rank 0"
    assert all(float(loss) > 0 for _, loss in steps)
    assert re.search(r"R@1 teacher 0\.\d{3}, student 0\.\d{3}", out)


def test_runs_on_one_process(capsys):
    example = load_example()
    args = example.get_args_parser().parse_args(["--steps", "2", "--teacher-steps", "20", "--efficient"])
    results = example.main(args)
    assert results["world_size"] == 1 and len(results["losses"]) == 2
    assert results["teacher R@1"] > 0.5, "a ProxyAnchor teacher beats chance (0.2) by far on digits 5-9"
    assert "1 rank(s), backend none (one process), global batch 20, efficient mode" in capsys.readouterr().out


def test_sampler_choice_for_the_world_size():
    example = load_example()
    labels = example.Digits("train").labels  # 5 classes
    two = example.class_balanced_sampler(labels, 20, 2, 400, 0)
    assert (two.m_per_class, two.batch_size) == (10, 20)  # 4 distinct classes in a global batch of 40
    eight = example.class_balanced_sampler(labels, 20, 8, 1600, 0)
    assert (eight.m_per_class, eight.batch_size) == (20, None)  # 8 ranks x 20 > 5 classes x 20
