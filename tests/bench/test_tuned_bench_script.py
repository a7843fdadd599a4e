"""benchmarks/tuned_bench.py: per-method choice on validation classes, then the test with those choices."""
import json

import pytest
from benchmark_scripts import load_script


def _module():
    return load_script("tuned_bench")


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_method_is_tested_at_its_best_validation_point(tmp_path):
    module = _module()
    args = module.get_args_parser().parse_args([
        "--dataset", "digits", "--val-classes", "2", "--methods", "relaxed_contrastive", "pkt",
        "--val-settings", "dim_reduction", "--val-seeds", "1", "--budgets", "1:1e-3", "2:3e-3",
        "--deltas", "2", "--delta-budget", "1:3e-3", "--settings", "compression", "--seeds", "1",
        "--output-dir", str(tmp_path), "--", "--teacher-epochs", "1", "--no-progress",
    ])
    chosen = module.main(args)
    points = {p.name for p in (tmp_path / "val").iterdir() if p.name != "teachers"}
    assert points == {"e1_lr1e-3", "e2_lr3e-3", "e1_lr3e-3_delta2"}
    assert [r["method"] for r in _records(tmp_path / "val" / "e1_lr3e-3_delta2" / "runs.jsonl")] == \
        ["relaxed_contrastive"], "delta points only for the delta methods"
    assert all(r["eval_split"] == "val" for p in points for r in _records(tmp_path / "val" / p / "runs.jsonl"))
    table = json.loads((tmp_path / "selection.json").read_text())["table"]
    for method, row in chosen.items():  # the chosen point has the best validation score of its method
        assert row["score"] == max(r["score"] for r in table if r["method"] == method)
    test_runs = [r for r in _records(tmp_path / "test" / "runs.jsonl") if r["kind"] != "teacher"]
    assert {r["method"] for r in test_runs} == {"relaxed_contrastive", "pkt"}
    for r in test_runs:  # each method trained at its chosen point, on the test split
        point_args = chosen[r["method"]]["args"]
        assert r["eval_split"] == "test" and r["setting"] == "compression"
        assert r["hparams"]["epochs"] == int(point_args[point_args.index("--epochs") + 1])
        assert r["hparams"]["lr"] == float(point_args[point_args.index("--lr") + 1])
        expected_delta = float(point_args[point_args.index("--delta") + 1]) if "--delta" in point_args else 1.0
        assert r["hparams"]["delta"] == expected_delta
    report = (tmp_path / "test" / "results.md").read_text()
    assert "**Tuned by:** `python benchmarks/tuned_bench.py --dataset digits" in report
    assert "**yes**" in (tmp_path / "selection.md").read_text()


def test_select_skips_incomplete_points_and_other_settings(tmp_path):
    module = _module()

    def write(point, rows):
        (tmp_path / point).mkdir()
        (tmp_path / point / "runs.jsonl").write_text("".join(json.dumps({
            "kind": "transfer", "method": m, "setting": s, "seed": seed,
            "metrics": {"recall_at_1": r1, "mean_average_precision_at_r": r1 / 2}}) + "\n" for m, s, r1, seed in rows))

    # dim64 is not a validation setting, seed 1 is beyond the validation seeds: neither counts
    write("a", [("rc", "dim16", 0.8, 0), ("rc", "dim32", 0.8, 0), ("rc", "dim64", 0.1, 0), ("rc", "dim16", 0.1, 1)])
    write("b", [("rc", "dim16", 0.99, 0)])  # better, but its dim32 run never finished
    points = [("a", ["--lr", "1"], ["rc"]), ("b", ["--lr", "2"], ["rc"]), ("c", ["--lr", "3"], ["rc"])]
    table, chosen = module.select(tmp_path, points, ["dim16", "dim32"], 1)
    assert chosen["rc"]["point"] == "a" and chosen["rc"]["args"] == ["--lr", "1"]
    assert chosen["rc"]["R@1"] == pytest.approx(0.8)
    assert {(r["point"], r["runs"]) for r in table} == {("a", 2), ("b", 1)}


@pytest.mark.parametrize("budget", ["20", "0:1e-3", "20:-1", "x:1e-3", "20:lr"])
def test_bad_budget(budget):
    with pytest.raises(ValueError, match=r"a budget must look like epochs:lr .* got"):
        _module().parse_budget(budget)
