"""benchmarks/tuned_bench.py: per-method choice on validation classes, then the test with those choices."""

import json

import pytest

from tests.helpers.benchmark_scripts import load_script


def _module():
    return load_script("tuned_bench")


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_method_is_tested_at_its_best_validation_point(tmp_path):
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--dataset",
            "digits",
            "--val-classes",
            "2",
            "--methods",
            "relaxed_contrastive",
            "pkt",
            "--val-settings",
            "dim_reduction",
            "--val-seeds",
            "1",
            "--budgets",
            "1:1e-3",
            "2:3e-3",
            "--deltas",
            "2",
            "--delta-budget",
            "1:3e-3",
            "--refine",
            "sigma2=--sigma 2",
            "--settings",
            "compression",
            "--seeds",
            "1",
            "--output-dir",
            str(tmp_path),
            "--",
            "--teacher-epochs",
            "1",
            "--no-progress",
        ]
    )
    chosen = module.main(args)
    points = {p.name for p in (tmp_path / "val").iterdir() if p.name != "teachers"}
    first = {"e1_lr1e-3", "e2_lr3e-3", "e1_lr3e-3_delta2"}
    assert first < points and all(p.endswith("_sigma2") and p[: -len("_sigma2")] in first for p in points - first)
    table = json.loads((tmp_path / "selection.json").read_text())["table"]
    first_choice = {}  # stage one: each method's best point among the first-stage ones
    for row in table:
        if row["point"] in first and row["score"] > first_choice.get(row["method"], {"score": -1})["score"]:
            first_choice[row["method"]] = row
    assert {p for p in points - first} == {row["point"] + "_sigma2" for row in first_choice.values()}
    for point in points - first:  # a refinement trains exactly the methods that chose the point it refines
        records = _records(tmp_path / "val" / point / "runs.jsonl")
        assert {r["method"] for r in records if r["kind"] != "teacher"} == {
            m for m, row in first_choice.items() if row["point"] + "_sigma2" == point
        }
        assert all(r["hparams"]["sigma"] == 2.0 for r in records)
    assert all(r["eval_split"] == "val" for p in points for r in _records(tmp_path / "val" / p / "runs.jsonl"))
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
        assert r["hparams"]["sigma"] == (2.0 if chosen[r["method"]]["point"].endswith("_sigma2") else 1.0)
    report = (tmp_path / "test" / "results.md").read_text()
    assert "**Tuned by:** `python benchmarks/tuned_bench.py --dataset digits" in report
    assert "--refine sigma2=--sigma 2" not in report and "--refine 'sigma2=--sigma 2'" in report
    assert "**yes**" in (tmp_path / "selection.md").read_text()


def test_select_skips_incomplete_points_and_other_settings(tmp_path):
    module = _module()

    def write(point, rows):
        (tmp_path / point).mkdir()
        (tmp_path / point / "runs.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "kind": "transfer",
                        "method": m,
                        "setting": s,
                        "seed": seed,
                        "metrics": {"recall_at_1": r1, "mean_average_precision_at_r": r1 / 2},
                    }
                )
                + "\n"
                for m, s, r1, seed in rows
            )
        )

    # dim64 is not a validation setting, seed 1 is beyond the validation seeds: neither counts
    # pkt's runs in folder "a" come from another sweep: point "a" applies to rc only
    write(
        "a",
        [
            ("rc", "dim16", 0.8, 0),
            ("rc", "dim32", 0.8, 0),
            ("rc", "dim64", 0.1, 0),
            ("rc", "dim16", 0.1, 1),
            ("pkt", "dim16", 0.9, 0),
            ("pkt", "dim32", 0.9, 0),
        ],
    )
    write("b", [("rc", "dim16", 0.99, 0)])  # better, but its dim32 run never finished
    points = [("a", ["--lr", "1"], ["rc"]), ("b", ["--lr", "2"], ["rc"]), ("c", ["--lr", "3"], ["rc"])]
    table, chosen = module.select(tmp_path, points, ["dim16", "dim32"], 1)
    assert chosen["rc"]["point"] == "a" and chosen["rc"]["args"] == ["--lr", "1"]
    assert chosen["rc"]["R@1"] == pytest.approx(0.8)
    assert {(r["point"], r["method"], r["runs"]) for r in table} == {("a", "rc", 2), ("b", "rc", 1)}
    assert "pkt" not in chosen


