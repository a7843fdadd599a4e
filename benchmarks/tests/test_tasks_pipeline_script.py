"""benchmarks/tasks_pipeline.py: validation grid, choice on validation, one test run with the choice (digits,
one epoch)."""

import json

import pytest

from tests.helpers.benchmark_scripts import load_script

TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "32", "--test-seeds", "2"]


def _run(tmp_path, argv):
    module = load_script("tasks_pipeline")
    summary = module.main(module.get_args_parser().parse_args(argv + TINY + ["--output-root", str(tmp_path)]))
    return module, summary


def _records(folder):
    return [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]


def _best(records, setting, method, metric):
    """The explicit choice: the options of the best validation value, the first one on equal values."""
    runs = [r for r in records if (r["setting"], r["method"]) == (setting, method)]
    best = max(r["metrics"][metric] for r in runs)
    return next(r["options"] for r in runs if r["metrics"][metric] == best)


def test_self_taught_pipeline_tests_the_options_chosen_on_validation(tmp_path):
    _, summary = _run(
        tmp_path, ["--task", "self-taught", "--temperatures", "0.1", "0.5", "--ks", "3", "--ema-momenta", "0.9", "0.5"]
    )
    root = tmp_path / "self_taught_digits"
    val, test = _records(root / "val"), _records(root / "test")
    metric = "mean_average_precision_at_r"
    assert len(val) == 4 and {r["split"] for r in val} == {"val"} and {r["seed"] for r in val} == {0}
    expected = {m: _best(val, "mlp256", m, metric) for m in ("ntxent", "stml")}
    assert {c["method"]: c["options"] for c in summary["choices"]} == expected
    assert sorted((r["method"], r["seed"]) for r in test) == [("ntxent", 0), ("ntxent", 1), ("stml", 0), ("stml", 1)]
    assert all(r["options"] == expected[r["method"]] and r["split"] == "test" for r in test)
    saved = json.loads((root / "choices.json").read_text())
    assert saved == summary and len(saved["test_commands"]) == 2
    assert saved["test_commands"][0] in (root / "test" / "commands.txt").read_text()
    for c in summary["choices"]:
        assert c["validation_value"] == _best_value(val, c["method"], metric)


def _best_value(records, method, metric):
    return max(r["metrics"][metric] for r in records if r["method"] == method)


def test_ssl_pipeline_takes_the_teacher_temperature_of_the_self_transfer_choice(tmp_path):
    _, summary = _run(tmp_path, ["--task", "ssl", "--temperatures", "0.1", "0.5", "--sigmas", "0.5", "2"])
    root = tmp_path / "ssl_digits"
    val, test = _records(root / "val"), _records(root / "test")
    metric = "mean_average_precision_at_r"
    teacher_t = _best(val, "self_transfer", "ntxent", metric)["temperature"]
    choices = {(c["setting"], c["method"]): c["options"] for c in summary["choices"]}
    assert {o["teacher_temperature"] for (_, m), o in choices.items() if m == "relaxed_contrastive"} == {teacher_t}
    for setting in ("self_transfer", "compression"):
        for method in ("ntxent", "relaxed_contrastive"):
            assert choices[(setting, method)] == _best(val, setting, method, metric)
            runs = [r for r in test if (r["setting"], r["method"]) == (setting, method)]
            assert [r["seed"] for r in runs] == [0, 1] and all(r["options"] == choices[(setting, method)] for r in runs)
    assert [r["options"] for r in test if r["setting"] == "teacher"] == [{"temperature": teacher_t}]


def test_classification_pipeline_runs_every_method_once_on_test(tmp_path):
    _, summary = _run(tmp_path, ["--task", "classification", "--weights", "0.5", "2"])
    root = tmp_path / "classification_digits"
    val, test = _records(root / "val"), _records(root / "test")
    assert len(val) == 1 + 1 + 3 * 2  # teacher, ce, three methods at two weights
    chosen = {c["method"]: c["options"] for c in summary["choices"]}
    assert set(chosen) == {"ce", "ce+relaxed_contrastive", "ce+kd", "ce+rkd"}
    assert all(chosen[m] == _best(val, "mlp256->mlp32", m, "top1_accuracy") for m in chosen)
    students = [r for r in test if r["setting"] != "teacher"]
    assert sorted(r["method"] for r in students) == sorted(2 * list(chosen))
    assert all(r["options"] == chosen[r["method"]] for r in students)


def test_bad_pipeline_arguments():
    module = load_script("tasks_pipeline")
    with pytest.raises(SystemExit):
        module.get_args_parser().parse_args(["--task", "self-taught", "--dataset", "mnist"])


def test_self_taught_pipeline_ties_k_to_the_neighbour_groups_and_tests_the_choice(tmp_path):
    _, summary = _run(
        tmp_path,
        ["--task", "self-taught", "--temperatures", "0.1", "--ks", "3", "--ema-momenta", "0.9"]
        + ["--stml-neighbours", "0", "4", "--stml-kl-weights", "0", "0.5"],
    )
    root = tmp_path / "self_taught_digits"
    val, test = _records(root / "val"), _records(root / "test")
    stml = sorted(
        (r["options"]["k"], r["options"].get("neighbours", 0), r["options"].get("kl_weight", 0))
        for r in val
        if r["method"] == "stml"
    )
    assert stml == [(3, 0, 0), (3, 0, 0.5), (8, 4, 0), (8, 4, 0.5)]  # k = 3 from --ks; k = 2 x 4 with groups of 4
    assert sum(r["method"] == "ntxent" for r in val) == 1  # the baseline runs once, not once per group size
    chosen = next(c["options"] for c in summary["choices"] if c["method"] == "stml")
    assert chosen == _best(val, "mlp256", "stml", "mean_average_precision_at_r")
    assert [r["options"] for r in test if r["method"] == "stml"] == [chosen, chosen]
    command = next(c for c in summary["test_commands"] if "stml" in c)
    assert f"--stml-neighbours {chosen.get('neighbours', 0)}" in command and f"--ks {chosen['k']}" in command


def test_self_taught_pipeline_passes_the_centred_labels_to_the_test_run(tmp_path):
    _, summary = _run(
        tmp_path,
        ["--task", "self-taught", "--temperatures", "0.1", "--ks", "3", "--ema-momenta", "0.9", "--stml-centers", "1"],
    )
    root = tmp_path / "self_taught_digits"
    val, test = _records(root / "val"), _records(root / "test")
    assert [r["options"].get("center") for r in val if r["method"] == "stml"] == [1]
    assert [r["options"].get("center") for r in test if r["method"] == "stml"] == [1, 1]
    assert "--stml-centers 1" in next(c for c in summary["test_commands"] if "stml" in c)
