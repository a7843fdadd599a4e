"""HashedNgramEmbedder.encode / save_pretrained / from_pretrained, and the saved folders of every hashed student
in sentence-transformers."""

import json

import pytest
import torch

from pml_relaxed.models import AttentionPooledNgramEmbedder, ConvNgramEmbedder, HashedNgramEmbedder

sentence_transformers = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402

from pml_relaxed.models import HashedNgramSentenceModule  # noqa: E402

TEXTS = ["I lost my card", "Where is my new card?", "", "café crème, s'il vous plaît", "exchange rate " * 60, "top up"]
STUDENTS = [HashedNgramEmbedder, AttentionPooledNgramEmbedder, ConvNgramEmbedder]


def trained_like_model(cls=HashedNgramEmbedder, **options):
    """A small student whose every parameter and buffer differs from a fresh one (as after training)."""
    torch.manual_seed(0)
    model = cls(embedding_dim=8, num_buckets=2**10, hidden_dim=16, mlp_hidden_dims=(32,), **options)
    if isinstance(model, HashedNgramEmbedder):
        model.fit_idf(["lost card", "card arrived", "exchange rate please", "my card"])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def reference_embeddings(model: HashedNgramEmbedder, texts) -> torch.Tensor:
    """One text at a time through the padded-id path, in eval mode."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(model.encode_batch([text])) for text in texts])


def test_encode_embeds_raw_texts_in_eval_mode_without_gradients():
    model = trained_like_model()
    model.head.net.append(torch.nn.Dropout(0.9))  # train mode would drop most outputs
    model.train()
    out = model.encode(TEXTS, batch_size=4)
    assert model.training  # restored
    assert out.shape == (len(TEXTS), 8) and not out.requires_grad
    torch.testing.assert_close(out, reference_embeddings(model, TEXTS), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.encode(TEXTS, batch_size=1), out, rtol=1e-5, atol=1e-6)
    assert model.encode([]).shape == (0, 8)


def test_encode_rejects_bad_input():
    model = trained_like_model()
    with pytest.raises(TypeError, match="texts must be a list of str; got str"):
        model.encode("a single string")
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        model.encode(TEXTS, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int >= 1; got float"):
        model.encode(TEXTS, batch_size=2.0)


@pytest.mark.parametrize(
    "cls, options",
    [
        (HashedNgramEmbedder, {"max_features": 64}),
        (AttentionPooledNgramEmbedder, {"max_features": 64}),
        (ConvNgramEmbedder, {"kernel_size": 5, "features_per_token": 16}),
    ],
)
def test_save_pretrained_round_trips_weights_config_and_vectors(tmp_path, cls, options):
    model = trained_like_model(cls, char_ngram_range=(2, 4), **options)
    model.save_pretrained(tmp_path / "student")
    files = sorted(p.name for p in (tmp_path / "student").iterdir())
    assert files == [
        "config_sentence_transformers.json",
        "model.safetensors",
        "modules.json",
        "pml_relaxed_config.json",
    ]
    assert json.loads((tmp_path / "student" / "pml_relaxed_config.json").read_text())["class"] == cls.__name__
    loaded = cls.from_pretrained(tmp_path / "student")
    assert not loaded.training and loaded.get_config() == model.get_config()
    assert loaded.hasher.char_ngram_range == (2, 4) and loaded.hasher.max_features in (64, 16)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.encode(TEXTS), model.encode(TEXTS))


@pytest.mark.parametrize("cls", STUDENTS)
def test_sentence_transformer_loads_the_folder_and_returns_the_same_vectors(tmp_path, cls):
    model = trained_like_model(cls)
    expected = model.encode(TEXTS)
    model.save_pretrained(tmp_path)
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert modules == [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "pml_relaxed.models.hashed_ngram_sentence_module.HashedNgramSentenceModule",
        }
    ]
    served = SentenceTransformer(str(tmp_path), trust_remote_code=True, device="cpu")
    assert isinstance(served[0], HashedNgramSentenceModule) and served.get_embedding_dimension() == 8
    assert type(served[0].embedder) is cls
    vectors = served.encode(TEXTS, batch_size=4, convert_to_tensor=True)
    torch.testing.assert_close(vectors, expected, rtol=1e-5, atol=1e-6)
    normalized = served.encode(TEXTS[:2], normalize_embeddings=True, convert_to_tensor=True)
    torch.testing.assert_close(normalized, torch.nn.functional.normalize(expected[:2], dim=1), rtol=1e-5, atol=1e-6)
    prompted = served.encode(["card"], prompt="query: ", convert_to_tensor=True)
    torch.testing.assert_close(prompted, model.encode(["query: card"]), rtol=1e-5, atol=1e-6)

    # Without the flag: built from the module, no class import by sentence-transformers.
    direct = SentenceTransformer(modules=[HashedNgramSentenceModule.load(str(tmp_path))], device="cpu")
    torch.testing.assert_close(direct.encode(TEXTS, convert_to_tensor=True), expected, rtol=1e-5, atol=1e-6)

    # sentence-transformers' own save of the model loads in both libraries again.
    direct.save(str(tmp_path / "resaved"))
    again = SentenceTransformer(str(tmp_path / "resaved"), trust_remote_code=True, device="cpu")
    torch.testing.assert_close(again.encode(TEXTS, convert_to_tensor=True), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(cls.from_pretrained(tmp_path / "resaved").encode(TEXTS), expected)


def test_sentence_transformers_6_asks_for_trust_remote_code(tmp_path):
    major = int(sentence_transformers.__version__.split(".")[0])
    if major < 6:
        pytest.skip("sentence-transformers < 6 imports installed module classes without the flag")
    trained_like_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SentenceTransformer(str(tmp_path), device="cpu")


@pytest.mark.parametrize("cls", STUDENTS)
def test_to_sentence_transformer_shares_the_weights(cls):
    model = trained_like_model(cls)
    served = HashedNgramSentenceModule(model).to_sentence_transformer()
    torch.testing.assert_close(served.encode(TEXTS, convert_to_tensor=True), model.encode(TEXTS), rtol=1e-5, atol=1e-6)
    assert served[0].embedder is model


def test_loading_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="pml_relaxed_config.json' does not exist"):
        HashedNgramEmbedder.from_pretrained(tmp_path / "missing")
    with pytest.raises(TypeError, match="path must be a str or a path; got int"):
        HashedNgramEmbedder.from_pretrained(3)
    model = trained_like_model()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors' does not exist"):
        HashedNgramEmbedder.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "pml_relaxed_config.json").read_text())
    (tmp_path / "pml_relaxed_config.json").write_text(json.dumps({**config, "class": "MLP"}))
    with pytest.raises(ValueError, match="must describe a HashedNgramEmbedder"):
        HashedNgramEmbedder.from_pretrained(tmp_path)
    config["config"]["colour"] = "blue"
    (tmp_path / "pml_relaxed_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"unknown HashedNgramEmbedder arguments \['colour'\]"):
        HashedNgramEmbedder.from_pretrained(tmp_path)
    with pytest.raises(
        TypeError, match=r"embedder must be a hashed n-gram student \(HashedNgramEmbedder, .*\); got Linear"
    ):
        HashedNgramSentenceModule(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="safe_serialization must be True"):
        HashedNgramSentenceModule(model).save(str(tmp_path), safe_serialization=False)


def test_the_module_builds_only_the_students_it_knows(tmp_path):
    trained_like_model(AttentionPooledNgramEmbedder).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "pml_relaxed_config.json").read_text())
    (tmp_path / "pml_relaxed_config.json").write_text(json.dumps({**config, "class": "Module"}))
    with pytest.raises(
        ValueError, match=r"must name a hashed n-gram student \(HashedNgramEmbedder, .*\); got 'Module'"
    ):
        HashedNgramSentenceModule.load(str(tmp_path))