@pytest.mark.parametrize("budget", ["20", "0:1e-3", "20:-1", "x:1e-3", "20:lr"])
def test_bad_budget(budget):
    with pytest.raises(ValueError, match=r"a budget must look like epochs:lr .* got"):
        _module().parse_budget(budget)


def test_delta_and_label_weight_points_at_every_delta_budget():
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--methods",
            "relaxed_contrastive",
            "relaxed_contrastive+labels",
            "pkt",
            "--budgets",
            "10:1e-3",
            "--deltas",
            "2",
            "--delta-methods",
            "relaxed_contrastive",
            "relaxed_ms",
            "--delta-budget",
            "10:3e-3",
            "20:1e-2",
            "--label-weights",
            "0.25",
        ]
    )
    points = {name: (point_args, methods) for name, point_args, methods in module.validation_points(args)}
    assert points == {
        "e10_lr1e-3": (
            ["--epochs", "10", "--lr", "1e-3"],
            ["relaxed_contrastive", "relaxed_contrastive+labels", "pkt"],
        ),
        "e10_lr3e-3_delta2": (["--epochs", "10", "--lr", "3e-3", "--delta", "2"], ["relaxed_contrastive"]),
        "e20_lr1e-2_delta2": (["--epochs", "20", "--lr", "1e-2", "--delta", "2"], ["relaxed_contrastive"]),
        "e10_lr3e-3_lw0.25": (
            ["--epochs", "10", "--lr", "3e-3", "--label-weight", "0.25"],
            ["relaxed_contrastive+labels"],
        ),
        "e20_lr1e-2_lw0.25": (
            ["--epochs", "20", "--lr", "1e-2", "--label-weight", "0.25"],
            ["relaxed_contrastive+labels"],
        ),
    }
    assert "--delta-budget 10:3e-3 20:1e-2 --label-weights 0.25" in module.command_line(args)


def test_sigma_points_cross_every_delta_at_every_delta_budget():
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--methods",
            "relaxed_contrastive",
            "relaxed_ms",
            "pkt",
            "--budgets",
            "10:1e-3",
            "--deltas",
            "2",
            "--delta-methods",
            "relaxed_contrastive",
            "--delta-budget",
            "10:3e-3",
            "--sigmas",
            "0.5",
            "0.25",
        ]
    )
    points = {name: (point_args, methods) for name, point_args, methods in module.validation_points(args)}
    sigma_points = {name: value for name, value in points.items() if "sigma" in name}
    both = ["relaxed_contrastive", "relaxed_ms"]  # pkt has no relaxed labels; relaxed_ms is no delta method here
    assert sigma_points == {
        "e10_lr3e-3_sigma0.5": (["--epochs", "10", "--lr", "3e-3", "--sigma", "0.5"], both),
        "e10_lr3e-3_sigma0.5_delta2": (
            ["--epochs", "10", "--lr", "3e-3", "--sigma", "0.5", "--delta", "2"],
            ["relaxed_contrastive"],
        ),
        "e10_lr3e-3_sigma0.25": (["--epochs", "10", "--lr", "3e-3", "--sigma", "0.25"], both),
        "e10_lr3e-3_sigma0.25_delta2": (
            ["--epochs", "10", "--lr", "3e-3", "--sigma", "0.25", "--delta", "2"],
            ["relaxed_contrastive"],
        ),
    }
    assert set(points) - set(sigma_points) == {"e10_lr1e-3", "e10_lr3e-3_delta2"}
    assert "--sigmas 0.5 0.25 --sigma-methods relaxed_contrastive" in module.command_line(args)
    for argv in (["--methods", "pkt", "--sigmas", "0.5"], ["--sigmas", "0.5", "--sigma-methods"]):
        assert not [
            name
            for name, _, _ in module.validation_points(module.get_args_parser().parse_args(argv))
            if "sigma" in name
        ]  # no method takes a sigma: no sigma point
    assert "--sigmas" not in module.command_line(module.get_args_parser().parse_args([]))


