"""benchmarks/gpu_check.py: its CPU-safe part on a machine without CUDA (seconds), the skip line and the table."""

import json
import shlex

import pytest
import torch

from tests.helpers.benchmark_scripts import load_script

SMALL = ["--speed-n", "256", "--speed-methods", "blockwise", "--speed-repeats", "1"]
SMALL += ["--bf16-n", "256", "--bf16-block-size", "64"]


def _module():
    return load_script("gpu_check")


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_cuda_it_runs_the_cpu_safe_part_and_says_what_it_skips(tmp_path, no_cuda, capsys):
    module = _module()
    results = module.main(module.get_args_parser().parse_args(["--output-dir", str(tmp_path), *SMALL]))
    out = capsys.readouterr().out
    assert (
        "CUDA not available: skipping cuda_tests (collected, not run), faiss_gpu, bf16_blockwise on CUDA "
        "(run on the CPU at n=256), loss_speed on CUDA at n=65536 (run on the CPU at n=256)\n"
    ) in out
    status = {r.check: r.status for r in results}
    assert status == {"cuda_tests": "skip", "faiss_gpu": "skip", "bf16_blockwise": "pass", "loss_speed": "pass"}
    assert module.exit_code(results) == 0
    by_check = {r.check: r for r in results}
    collected = int(by_check["cuda_tests"].number.split()[0])
    assert collected >= 20 and "tests/test_cuda.py" in by_check["cuda_tests"].number
    assert by_check["bf16_blockwise"].number.startswith("n=256, block 64: vs float64, bf16 loss")
    assert by_check["loss_speed"].number.startswith("n=256, d=128: blockwise ")
    # the summary table: one row per check, the machine beside every number
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| check | status | time (s) | number | machine |" in out and "| check | status |" in table
    for r in results:
        assert r.machine.startswith("CPU ") and f"| {r.check} | {r.status} | " in out
        assert f"| {r.number} | {r.machine} |" in table
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["metadata"]["cuda"] is False and [r["check"] for r in saved["rows"]] == list(module.CHECKS)
    command = saved["metadata"]["command"]  # the command that gives this run again
    assert command.startswith("python benchmarks/gpu_check.py --output-dir ") and "--speed-n 256" in command
    again = module.get_args_parser().parse_args(shlex.split(command)[2:])
    assert module.GpuCheckConfig.from_args(again) == module.GpuCheckConfig.from_args(
        module.get_args_parser().parse_args(["--output-dir", str(tmp_path), *SMALL])
    )
    assert saved["rows"][3]["number"] == by_check["loss_speed"].number
    assert (tmp_path / "loss_speed" / "loss_speed.json").is_file()  # loss_speed.py's own files


def test_the_cuda_tests_dry_run_on_the_cpu_reads_pytest_s_junit_report(tmp_path, no_cuda, capsys):
    module = _module()
    argv = ["--output-dir", str(tmp_path), "--checks", "cuda_tests", "--test-device", "cpu"]
    results = module.main(module.get_args_parser().parse_args([*argv, "--tests-k", "blockwise_matches_dense"]))
    assert "CUDA not available: skipping \n" in capsys.readouterr().out  # nothing asked for is left unchecked
    (result,) = results
    assert (result.status, result.number) == ("pass", "2 passed, 0 failed, 0 skipped of 2 (on cpu)")
    assert (tmp_path / "cuda_tests.xml").is_file() and "2 passed" in (tmp_path / "cuda_tests.log").read_text()


JUNIT = (
    '<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" skipped="1">'
    "</testsuite></testsuites>"
)


@pytest.mark.parametrize(
    "tests, failures, returncode, status, number",
    [
        (20, 0, 0, "pass", "19 passed, 0 failed, 1 skipped of 20 (on cpu)"),
        (20, 2, 1, "fail", "17 passed, 2 failed, 1 skipped of 20 (on cpu)"),
        (1, 0, 5, "fail", "0 passed, 0 failed, 1 skipped of 1 (on cpu)"),  # nothing ran: not a pass
    ],
)
def test_the_cuda_tests_status_follows_the_report(tmp_path, monkeypatch, tests, failures, returncode, status, number):
    module = _module()

    def fake_pytest(args, env, timeout):
        xml = next(a.split("=", 1)[1] for a in args if a.startswith("--junitxml="))
        open(xml, "w").write(JUNIT.format(tests=tests, failures=failures))
        return module.subprocess.CompletedProcess(args, returncode, "log", "")

    monkeypatch.setattr(module, "_pytest", fake_pytest)
    config = module.GpuCheckConfig(output_dir=str(tmp_path), test_device="cpu")
    result = module.check_cuda_tests(config, tmp_path, cuda=False)
    assert (result.status, result.number) == (status, number)
    assert module.exit_code([result]) == (status == "fail")


def test_cuda_test_files_finds_every_file_with_a_cuda_skip_mark(tmp_path):
    module = _module()
    assert "tests/test_cuda.py" in module.cuda_test_files()
    (tmp_path / "tests" / "sub").mkdir(parents=True)
    (tmp_path / "tests" / "sub" / "test_a.py").write_text(
        "import pytest, torch\n@pytest.mark.skipif(not torch.cuda.is_available(), reason='GPU')\ndef test_x(): pass\n"
    )
    (tmp_path / "tests" / "test_b.py").write_text(
        "import pytest\n@pytest.mark.skipif(True, reason='no')\ndef test_y(): pass\n"
    )
    (tmp_path / "tests" / "test_c.py").write_text("def test_z(): assert 'cuda'\n")
    assert module.cuda_test_files(tmp_path) == ["tests/sub/test_a.py"]


def test_faiss_check_fails_with_the_install_line_beside_cuda_without_faiss_gpu(tmp_path, monkeypatch):
    module = _module()
    from pml_relaxed.evaluation import backend

    monkeypatch.setattr(backend, "faiss_gpu_count", lambda: 0)
    config = module.GpuCheckConfig()
    result = module.check_faiss_gpu(config, tmp_path, cuda=True)
    assert result.status == "fail" and "pip install 'pml-relaxed[gpu]'" in result.detail
    assert module.check_faiss_gpu(config, tmp_path, cuda=False).status == "skip"
    # the comparison itself, CPU against CPU: the same scores
    compared = module.faiss_comparison(600, 8, "cpu")
    assert compared["gap"] == 0.0 and compared["scores"]["device"] == compared["scores"]["cpu"]
    assert set(compared["scores"]["cpu"]) == {"recall_at_1", "recall_at_10", "mean_average_precision_at_r", "NMI"}


def test_sizes_default_to_the_gpu_ones_with_cuda():
    config = _module().GpuCheckConfig()
    assert config.sizes(cuda=True) == {"bf16_n": 16384, "speed_n": 65536}
    assert config.sizes(cuda=False) == {"bf16_n": 1024, "speed_n": 1024}
