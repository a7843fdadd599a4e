"""benchmarks/teacher_cache_speed.py runs end to end on a tiny setting and writes its results (no timing asserted)."""

import json

from tests.helpers.benchmark_scripts import load_script


def test_teacher_cache_speed_script_writes_both_routes_and_the_break_even(tmp_path):
    module = load_script("teacher_cache_speed")
    argv = ["--steps", "2", "--warmup", "1", "--teacher-width", "16", "--teacher-depth", "1", "--batch-size", "16"]
    result = module.main(module.get_args_parser().parse_args(argv + ["--output-dir", str(tmp_path)]))
    assert result["live_steps_per_second"] > 0 and result["cached_steps_per_second"] > 0
    assert result["build_seconds"] > 0 and result["break_even_epochs"] > 0
    assert result["samples"] == 901 and result["steps_per_epoch"] == 57  # Digits' train split (0-4), 16 per batch
    assert 0 < result["float16_relative_frobenius_error"] < 2.0**-11
    saved = json.loads((tmp_path / "teacher_cache_speed.json").read_text())
    assert saved["metadata"]["command"].startswith("python benchmarks/teacher_cache_speed.py --views 2 --batch-size 16")
    assert saved["result"] == result
    table = (tmp_path / "teacher_cache_speed.md").read_text()
    assert "| training, TeacherCache |" in table and "Machine: " in table