def test_drop_stale_compares_sigma(tmp_path):
    module = _module()
    runs = tmp_path / "runs.jsonl"
    hparams = {"epochs": 10, "lr": 0.01, "sigma": 1.0, "delta": 2.0, "label_weight": 0.5}
    rows = [("rc", hparams), ("rc", {**hparams, "sigma": 0.5}), ("pkt", hparams)]
    runs.write_text("".join(json.dumps({"method": m, "kind": "x", "hparams": h}) + "\n" for m, h in rows))
    chosen = {
        "rc": {"args": ["--epochs", "10", "--lr", "1e-2", "--sigma", "0.5", "--delta", "2"]},
        "pkt": {"args": ["--epochs", "10", "--lr", "1e-2", "--delta", "2"]},
    }
    assert module.drop_stale(runs, chosen, "digits", []) == 1
    assert [(r["method"], r["hparams"]) for r in _records(runs)] == [rows[1], rows[2]]


def test_rkd_angle_weight_points_at_every_delta_budget():
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--methods",
            "rkd",
            "relaxed_contrastive",
            "--budgets",
            "10:1e-3",
            "--deltas",
            "--delta-budget",
            "10:3e-3",
            "20:1e-2",
            "--rkd-angle-weights",
            "0",
            "4",
        ]
    )
    points = {name: (point_args, methods) for name, point_args, methods in module.validation_points(args)}
    assert points == {
        "e10_lr1e-3": (["--epochs", "10", "--lr", "1e-3"], ["rkd", "relaxed_contrastive"]),
        "e10_lr3e-3_angle0": (["--epochs", "10", "--lr", "3e-3", "--rkd-angle-weight", "0"], ["rkd"]),
        "e10_lr3e-3_angle4": (["--epochs", "10", "--lr", "3e-3", "--rkd-angle-weight", "4"], ["rkd"]),
        "e20_lr1e-2_angle0": (["--epochs", "20", "--lr", "1e-2", "--rkd-angle-weight", "0"], ["rkd"]),
        "e20_lr1e-2_angle4": (["--epochs", "20", "--lr", "1e-2", "--rkd-angle-weight", "4"], ["rkd"]),
    }
    assert "--rkd-angle-weights 0 4" in module.command_line(args)
    assert "--rkd-angle-weights" not in module.command_line(module.get_args_parser().parse_args([]))
    no_rkd = module.get_args_parser().parse_args(["--methods", "pkt", "--rkd-angle-weights", "0"])
    assert not [name for name, _, _ in module.validation_points(no_rkd) if "angle" in name]


def test_drop_stale_compares_the_rkd_angle_weight(tmp_path):
    module = _module()
    runs = tmp_path / "runs.jsonl"
    hparams = {"epochs": 10, "lr": 0.01, "sigma": 1.0, "delta": 1.0, "label_weight": 0.5}
    rows = [
        ("rkd", hparams),  # recorded before the option existed: the paper's weight 2
        ("rkd", {**hparams, "rkd_angle_weight": 2.0}),
        ("rkd", {**hparams, "rkd_angle_weight": 0.0}),
        ("pkt", hparams),
    ]
    runs.write_text("".join(json.dumps({"method": m, "kind": "x", "hparams": h}) + "\n" for m, h in rows))
    chosen = {
        "rkd": {"args": ["--epochs", "10", "--lr", "1e-2", "--rkd-angle-weight", "0"]},
        "pkt": {"args": ["--epochs", "10", "--lr", "1e-2"]},
    }
    assert module.drop_stale(runs, chosen, "digits", []) == 2
    assert [(r["method"], r["hparams"]) for r in _records(runs)] == [rows[2], rows[3]]
    chosen["rkd"]["args"] = ["--epochs", "10", "--lr", "1e-2"]  # the default weight keeps old records
    runs.write_text("".join(json.dumps({"method": m, "kind": "x", "hparams": h}) + "\n" for m, h in rows))
    assert module.drop_stale(runs, chosen, "digits", []) == 1
    assert [(r["method"], r["hparams"]) for r in _records(runs)] == [rows[0], rows[1], rows[3]]


