"""The new text students' saved folders in sentence-transformers (HashedNgramSentenceModule serves every student)."""

import json

import pytest
import torch

from pml_relaxed.models import AttentionPooledNgramEmbedder, ConvNgramEmbedder

sentence_transformers = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402

from pml_relaxed.models import HashedNgramSentenceModule  # noqa: E402

TEXTS = ["I lost my card", "Where is my new card?", "", "café crème, s'il vous plaît", "exchange rate " * 60, "top up"]
STUDENTS = [AttentionPooledNgramEmbedder, ConvNgramEmbedder]


def trained_like(cls):
    torch.manual_seed(0)
    model = cls(embedding_dim=8, num_buckets=2**10, hidden_dim=16, mlp_hidden_dims=(32,))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("cls", STUDENTS)
def test_sentence_transformer_loads_the_folder_and_returns_the_same_vectors(tmp_path, cls):
    model = trained_like(cls)
    expected = model.encode(TEXTS)
    model.save_pretrained(tmp_path)
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert modules[0]["type"] == "pml_relaxed.models.hashed_ngram_sentence_module.HashedNgramSentenceModule"
    served = SentenceTransformer(str(tmp_path), trust_remote_code=True, device="cpu")
    assert isinstance(served[0].embedder, cls) and served.get_embedding_dimension() == 8
    torch.testing.assert_close(
        served.encode(TEXTS, batch_size=4, convert_to_tensor=True), expected, rtol=1e-5, atol=1e-6
    )
    prompted = served.encode(["card"], prompt="query: ", convert_to_tensor=True)
    torch.testing.assert_close(prompted, model.encode(["query: card"]), rtol=1e-5, atol=1e-6)

    # Without the flag: built from the module, which reads only the JSON and safetensors files.
    direct = SentenceTransformer(modules=[HashedNgramSentenceModule.load(str(tmp_path))], device="cpu")
    torch.testing.assert_close(direct.encode(TEXTS, convert_to_tensor=True), expected, rtol=1e-5, atol=1e-6)

    # sentence-transformers' own save of the model loads in both libraries again.
    direct.save(str(tmp_path / "resaved"))
    again = SentenceTransformer(str(tmp_path / "resaved"), trust_remote_code=True, device="cpu")
    torch.testing.assert_close(again.encode(TEXTS, convert_to_tensor=True), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(cls.from_pretrained(tmp_path / "resaved").encode(TEXTS), expected)


@pytest.mark.parametrize("cls", STUDENTS)
def test_to_sentence_transformer_shares_the_weights(cls):
    model = trained_like(cls)
    served = HashedNgramSentenceModule(model).to_sentence_transformer()
    torch.testing.assert_close(served.encode(TEXTS, convert_to_tensor=True), model.encode(TEXTS), rtol=1e-5, atol=1e-6)
    assert served[0].embedder is model and served[0].get_config_dict() == model.get_config()


def test_sentence_transformers_6_asks_for_trust_remote_code(tmp_path):
    major = int(sentence_transformers.__version__.split(".")[0])
    if major < 6:
        pytest.skip("sentence-transformers < 6 imports installed module classes without the flag")
    trained_like(ConvNgramEmbedder).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SentenceTransformer(str(tmp_path), device="cpu")


def test_the_module_builds_only_the_students_it_knows(tmp_path):
    trained_like(AttentionPooledNgramEmbedder).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "pml_relaxed_config.json").read_text())
    (tmp_path / "pml_relaxed_config.json").write_text(json.dumps({**config, "class": "Module"}))
    with pytest.raises(
        ValueError, match=r"must name a hashed n-gram student \(HashedNgramEmbedder, .*\); got 'Module'"
    ):
        HashedNgramSentenceModule.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is neither a folder nor a hub repository|does not exist"):
        HashedNgramSentenceModule.load(str(tmp_path / "missing"), local_files_only=True)
