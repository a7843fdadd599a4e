"""No loader of the library runs code or unpickles anything from a model folder, however it was tampered with.

A saved folder is "planted": a ``modeling_student.py`` that writes a marker file when imported, named by
``modules.json`` (sentence-transformers) and by a ``config.json`` ``auto_map`` (transformers), and two pickles,
``pytorch_model.bin`` (``torch.save``) and ``model.pkl``, whose unpickling writes a marker (``__reduce__``).
Every library loader, and the documented ``SentenceTransformer(modules=[HashedNgramSentenceModule.load(path)])``,
must load the real model (or refuse the folder) with no marker written. The positive controls show that the
planted files are live: ``SentenceTransformer(path, trust_remote_code=True)`` runs the planted module, and
``torch.load(..., weights_only=False)`` / ``pickle.load`` run the pickles.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_relaxed.models import HashedNgramEmbedder, StaticEmbedder
from pml_relaxed.models import sentence_transformer_teacher as teacher_module

sentence_transformers = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402

from pml_relaxed.models import HashedNgramSentenceModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["I lost my card", "where is my card?", "", "exchange rate"]
PLANTED_MODULE = "modeling_student.Student"


class Planted:
    """A pickle whose loading runs ``exec``, as any pickle can: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",))


def plant(folder: Path, markers: Path) -> None:
    """Adds code and pickles to a saved folder; each writes its own file in ``markers`` when it runs."""
    markers.mkdir(exist_ok=True)
    (folder / "modeling_student.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(markers / 'code')!r}).write_text('imported')\n"
        "from pml_relaxed.models.hashed_ngram_sentence_module import HashedNgramSentenceModule as Student\n"
    )
    modules_path = folder / "modules.json"
    modules = json.loads(modules_path.read_text()) if modules_path.is_file() else [{"idx": 0, "name": "0"}]
    modules[0].update(path="", type=PLANTED_MODULE)
    modules_path.write_text(json.dumps(modules))
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": PLANTED_MODULE}}))
    torch.save(Planted(markers / "bin"), folder / "pytorch_model.bin")
    with open(folder / "model.pkl", "wb") as f:
        pickle.dump(Planted(markers / "pkl"), f)


def ran(markers: Path) -> list:
    return sorted(p.name for p in markers.iterdir())


def hashed_student() -> HashedNgramEmbedder:
    torch.manual_seed(0)
    return HashedNgramEmbedder(embedding_dim=8, num_buckets=2**10, hidden_dim=16)


def static_student() -> StaticEmbedder:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "my": 1, "card": 2, "lost": 3, "where": 4, "is": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return StaticEmbedder(tokenizer, torch.randn(len(vocab), 6), unk_token_id=0)


def test_hashed_student_loaders_run_nothing_from_a_planted_folder(tmp_path):
    student, folder, markers = hashed_student(), tmp_path / "student", tmp_path / "markers"
    expected = student.encode(TEXTS)
    student.save_pretrained(folder)
    plant(folder, markers)

    assert torch.equal(HashedNgramEmbedder.from_pretrained(folder).encode(TEXTS), expected)
    module = HashedNgramSentenceModule.load(str(folder))
    served = SentenceTransformer(modules=[module], device="cpu")  # the documented sentence-transformers route
    torch.testing.assert_close(served.encode(TEXTS, convert_to_tensor=True), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        served.encode(TEXTS, convert_to_tensor=True), module.embedder.encode(TEXTS), rtol=0, atol=0
    )
    # sentence-transformers >= 6 without the flag, and the teacher (which never passes it), refuse the folder
    if int(sentence_transformers.__version__.split(".")[0]) >= 6:
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            SentenceTransformer(str(folder), device="cpu")
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            teacher_module.SentenceTransformerTeacher(folder)
    assert ran(markers) == []

    # with the safetensors weights gone, only the pickles are left: the loaders refuse, they never unpickle
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors' does not exist"):
        HashedNgramEmbedder.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="model.safetensors' does not exist"):
        HashedNgramSentenceModule.load(str(folder))
    assert ran(markers) == []