def test_drop_stale_compares_the_text_ngram_dropout(tmp_path):
    module = _module()
    runs = tmp_path / "runs.jsonl"
    hparams = {"epochs": 10, "lr": 0.01, "sigma": 1.0, "delta": 1.0, "label_weight": 0.5}
    rows = [
        ("relaxed_ms", hparams),  # recorded before the option existed: no dropout
        ("relaxed_ms", {**hparams, "text_ngram_dropout": 0.4}),
    ]
    runs.write_text("".join(json.dumps({"method": m, "kind": "x", "hparams": h}) + "\n" for m, h in rows))
    chosen = {"relaxed_ms": {"args": ["--epochs", "10", "--lr", "1e-2", "--text-ngram-dropout", "0.4"]}}
    assert module.drop_stale(runs, chosen, "banking77", []) == 1
    assert [r["hparams"] for r in _records(runs)] == [rows[1][1]]


def test_drop_stale_moves_runs_at_another_point(tmp_path):
    module = _module()
    runs = tmp_path / "runs.jsonl"
    hparams = {"epochs": 10, "lr": 0.003, "sigma": 1.0, "delta": 1.0, "label_weight": 0.5}
    rows = [
        ("teacher:x", hparams),
        ("rc", hparams),
        ("rc", {**hparams, "delta": 2.0}),
        ("pkt", {**hparams, "lr": 0.01}),
        ("pkt", {**hparams, "epochs": 20, "lr": 0.01}),
    ]
    runs.write_text("".join(json.dumps({"method": m, "kind": "x", "hparams": h}) + "\n" for m, h in rows))
    chosen = {
        "rc": {"args": ["--epochs", "10", "--lr", "3e-3", "--delta", "2"]},
        "pkt": {"args": ["--epochs", "20", "--lr", "1e-2"]},
    }
    assert module.drop_stale(runs, chosen, "digits", ["--no-progress"]) == 2
    assert [(r["method"], r["hparams"]) for r in _records(runs)] == [rows[0], rows[2], rows[4]]
    assert [(r["method"], r["hparams"]) for r in _records(tmp_path / "runs.stale.jsonl")] == [rows[1], rows[3]]
    assert module.drop_stale(runs, chosen, "digits", []) == 0
    assert module.drop_stale(tmp_path / "missing.jsonl", chosen, "digits", []) == 0


def test_refinements_parse_and_apply_to_each_chosen_point():
    module = _module()
    assert module.parse_refinement("h128=--text-hidden-dim 128") == ("h128", ["--text-hidden-dim", "128"])
    assert module.parse_refinement("linear=--text-mlp") == ("linear", ["--text-mlp"])
    chosen = {
        "rc": {"point": "e10_lr1e-2", "args": ["--epochs", "10", "--lr", "1e-2"]},
        "pkt": {"point": "e20_lr3e-3", "args": ["--epochs", "20", "--lr", "3e-3"]},
        "ms": {"point": "e10_lr1e-2", "args": ["--epochs", "10", "--lr", "1e-2"]},
    }
    points = module.refinement_points(chosen, [("h128", ["--text-hidden-dim", "128"]), ("linear", ["--text-mlp"])])
    assert points == [
        ("e10_lr1e-2_h128", ["--epochs", "10", "--lr", "1e-2", "--text-hidden-dim", "128"], ["rc", "ms"]),
        ("e10_lr1e-2_linear", ["--epochs", "10", "--lr", "1e-2", "--text-mlp"], ["rc", "ms"]),
        ("e20_lr3e-3_h128", ["--epochs", "20", "--lr", "3e-3", "--text-hidden-dim", "128"], ["pkt"]),
        ("e20_lr3e-3_linear", ["--epochs", "20", "--lr", "3e-3", "--text-mlp"], ["pkt"]),
    ]


