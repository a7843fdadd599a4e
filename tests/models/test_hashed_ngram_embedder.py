import pickle

import pytest
import torch
from pytorch_metric_learning import losses, trainers

from pml_relaxed.models import (
    AttentionPooledNgramEmbedder,
    ConvNgramEmbedder,
    HashedNgramEmbedder,
    NgramHasher,
    TextCollator,
)
from pml_relaxed.models.ngram_hasher import stable_hash

SMALL = dict(num_buckets=2**12, hidden_dim=16, mlp_hidden_dims=(32,), embedding_dim=8)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- hashing


def test_stable_hash_is_crc32_and_does_not_depend_on_the_process():
    # Known CRC-32 values: these must never change, or trained models would silently break.
    assert stable_hash("card") == 370448595
    assert stable_hash("card", 0x5EED0001) == 3383430884


def test_ids_of_a_text_are_pinned():
    ids = NgramHasher(num_buckets=2**18).text_ids("my card").tolist()
    assert ids[:4] == [51572, 227112, 234947, 26182]
    assert len(ids) == 15


def test_feature_counts_word_bigram_and_char_ngrams():
    hasher = NgramHasher(num_buckets=2**20, char_ngram_range=(3, 5), word_ngram_range=(1, 2))
    # "<card>": 4 trigrams + 3 four-grams + 2 five-grams, plus the unigram.
    assert hasher.text_ids("card").numel() == 10
    # "<my>": 2 trigrams + 1 four-gram, plus the unigram; plus the bigram "my card".
    assert hasher.text_ids("my card").numel() == 4 + 10 + 1
    assert NgramHasher(char_ngram_range=(0, 0), word_ngram_range=(1, 1)).text_ids("my card").numel() == 2
    assert NgramHasher(char_ngram_range=(0, 0), word_ngram_range=(2, 2)).text_ids("my new card").numel() == 2


def test_tokenisation_is_case_insensitive_and_keeps_punctuation():
    hasher = NgramHasher()
    assert hasher.tokenize("Where is MY card?") == ["where", "is", "my", "card", "?"]
    assert torch.equal(hasher.text_ids("MY Card"), hasher.text_ids("my card"))
    assert not torch.equal(hasher.text_ids("my card"), hasher.text_ids("my card?"))


def test_ids_are_in_range_and_zero_is_reserved_for_padding():
    hasher = NgramHasher(num_buckets=7)
    ids = hasher.text_ids("the quick brown fox jumps over the lazy dog")
    assert ids.min() >= 1 and ids.max() <= 6


def test_encode_batch_pads_with_zero():
    hasher = NgramHasher(num_buckets=2**16)
    batch = hasher.encode_batch(["card", "my card", ""])
    assert batch.dtype == torch.int64 and batch.shape == (3, 15)
    assert torch.equal(batch[0, :10], hasher.text_ids("card"))
    assert (batch[0, 10:] == 0).all() and (batch[2] == 0).all()
    assert hasher.encode_batch(["", "!!"[:0]]).shape == (2, 1)
    assert hasher.encode_batch([]).shape == (0, 1)


def test_max_features_truncates():
    hasher = NgramHasher(max_features=5)
    assert hasher.text_ids("a rather long sentence with many words").numel() == 5


def test_cache_returns_the_same_tensor_is_bounded_and_not_pickled():
    hasher = NgramHasher(cache_size=2)
    first = hasher.text_ids("lost card")
    assert hasher.text_ids("lost card") is first
    hasher.text_ids("b")
    hasher.text_ids("c")
    assert len(hasher._text_cache) == 2 and "lost card" not in hasher._text_cache
    clone = pickle.loads(pickle.dumps(hasher))
    assert clone._text_cache == {} and clone.num_buckets == hasher.num_buckets
    assert torch.equal(clone.text_ids("lost card"), first)
    hasher.clear_cache()
    assert hasher._text_cache == {} and hasher._word_cache == {}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_buckets": 1}, ValueError, "num_buckets must be >= 2; got 1"),
        ({"num_buckets": 2.0**10}, TypeError, "num_buckets must be an int"),
        ({"char_ngram_range": (5, 3)}, ValueError, r"char_ngram_range must satisfy 1 <= low <= high; got \(5, 3\)"),
        ({"char_ngram_range": 3}, TypeError, "char_ngram_range must be a pair of ints"),
        ({"word_ngram_range": (1, 3)}, ValueError, r"word_ngram_range must have high <= 2; got \(1, 3\)"),
        ({"max_features": 0}, ValueError, "max_features must be >= 1; got 0"),
    ],
)
def test_hasher_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        NgramHasher(**kwargs)


