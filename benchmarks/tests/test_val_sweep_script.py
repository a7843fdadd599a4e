import json

import pytest

from tests.helpers.banking77_fixture import make_banking77
from tests.helpers.benchmark_scripts import load_script


def _module():
    return load_script("val_sweep")


def test_grid_runs_on_validation_classes_with_one_teacher(tmp_path):
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--dataset",
            "digits",
            "--val-classes",
            "2",
            "--settings",
            "dim_reduction",
            "--methods",
            "relaxed_contrastive",
            "rkd",
            "--grid",
            "sigma=0.5,1",
            "eval-normalize=true,false",
            "--fixed",
            "epochs=1",
            "teacher-epochs=1",
            "--output-dir",
            str(tmp_path),
        ]
    )
    rows = module.main(args)
    assert [(r["sigma"], r["eval-normalize"], r["method"]) for r in rows] == [
        (s, e, m) for s in ("0.5", "1") for e in ("true", "false") for m in ("relaxed_contrastive", "rkd")
    ]
    assert all(0 <= r["R@1"] <= 1 and 0 <= r["MAP@R"] <= 1 and r["seeds"] == 1 for r in rows)
    assert len(list((tmp_path / "teachers").glob("teacher_digits_val_*.pt"))) == 1, "one teacher for the sweep"
    records = [json.loads(line) for line in (tmp_path / "sigma0.5_eval-normalizefalse" / "runs.jsonl").open()]
    students = [r for r in records if r["kind"] != "teacher"]
    assert {r["eval_split"] for r in records} == {"val"}
    assert all(r["hparams"]["sigma"] == 0.5 and r["hparams"]["eval_normalize"] is False for r in students)
    assert all(r["hparams"]["epochs"] == 1 for r in students)
    assert "| 0.5 | true | dim_reduction | relaxed_contrastive |" in (tmp_path / "sweep.md").read_text()
    assert len(json.loads((tmp_path / "sweep.json").read_text())) == len(rows)


def test_each_point_builds_its_own_student(tmp_path):
    module = _module()
    args = module.get_args_parser().parse_args(
        [
            "--dataset",
            "banking77",
            "--val-classes",
            "1",
            "--settings",
            "dim16",
            "--methods",
            "relaxed_contrastive",
            "--grid",
            "text-hidden-dim=16,24",
            "--fixed",
            "epochs=1",
            "batch-size=8",
            "m=2",
            "data-root=" + str(make_banking77(tmp_path, train_intents=39)),
            "--output-dir",
            str(tmp_path / "sweep"),
        ]
    )
    module.main(args)
    for width in (16, 24):
        records = [json.loads(line) for line in (tmp_path / "sweep" / f"text-hidden-dim{width}" / "runs.jsonl").open()]
        assert [r["hparams"]["student_options"]["hidden_dim"] for r in records if r["kind"] != "teacher"] == [width]


@pytest.mark.parametrize(
    "grid,message",
    [
        (["delta"], "a grid item must look like option=v1,v2"),
        (["=1,2"], "a grid item must look like option=v1,v2"),
        (["eval-normalize=yes"], "eval-normalize takes true or false; got 'yes'"),
    ],
)
def test_bad_grid(tmp_path, grid, message):
    module = _module()
    args = module.get_args_parser().parse_args(["--dataset", "digits", "--grid", *grid, "--output-dir", str(tmp_path)])
    with pytest.raises(ValueError, match=message):
        module.main(args)