def test_a_grown_grid_keeps_the_refinements_of_an_earlier_choice(tmp_path):
    module = _module()

    def write(point, score):
        folder = tmp_path / point
        folder.mkdir()
        metrics = {"recall_at_1": score, "mean_average_precision_at_r": score}
        record = {"method": "rc", "setting": "s", "seed": 0, "metrics": metrics}
        (folder / "runs.jsonl").write_text(json.dumps(record) + "\n")

    # an earlier call chose p1 and trained its refinement; the grown grid's p2 now wins the first stage
    for point, score in [("p1", 0.70), ("p1_lin", 0.80), ("p2", 0.72), ("p2_lin", 0.71)]:
        write(point, score)
    points = [("p1", ["--lr", "1"], ["rc", "pkt"]), ("p2", ["--lr", "2"], ["rc"])]
    refinements = [("lin", ["--text-mlp"])]
    _, first = module.select(tmp_path, points, ["s"], 1)
    assert first["rc"]["point"] == "p2"
    second = module.refinement_points(first, refinements)
    assert [name for name, _, _ in second] == ["p2_lin"]
    every = module.every_refinement(points, refinements)
    assert every == [
        ("p1_lin", ["--lr", "1", "--text-mlp"], ["rc", "pkt"]),
        ("p2_lin", ["--lr", "2", "--text-mlp"], ["rc"]),
    ]
    assert all(point in every for point in second)  # the second stage is among them
    _, without = module.select(tmp_path, points + second, ["s"], 1)
    _, chosen = module.select(tmp_path, points + every, ["s"], 1)
    assert without["rc"]["point"] == "p2"  # would score 0.72 on validation, below the 0.80 held before
    assert chosen["rc"]["point"] == "p1_lin" and chosen["rc"]["args"] == ["--lr", "1", "--text-mlp"]
    assert "pkt" not in chosen  # a point's other methods count only where their runs finished


@pytest.mark.parametrize("text", ["h128", "=--text-mlp 3", "h128=", "h128=128", "a b=--sigma 2", "a/b=--sigma 2"])
def test_bad_refinement(text):
    with pytest.raises(ValueError, match=r"a refinement must look like NAME=--option value .* got"):
        _module().parse_refinement(text)


def test_drop_stale_compares_the_text_student(tmp_path):
    module = _module()
    runs = tmp_path / "runs.jsonl"
    base = {"epochs": 10, "lr": 0.01, "sigma": 1.0, "delta": 1.0, "label_weight": 0.5}
    default = {"hidden_dim": 64, "mlp_hidden_dims": [256], "init_std": 0.1}
    rows = [
        ("rc", base),  # recorded before student options were: the default student
        ("rc", {**base, "student_options": default}),
        ("rc", {**base, "student_options": {**default, "hidden_dim": 128}}),
        ("pkt", {**base, "student_options": default}),
    ]
    runs.write_text("".join(json.dumps({"method": m, "kind": "x", "hparams": h}) + "\n" for m, h in rows))
    chosen = {
        "rc": {"args": ["--epochs", "10", "--lr", "1e-2", "--text-hidden-dim", "128"]},
        "pkt": {"args": ["--epochs", "10", "--lr", "1e-2"]},
    }
    assert module.drop_stale(runs, chosen, "banking77", []) == 2
    assert [(r["method"], r["hparams"]) for r in _records(runs)] == [rows[2], rows[3]]