def test_hasher_input_errors():
    hasher = NgramHasher()
    with pytest.raises(TypeError, match="texts must be a list of str; got str"):
        hasher.encode_batch("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str; got int"):
        hasher.encode_batch(["ok", 3])
    with pytest.raises(TypeError, match="text must be a str; got list"):
        hasher.text_ids(["a"])


# ----------------------------------------------------------------------------- model


def test_forward_on_texts_and_on_ids_agree():
    model = HashedNgramEmbedder(**SMALL).eval()
    texts = ["I lost my card", "how do I top up?", ""]
    out = model(texts)
    assert out.shape == (3, 8) and out.dtype == torch.float32
    torch.testing.assert_close(model(model.encode_batch(texts)), out)
    torch.testing.assert_close(model(tuple(texts)), out)


def test_padding_does_not_change_an_embedding():
    model = HashedNgramEmbedder(**SMALL).eval()
    alone = model(["card"])
    padded = model(["card", "a much longer text that forces a lot of padding on the first row"])[:1]
    torch.testing.assert_close(padded, alone)


def test_float_cast_ids_as_done_by_a_pml_trainer_dtype_are_accepted():
    model = HashedNgramEmbedder(**SMALL).eval()
    ids = model.encode_batch(["lost card", "card arrived"])
    torch.testing.assert_close(model(ids.float()), model(ids))
    torch.testing.assert_close(model(ids.int()), model(ids))


def test_character_ngrams_make_typos_close():
    model = HashedNgramEmbedder(num_buckets=2**16, hidden_dim=64)
    pooled = model.pool(model.encode_batch(["transfer money", "transfre money", "exchange rate"]))
    cos = torch.nn.functional.cosine_similarity
    assert cos(pooled[0:1], pooled[1:2]) > cos(pooled[0:1], pooled[2:3]) + 0.2


def test_fit_idf_down_weights_frequent_features():
    model = HashedNgramEmbedder(**SMALL)
    hasher = model.hasher
    corpus = ["the card", "the pin", "the app", "the rate"]
    assert model.fit_idf(corpus) is model
    the_id = hasher.text_ids("the")[0]
    card_id = hasher.text_ids("card")[0]
    assert model.idf[0] == 0
    assert model.idf[the_id] < model.idf[card_id]
    torch.testing.assert_close(model.idf[the_id], torch.tensor(1.0))
    with pytest.raises(ValueError, match="at least one text"):
        model.fit_idf([])


def test_state_dict_round_trip_keeps_idf():
    model = HashedNgramEmbedder(**SMALL).fit_idf(["a b", "a c", "d"]).eval()
    clone = HashedNgramEmbedder(**SMALL).eval()
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.idf, model.idf)
    torch.testing.assert_close(clone(["a c"]), model(["a c"]))


def test_gradients_dense_and_sparse():
    for sparse in (False, True):
        model = HashedNgramEmbedder(sparse=sparse, **SMALL)
        model(["lost card", "card arrived"]).pow(2).sum().backward()
        grad = model.bag.weight.grad
        assert grad.is_sparse == sparse
        assert grad.to_dense()[0].abs().sum() == 0  # padding row never learns
        assert grad.to_dense().abs().sum() > 0


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ("a string", TypeError, "inputs must be a list of str or a"),
        (torch.tensor([1, 2]), ValueError, r"2D \(batch, length\) id matrix; got shape \(2,\)"),
        (torch.tensor([[1.5, 2.0]]), ValueError, "must hold integer bucket ids"),
        (torch.tensor([[1, 2**12]]), ValueError, r"ids must be in \[0, 4096\); got values in \[1, 4096\]"),
        (torch.tensor([[-1, 2]]), ValueError, r"got values in \[-1, 2\]"),
        (torch.tensor([[True]]), TypeError, "must be an integer tensor; got dtype torch.bool"),
        (["ok", None], TypeError, r"texts\[1\] must be a str; got NoneType"),
    ],
)
def test_forward_errors(inputs, error, match):
    with pytest.raises(error, match=match):
        HashedNgramEmbedder(**SMALL)(inputs)


def test_constructor_errors():
    with pytest.raises(ValueError, match="hidden_dim must be >= 1; got 0"):
        HashedNgramEmbedder(hidden_dim=0)
    with pytest.raises(ValueError, match="out_dim must be >= 1; got 0"):
        HashedNgramEmbedder(embedding_dim=0)
    with pytest.raises(ValueError, match="num_buckets must be >= 2"):
        HashedNgramEmbedder(num_buckets=1)