def test_static_student_loaders_run_nothing_from_a_planted_folder(tmp_path):
    student, markers = static_student(), tmp_path / "markers"
    expected = student.encode(TEXTS)
    student.save_pretrained(tmp_path / "static")
    plant(tmp_path / "static", markers)
    assert torch.equal(StaticEmbedder.from_pretrained(tmp_path / "static").encode(TEXTS), expected)
    (tmp_path / "static" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors' does not exist"):
        StaticEmbedder.from_pretrained(tmp_path / "static")

    # to_sentence_transformer's folder, read by a plain SentenceTransformer(path): modules.json is kept (it names
    # sentence-transformers' own StaticEmbedding), the code and pickles are planted beside it
    exported = tmp_path / "exported"
    student.to_sentence_transformer().save(str(exported))
    modules = (exported / "modules.json").read_text()
    plant(exported, markers)
    (exported / "modules.json").write_text(modules)
    served = SentenceTransformer(str(exported), device="cpu")
    known = ["my card", "where is my card", "lost card"]  # no unknown token: sentence-transformers' mean is ours
    vectors = served.encode(known, convert_to_tensor=True)
    torch.testing.assert_close(vectors, student.encode(known), rtol=1e-5, atol=1e-6)
    (exported / "model.safetensors").unlink()  # sentence-transformers then reads pytorch_model.bin, weights only
    with pytest.raises(pickle.UnpicklingError):
        SentenceTransformer(str(exported), device="cpu")
    assert ran(markers) == []


class FakeSentenceTransformer:
    """Stands in for the teacher's model: only the embedding cache is under test."""

    def __init__(self, *args, **kwargs) -> None:
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def eval(self):
        return self

    def requires_grad_(self, flag):
        return self

    def parameters(self):
        return iter([self.weight])

    def get_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts, **kwargs):
        return torch.ones(len(texts), 3)


def test_teacher_embedding_cache_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_module, "_import_sentence_transformer", lambda: FakeSentenceTransformer)
    markers = tmp_path / "markers"
    markers.mkdir()
    teacher = teacher_module.SentenceTransformerTeacher("any-model", cache_dir=tmp_path / "cache")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    torch.save(Planted(markers / "old"), cache_dir / f"{teacher.cache_key(TEXTS)}.pt")  # an earlier version's file
    assert torch.equal(teacher.encode(TEXTS), torch.ones(len(TEXTS), 3)), "encoded, the old .pt file ignored"
    shard = teacher.cache_path(TEXTS) / "shard_00000.npy"
    torch.save(Planted(markers / "shard"), shard)  # a pickle in place of the shard: np.load refuses, build redoes it
    assert torch.equal(teacher.encode(TEXTS), torch.ones(len(TEXTS), 3))
    assert ran(markers) == []
    np.save(shard, np.full((len(TEXTS), 1, 3), 2.0, dtype=np.float32))  # another shard: its checksum differs
    assert torch.equal(teacher.encode(TEXTS), torch.ones(len(TEXTS), 3)), "the manifest's checksum catches it"


def test_positive_controls_the_planted_code_and_pickles_do_run(tmp_path):
    """What the loaders above avoid: the flagged sentence-transformers route imports the planted module."""
    folder, markers = tmp_path / "student", tmp_path / "markers"
    hashed_student().save_pretrained(folder)
    plant(folder, markers)
    script = (
        "import sys\n"
        "from sentence_transformers import SentenceTransformer\n"
        "served = SentenceTransformer(sys.argv[1], trust_remote_code=True, device='cpu')\n"
        "print(served.encode(['lost card']).shape)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),  # transformers copies the planted module there
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(1, 8)" in proc.stdout  # the model works, and the folder's code ran on the way
    assert ran(markers) == ["code"]
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    with open(folder / "model.pkl", "rb") as f:
        pickle.load(f)
    assert ran(markers) == ["bin", "code", "pkl"]


# ----------------------------------------------------------------------------- no unsafe deserialisation


def unsafe_loads(source: str, name: str = "<source>") -> list:
    """``file:line call`` for each ``torch.load`` without ``weights_only=True`` and each pickle / numpy-pickle load."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        weights_only = keywords.get("weights_only")
        if func == "torch.load" and not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
            found.append(f"{name}:{node.lineno} {func}")
        if func in ("pickle.load", "pickle.loads", "cloudpickle.load", "joblib.load", "dill.load"):
            found.append(f"{name}:{node.lineno} {func}")
        allow = keywords.get("allow_pickle")
        if func in ("np.load", "numpy.load") and not (isinstance(allow, ast.Constant) and allow.value is False):
            found.append(f"{name}:{node.lineno} {func}")  # numpy's default is safe; no np.load is used at all
    return found


def test_the_scanner_finds_unsafe_loads():
    source = (
        "torch.load(p)\n"
        "torch.load(p, weights_only=False)\n"
        "torch.load(p, map_location='cpu', weights_only=True)\n"
        "pickle.loads(b)\n"
        "np.load(p, allow_pickle=True)\n"
    )
    assert unsafe_loads(source) == [
        "<source>:1 torch.load",
        "<source>:2 torch.load",
        "<source>:4 pickle.loads",
        "<source>:5 np.load",
    ]


def test_every_torch_load_of_the_package_is_weights_only():
    files = [p for folder in ("pml_relaxed", "benchmarks", "examples") for p in sorted((ROOT / folder).rglob("*.py"))]
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in files}
    assert sum(source.count("torch.load(") for source in sources.values()) >= 4  # the scan sees the real calls
    found = [hit for name, source in sources.items() for hit in unsafe_loads(source, name)]
    assert found == []
