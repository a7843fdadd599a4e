import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sigma_sweep.py"


def test_sigma_sweep_runs_on_validation_classes(tmp_path):
    spec = importlib.util.spec_from_file_location("sigma_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.get_args_parser().parse_args([
        "--dataset", "digits", "--val-classes", "2", "--sigmas", "0.5", "1.0", "--epochs", "1",
        "--teacher-epochs", "1", "--output-dir", str(tmp_path),
    ])
    rows = module.main(args)
    assert [r["sigma"] for r in rows] == [0.5, 1.0]
    assert all(0 <= r["R@1"] <= 1 and r["seeds"] == 1 for r in rows)
    assert len(list((tmp_path / "teachers").glob("teacher_digits_val_*.pt"))) == 1, "one teacher for the sweep"
    assert "| 0.5 | 1.0 |" in (tmp_path / "sweep.md").read_text()
