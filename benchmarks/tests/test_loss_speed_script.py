"""benchmarks/loss_speed.py runs end to end on tiny sizes and writes its tables (no timing is asserted)."""

import json

from tests.helpers.benchmark_scripts import load_script


def test_loss_speed_script_writes_ratios_and_skips_what_does_not_fit(tmp_path):
    module = load_script("loss_speed")
    args = module.get_args_parser().parse_args(
        [
            "--sizes",
            "64",
            "300",
            "--dims",
            "4",
            "--teacher-dim",
            "8",
            "--methods",
            "blockwise",
            "dense_cdist",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--max-dense-gib",
            "0.001",
            "--device",
            "cpu",
            "--output-dir",
            str(tmp_path),
        ]
    )
    rows = module.main(args)
    by_key = {(r["n"], r["method"]): r for r in rows}
    assert by_key[(64, "dense_cdist")]["speedup_vs_dense_cdist"] == 1.0
    assert by_key[(64, "blockwise")]["peak_bytes"] >= 0 and by_key[(64, "blockwise")]["seconds"] > 0
    assert "skipped" in by_key[(300, "dense_cdist")]  # 300 x 300 x 40 bytes > 0.001 GiB
    assert "speedup_vs_dense_cdist" not in by_key[(300, "blockwise")]
    # the same loss on both paths
    assert abs(by_key[(64, "blockwise")]["loss"] - by_key[(64, "dense_cdist")]["loss"]) < 1e-4
    saved = json.loads((tmp_path / "loss_speed.json").read_text())
    assert saved["metadata"]["command"].startswith("python benchmarks/loss_speed.py --sizes 64 300")
    table = (tmp_path / "loss_speed.md").read_text()
    assert "| 64 | 4 | blockwise |" in table and "skipped (needs about" in table
