"""The README's first command, shortened: the digits example runs end to end and prints its table."""
import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_transfer_runs(capsys):
    example = load("digits_transfer")
    args = example.get_args_parser().parse_args(["--teacher-epochs", "2", "--student-epochs", "2"])
    results = example.main(args)
    assert len(results) == 3
    for scores in results.values():
        assert 0.0 <= scores["MAP@R"] <= scores["R@1"] <= 1.0
    teacher = next(v for k, v in results.items() if k.startswith("teacher"))
    assert teacher["R@1"] > 0.5, "a ProxyAnchor teacher should beat chance (0.2) by far on digits 5-9"
    out = capsys.readouterr().out
    assert "unseen classes 5-9" in out and "RelaxedContrastive from teacher" in out