def test_per_setting_chooses_each_setting_on_its_own_validation(tmp_path, monkeypatch):
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--dataset",
            "digits",
            "--val-classes",
            "2",
            "--methods",
            "relaxed_contrastive",
            "pkt",
            "--val-seeds",
            "1",
            "--budgets",
            "1:1e-3",
            "2:3e-3",
            "--deltas",
            "--per-setting",
            "--settings",
            "dim_reduction",
            "compression",
            "--seeds",
            "1",
            "--output-dir",
            str(tmp_path),
            "--",
            "--teacher-epochs",
            "1",
            "--no-progress",
        ]
    )
    chosen = module.main(args)
    assert set(chosen) == {f"{s}/{m}" for s in ("dim_reduction", "compression") for m in ("relaxed_contrastive", "pkt")}
    merged = _records(tmp_path / "test" / "runs.jsonl")
    assert sum(r["kind"] == "teacher" for r in merged) == 1
    for setting in ("dim_reduction", "compression"):
        folder = tmp_path / setting
        for point in ("e1_lr1e-3", "e2_lr3e-3"):  # validated at this setting only
            assert {
                r["setting"] for r in _records(folder / "val" / point / "runs.jsonl") if r["kind"] != "teacher"
            } == {setting}
            assert all(r["throughput"] is None for r in _records(folder / "val" / point / "runs.jsonl"))
        table = json.loads((folder / "selection.json").read_text())["table"]
        for method in ("relaxed_contrastive", "pkt"):
            row = chosen[f"{setting}/{method}"]
            assert row["score"] == max(r["score"] for r in table if r["method"] == method)
            runs = [r for r in merged if r["setting"] == setting and r["method"] == method]
            assert len(runs) == 1 and runs[0]["eval_split"] == "test" and runs[0]["throughput"] > 0
            assert runs[0]["hparams"]["epochs"] == int(row["args"][row["args"].index("--epochs") + 1])
        assert f"## {setting}" in (tmp_path / "selection.md").read_text()
    report = (tmp_path / "test" / "results.md").read_text()
    assert "--settings dim_reduction compression --per-setting" in report
    assert "dim_reduction" in report and "compression" in report
    calls, bench = [], module._bench
    monkeypatch.setattr(module, "_bench", lambda argv: (calls.append(argv), bench(argv)))
    assert module.main(args) == chosen  # a second call trains nothing: every step has finished
    assert calls and all("--report-only" in argv for argv in calls)
    assert _records(tmp_path / "test" / "runs.jsonl") == merged


def test_finished_needs_every_setting_method_and_seed(tmp_path):
    module = _module()
    runs = tmp_path / "runs.jsonl"
    assert not module.finished(runs, ["rc"], ["dim16"], range(1))
    runs.write_text(
        "".join(
            json.dumps({"setting": s, "method": m, "seed": seed}) + "\n"
            for s, m, seed in [("dim16", "rc", 0), ("dim16", "rc", 1), ("dim32", "rc", 0)]
        )
    )
    assert module.finished(runs, ["rc"], ["dim16"], range(2))
    assert module.finished(runs, ["rc"], ["dim16", "dim32"], range(1))
    assert not module.finished(runs, ["rc"], ["dim16", "dim32"], range(2))
    assert not module.finished(runs, ["rc", "pkt"], ["dim16"], range(1))


@pytest.mark.parametrize(
    "extra, got",
    [
        ([], "got --settings None and --val-settings None"),
        (
            ["--settings", "dim16", "--val-settings", "dim16"],
            r"got --settings \['dim16'\] and --val-settings \['dim16'\]",
        ),
    ],
)
def test_per_setting_needs_settings_and_no_val_settings(tmp_path, extra, got):
    module = _module()
    args = module.get_args_parser().parse_args(["--per-setting", "--output-dir", str(tmp_path), *extra])
    with pytest.raises(
        ValueError,
        match=r"--per-setting validates each of --settings on itself: it needs "
        r"--settings and no --val-settings; " + got,
    ):
        module.main(args)