# ----------------------------------------------------------------------------- collator


def test_collator_packs_texts_labels_and_extra_fields():
    model = HashedNgramEmbedder(**SMALL)
    collate = TextCollator(model)
    ids, labels, index = collate([("lost card", 3, 10), ("card stolen", 4, 11)])
    assert torch.equal(ids, model.encode_batch(["lost card", "card stolen"]))
    assert labels.tolist() == [3, 4] and index.tolist() == [10, 11]
    assert torch.equal(collate(["x", "y"]), model.encode_batch(["x", "y"]))
    assert TextCollator(model.hasher).hasher is model.hasher


def test_collator_errors():
    with pytest.raises(TypeError, match="hasher must be an NgramHasher or a model"):
        TextCollator(torch.nn.Linear(2, 2))
    collate = TextCollator(NgramHasher())
    with pytest.raises(TypeError, match="batch must be a non-empty list"):
        collate([])
    with pytest.raises(TypeError, match=r"batch\[1\] must be a str or a tuple"):
        collate([("a", 1), (2, "b")])
    with pytest.raises(TypeError, match="same number of fields"):
        collate([("a", 1), ("b", 1, 2)])


@pytest.mark.parametrize("cls", [HashedNgramEmbedder, AttentionPooledNgramEmbedder, ConvNgramEmbedder])
@pytest.mark.parametrize("dtype", [None, torch.float32])
def test_pml_trainer_runs_on_collated_texts(dtype, cls):
    texts = [
        "lost my card",
        "card lost",
        "where is my card",
        "card not arrived",
        "exchange rate",
        "rate for euros",
        "currency exchange",
        "what rate do you use",
    ]
    dataset = [(t, i // 4) for i, t in enumerate(texts)]
    model = cls(**SMALL)
    before = model.bag.weight.detach().clone()
    trainer = trainers.MetricLossOnly(
        models={"trunk": model},
        optimizers={"trunk_optimizer": torch.optim.Adam(model.parameters(), lr=1e-2)},
        batch_size=8,
        loss_funcs={"metric_loss": losses.ContrastiveLoss()},
        dataset=dataset,
        collate_fn=TextCollator(model),
        dataloader_num_workers=0,
        dtype=dtype,
    )
    trainer.train(num_epochs=2)
    assert not torch.equal(model.bag.weight.detach(), before)


def test_init_std_sets_the_table_scale_and_is_validated():
    model = HashedNgramEmbedder(num_buckets=2**14, hidden_dim=32, init_std=0.1)
    assert model.bag.weight[1:].std().item() == pytest.approx(0.1, rel=0.05)
    assert (model.bag.weight[0] == 0).all()
    with pytest.raises(ValueError, match="init_std must be > 0; got 0"):
        HashedNgramEmbedder(init_std=0)
    with pytest.raises(TypeError, match="init_std must be a float > 0; got str"):
        HashedNgramEmbedder(init_std="0.1")


# ----------------------------------------------------------------------------- flat ids with offsets


def test_texts_are_pooled_from_flat_ids_as_from_the_padded_matrix():
    model = HashedNgramEmbedder(**SMALL)
    texts = ["lost card", "where is my new card?", "", "café", "exchange rate " * 40]
    ids, offsets = model.hasher.encode_flat(texts)
    padded = model.encode_batch(texts)
    # The flat path sums with PyTorch's fast kernel (no padding_idx): equal up to float32 rounding.
    close = {"rtol": 1e-5, "atol": 1e-7}
    torch.testing.assert_close(model.pool(ids, offsets), model.pool(padded), **close)
    out = model(texts)
    torch.testing.assert_close(out, model(padded), rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), model.bag.weight)[0]
    reference = torch.autograd.grad(model(padded).square().sum(), model.bag.weight)[0]
    torch.testing.assert_close(grads, reference, rtol=1e-4, atol=1e-7)
    assert not model.pool(ids, offsets)[2].any()  # the empty text
    # Any constant IDF is a plain mean too (computed through the weighted branch).
    plain = model.pool(ids, offsets)
    model.idf[1:] = 2.0
    torch.testing.assert_close(model.pool(ids, offsets), plain, **close)
    # Fitted IDF weights.
    model.fit_idf(["lost card", "card arrived", "my card"])
    torch.testing.assert_close(model.pool(ids, offsets), model.pool(padded), **close)
