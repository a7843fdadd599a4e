"""The text-distillation notebook runs top to bottom (on a subset: PML_RELAXED_QUICK=1)."""
import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "distil_sentence_transformer.ipynb"


def test_notebook_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PML_RELAXED_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace = {"__name__": "notebook"}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)
    out = capsys.readouterr().out
    assert "unseen intents" in out and "sentences/s" in out and "keeps" in out
    assert namespace["speed_student"] > namespace["speed_teacher"]
    assert (tmp_path / "distillation.png").stat().st_size > 1000
    assert any((tmp_path / "teacher_cache").iterdir())
