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
    # every measured point carries the time of its four matrix products, measured in the same process
    for row in (by_key[(64, "blockwise")], by_key[(64, "dense_cdist")], by_key[(300, "blockwise")]):
        assert row["products_seconds"] > 0 and row["products_min_seconds"] <= row["products_seconds"]
        assert row["ratio_to_products"] == row["seconds"] / row["products_seconds"]
        assert row["min_ratio_to_products"] == row["min_seconds"] / row["products_min_seconds"]
    # the same loss on both paths
    assert abs(by_key[(64, "blockwise")]["loss"] - by_key[(64, "dense_cdist")]["loss"]) < 1e-4
    saved = json.loads((tmp_path / "loss_speed.json").read_text())
    assert saved["metadata"]["command"].startswith("python benchmarks/loss_speed.py --sizes 64 300")
    table = (tmp_path / "loss_speed.md").read_text()
    assert "| 64 | 4 | blockwise |" in table and "skipped (needs about" in table
    assert "| 4 products (s) | x products (fastest) |" in table


def test_four_products_are_the_losses_matrix_products_in_row_blocks(monkeypatch):
    module = load_script("loss_speed")
    shapes = []
    real_mm = module.torch.mm
    monkeypatch.setattr(
        module.torch, "mm", lambda a, b: shapes.append((tuple(a.shape), tuple(b.shape))) or real_mm(a, b)
    )
    monkeypatch.setattr(module, "PRODUCT_BLOCK_ENTRIES", 10 * 25)  # blocks of 10 rows of 25 columns
    module.four_products(module.torch.randn(25, 3), module.torch.randn(25, 7))
    assert len(shapes) == 4 * 3  # rows 0-9, 10-19, 20-24
    assert shapes[:4] == [((10, 7), (7, 25)), ((10, 3), (3, 25)), ((10, 25), (25, 3)), ((25, 10), (10, 3))]
    assert shapes[-4][0] == (5, 7)
