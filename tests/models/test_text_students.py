"""AttentionPooledNgramEmbedder, ConvNgramEmbedder and TokenNgramHasher: formulas, shapes, gradients, saving, errors."""

import pytest
import torch

from pml_relaxed.models import (
    AttentionPooledNgramEmbedder,
    ConvNgramEmbedder,
    HashedNgramEmbedder,
    NgramDropout,
    NgramHasher,
    TextCollator,
    TokenNgramHasher,
)
from pml_relaxed.models.attention_pooled_ngram_embedder import segment_softmax

SMALL = dict(num_buckets=2**10, hidden_dim=16, mlp_hidden_dims=(32,), embedding_dim=8)
TEXTS = ["I lost my card", "Where is my new card?", "", "café crème, s'il vous plaît", "exchange rate " * 60, "?"]
STUDENTS = [AttentionPooledNgramEmbedder, ConvNgramEmbedder]


def trained_like(cls, **options):
    """A small model whose every parameter differs from a fresh one (as after training)."""
    torch.manual_seed(0)
    model = cls(**{**SMALL, **options})
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


# ----------------------------------------------------------------------------- shapes, paths, determinism


@pytest.mark.parametrize("cls", STUDENTS)
def test_shapes_of_texts_id_matrices_and_encode(cls):
    model = trained_like(cls)
    out = model(TEXTS)
    assert out.shape == (len(TEXTS), 8) and out.dtype == torch.float32 and torch.isfinite(out).all()
    ids = model.encode_batch(TEXTS)
    assert ids.dtype == torch.int64 and ids.ndim == 2
    assert model(ids).shape == (len(TEXTS), 8)
    assert model.encode(TEXTS, batch_size=4).shape == (len(TEXTS), 8)
    assert model.encode([]).shape == (0, 8)


@pytest.mark.parametrize("cls", STUDENTS)
def test_texts_and_their_id_matrix_give_the_same_embeddings_and_gradients(cls):
    model = trained_like(cls)
    ids = model.encode_batch(TEXTS)
    out, out_ids = model(TEXTS), model(ids)
    torch.testing.assert_close(out, out_ids, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(ids.float()), out_ids)  # a trainer's float cast is undone
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    grads_ids = torch.autograd.grad(out_ids.square().sum(), list(model.parameters()))
    for grad, grad_ids in zip(grads, grads_ids):
        torch.testing.assert_close(grad, grad_ids, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls", STUDENTS)
def test_outputs_are_deterministic_and_do_not_depend_on_the_batch(cls):
    first, second = trained_like(cls), trained_like(cls)
    assert torch.equal(first(TEXTS), second(TEXTS))
    alone = torch.cat([first([text]) for text in TEXTS])
    torch.testing.assert_close(first.encode(TEXTS, batch_size=2), alone, rtol=1e-5, atol=1e-6)
    torch.manual_seed(1)
    other = cls(**SMALL)
    assert not torch.allclose(other(TEXTS), first(TEXTS))


@pytest.mark.parametrize("cls", STUDENTS)
def test_every_parameter_gets_a_gradient_and_padding_rows_none(cls):
    model = trained_like(cls)
    model(TEXTS).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert model.bag.weight.grad[0].abs().sum() == 0


def test_sparse_gradients_of_the_tables():
    attention = AttentionPooledNgramEmbedder(sparse=True, **SMALL)
    attention(TEXTS).square().sum().backward()
    assert attention.bag.weight.grad.is_sparse and attention.scores.weight.grad.is_sparse
    conv = ConvNgramEmbedder(sparse=True, **SMALL)
    conv(TEXTS).square().sum().backward()
    assert conv.bag.weight.grad.is_sparse and not conv.conv.weight.grad.is_sparse


# ----------------------------------------------------------------------------- attention pooling: the formula


def test_segment_softmax_matches_a_loop_and_passes_gradcheck():
    scores = torch.randn(9, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([0, 3, 3, 8])  # the second segment is empty
    weights = segment_softmax(scores, offsets)
    bounds = [0, 3, 3, 8, 9]
    expected = torch.cat([torch.softmax(scores[a:b], dim=0) for a, b in zip(bounds, bounds[1:])])
    torch.testing.assert_close(weights, expected)
    assert torch.autograd.gradcheck(lambda s: segment_softmax(s, offsets), (scores,))
    # large scores do not overflow
    assert torch.isfinite(segment_softmax(torch.tensor([1000.0, 999.0]), torch.tensor([0]))).all()


def test_attention_pooling_is_the_idf_and_softmax_weighted_mean_of_a_slow_loop():
    model = trained_like(AttentionPooledNgramEmbedder).double()
    model.fit_idf(["lost card", "card arrived", "my card", "where is it?"])
    texts = ["lost card", "where is my new card?", ""]
    table, scores, idf = model.bag.weight, model.scores.weight[:, 0], model.idf
    rows = []
    for text in texts:
        ids = model.hasher.text_ids(text).tolist()
        pooled = torch.zeros(table.shape[1], dtype=torch.float64)
        if ids:
            total = sum(idf[i] * torch.exp(scores[i]) for i in ids)
            for i in ids:
                pooled = pooled + idf[i] * torch.exp(scores[i]) / total * table[i]
        rows.append(pooled)
    expected = model.head(model.norm(torch.stack(rows)))
    out = model(texts)
    torch.testing.assert_close(out, expected)
    parameters = [table, model.scores.weight]
    grads = torch.autograd.grad(out.sum(), parameters)
    grads_expected = torch.autograd.grad(expected.sum(), parameters)
    for grad, grad_expected in zip(grads, grads_expected):
        torch.testing.assert_close(grad, grad_expected)


def test_untrained_attention_pooling_is_the_hashed_bags_mean():
    torch.manual_seed(0)
    bag = HashedNgramEmbedder(**SMALL)
    attention = AttentionPooledNgramEmbedder(**SMALL)
    attention.load_state_dict({**bag.state_dict(), "scores.weight": attention.scores.weight})
    torch.testing.assert_close(attention(TEXTS), bag(TEXTS), rtol=1e-5, atol=1e-6)
    corpus = ["lost card", "card arrived", "my card"]
    bag.fit_idf(corpus), attention.fit_idf(corpus)  # with zero scores, the softmax is the IDF-weighted mean
    torch.testing.assert_close(attention(TEXTS), bag(TEXTS), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        attention.scores.weight[attention.hasher.text_ids("my")] = 5.0
    assert not torch.allclose(attention(["my card"]), bag(["my card"]))


# ----------------------------------------------------------------------------- convolution: the formula


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_conv_embedding_matches_a_slow_loop_over_tokens(kernel_size):
    model = trained_like(ConvNgramEmbedder, kernel_size=kernel_size).double()
    texts = ["lost my card", "card", "", "a b", "where is my new card now?", "x"]
    half = kernel_size // 2
    rows = []
    for text in texts:
        tokens = model.hasher.tokenize(text)
        vectors = [model.bag.weight[model.hasher.text_ids(token)].mean(dim=0) for token in tokens]
        mixed = []
        for i in range(len(tokens)):
            conv = model.conv.bias.clone()
            for offset in range(-half, half + 1):
                if 0 <= i + offset < len(tokens):
                    conv = conv + model.conv.weight[:, :, offset + half] @ vectors[i + offset]
            mixed.append(vectors[i] + torch.nn.functional.gelu(conv))
        pooled = torch.stack(mixed).mean(dim=0) if mixed else torch.zeros(16, dtype=torch.float64)
        rows.append(pooled)
    expected = model.head(model.norm(torch.stack(rows)))
    out = model(texts)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), [model.bag.weight, model.conv.weight])
    grads_expected = torch.autograd.grad(expected.sum(), [model.bag.weight, model.conv.weight])
    for grad, grad_expected in zip(grads, grads_expected):
        torch.testing.assert_close(grad, grad_expected)


def test_the_convolution_sees_word_order_and_a_bag_does_not():
    conv = trained_like(ConvNgramEmbedder)
    bag = trained_like(HashedNgramEmbedder, word_ngram_range=(1, 1))
    pair = ["card lost", "lost card"]
    torch.testing.assert_close(bag(pair)[0], bag(pair)[1])
    assert not torch.allclose(conv(pair)[0], conv(pair)[1])
    unigram_only = trained_like(ConvNgramEmbedder, kernel_size=1)  # a kernel of 1 token sees no order
    torch.testing.assert_close(unigram_only(pair)[0], unigram_only(pair)[1])


def test_tokens_whose_ids_are_all_dropped_are_left_out():
    model = trained_like(ConvNgramEmbedder)
    ids = model.encode_batch(["lost my card", "card"])
    width = model.hasher.features_per_token
    without_my = ids.clone()
    without_my[0, width : 2 * width] = 0  # every id of "my" dropped
    # a token without ids is no token: its neighbours meet, as in the text without it
    torch.testing.assert_close(model(without_my), model(["lost card", "card"]), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(model(without_my)[0], model(ids)[0])
    views = NgramDropout(0.5, generator=torch.Generator().manual_seed(0))(ids)
    assert views.shape == ids.shape and torch.isfinite(model(views)).all()


# ----------------------------------------------------------------------------- the token hasher


def test_token_hasher_slots_hold_each_tokens_ids_in_order():
    hasher = TokenNgramHasher(num_buckets=2**12, features_per_token=12, max_tokens=3)
    texts = ["Lost my card", "café", "", "a b c d e"]
    matrix = hasher.encode_batch(texts)
    assert matrix.shape == (4, 3 * 12)
    slots = matrix.reshape(4, 3, 12)
    words = NgramHasher(num_buckets=2**12, word_ngram_range=(1, 1), max_features=12)
    for row, text in enumerate(texts):
        tokens = hasher.tokenize(text)[:3]
        for slot in range(3):
            expected = words.text_ids(tokens[slot]) if slot < len(tokens) else torch.zeros(0, dtype=torch.long)
            assert torch.equal(slots[row, slot, : len(expected)], expected), (text, slot)
            assert (slots[row, slot, len(expected) :] == 0).all()
    assert words.text_ids("card").numel() == 10  # the unigram + 9 character n-grams, under features_per_token
    ids, offsets, tokens_per_text = hasher.encode_tokens(texts)
    assert tokens_per_text.tolist() == [3, 1, 0, 3] and len(offsets) == 7 and int(offsets[0]) == 0
    assert hasher.encode_batch([]).shape == (0, 12)


@pytest.mark.parametrize("char_ngram_range", [(3, 5), (2, 2), (0, 0)])
@pytest.mark.parametrize("features_per_token", [1, 4, 12, 64])
@pytest.mark.parametrize("non_ascii", [False, True])
def test_token_hasher_batches_give_each_tokens_own_ids(char_ngram_range, features_per_token, non_ascii):
    # ASCII batches are hashed at once with NumPy, others token by token: the same ids as NgramHasher's per token
    hasher = TokenNgramHasher(
        num_buckets=2**12, char_ngram_range=char_ngram_range, features_per_token=features_per_token
    )
    texts = ["Where is my internationalisation fee?", "", "a b", "top-up failed!!", "I"]
    texts += ["crème brûlée"] if non_ascii else []
    words = NgramHasher(2**12, char_ngram_range, word_ngram_range=(1, 1), max_features=features_per_token)
    ids, offsets, tokens_per_text = hasher.encode_tokens(texts)
    tokens = [token for text in texts for token in hasher.tokenize(text)]
    assert tokens_per_text.tolist() == [len(hasher.tokenize(text)) for text in texts]
    bounds = offsets.tolist() + [len(ids)]
    assert [ids[a:b].tolist() for a, b in zip(bounds, bounds[1:])] == [words.text_ids(t).tolist() for t in tokens]


def test_token_hasher_truncates_long_tokens_to_features_per_token():
    hasher = TokenNgramHasher(num_buckets=2**12, features_per_token=4)
    ids, offsets, _ = hasher.encode_tokens(["internationalisation"])
    assert ids.numel() == 4 and offsets.tolist() == [0]


@pytest.mark.parametrize("cls", STUDENTS)
def test_the_collator_builds_the_students_own_id_matrix(cls):
    model = cls(**SMALL)
    ids, labels = TextCollator(model)([("lost my card", 3), ("card lost", 3)])
    assert torch.equal(ids, model.encode_batch(["lost my card", "card lost"])) and labels.tolist() == [3, 3]
    # (a PML trainer on collated texts, for every student: tests/models/test_hashed_ngram_embedder.py)


# ----------------------------------------------------------------------------- saving and loading


# (the round trip of save_pretrained / from_pretrained: tests/models/test_hashed_ngram_sentence_module.py)


def test_a_folder_loads_only_as_the_class_it_names(tmp_path):
    trained_like(ConvNgramEmbedder).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="must describe a AttentionPooledNgramEmbedder"):
        AttentionPooledNgramEmbedder.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="must describe a HashedNgramEmbedder"):
        HashedNgramEmbedder.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    "cls, options, error, match",
    [
        (ConvNgramEmbedder, {"kernel_size": 2}, ValueError, "kernel_size must be odd .*; got 2"),
        (ConvNgramEmbedder, {"kernel_size": 0}, ValueError, "kernel_size must be >= 1; got 0"),
        (ConvNgramEmbedder, {"kernel_size": 3.0}, TypeError, "kernel_size must be an int >= 1; got float"),
        (ConvNgramEmbedder, {"features_per_token": 0}, ValueError, "features_per_token must be >= 1; got 0"),
        (ConvNgramEmbedder, {"max_tokens": 0}, ValueError, "max_tokens must be >= 1; got 0"),
        (ConvNgramEmbedder, {"hidden_dim": 0}, ValueError, "hidden_dim must be >= 1; got 0"),
        (ConvNgramEmbedder, {"char_ngram_range": (3,)}, TypeError, "char_ngram_range must be a pair of ints"),
        (AttentionPooledNgramEmbedder, {"init_std": 0}, ValueError, "init_std must be > 0; got 0"),
        (AttentionPooledNgramEmbedder, {"init_std": "0.1"}, TypeError, "init_std must be a float > 0; got str"),
        (AttentionPooledNgramEmbedder, {"num_buckets": 1}, ValueError, "num_buckets must be >= 2"),
        (AttentionPooledNgramEmbedder, {"embedding_dim": 0}, ValueError, "out_dim must be >= 1; got 0"),
        (AttentionPooledNgramEmbedder, {"word_ngram_range": (1, 3)}, ValueError, "word_ngram_range must have high"),
    ],
)
def test_constructor_errors_name_the_argument(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls(**{**SMALL, **options})


@pytest.mark.parametrize("cls", STUDENTS)
@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ("a string", TypeError, "inputs must be a list of str or a"),
        (torch.tensor([1, 2]), ValueError, r"2D \(batch, length\) id matrix; got shape \(2,\)"),
        (torch.tensor([[1.5] * 32]), ValueError, "must hold integer bucket ids"),
        (torch.tensor([[2**10] * 32]), ValueError, r"ids must be in \[0, 1024\); got values in \[1024, 1024\]"),
        (torch.tensor([[True] * 32]), TypeError, "must be an integer tensor; got dtype torch.bool"),
        (["ok", None], TypeError, r"texts\[1\] must be a str; got NoneType"),
    ],
)
def test_forward_errors_name_the_input(cls, inputs, error, match):
    with pytest.raises(error, match=match):
        cls(**SMALL)(inputs)


def test_conv_rejects_an_id_matrix_of_another_layout():
    model = ConvNgramEmbedder(**SMALL)
    with pytest.raises(ValueError, match=r"multiple of features_per_token=32 columns .*; got 45 columns"):
        model(torch.ones(2, 45, dtype=torch.long))


@pytest.mark.parametrize("cls", STUDENTS)
def test_encode_errors_name_the_argument(cls):
    model = cls(**SMALL)
    with pytest.raises(TypeError, match="texts must be a list of str; got str"):
        model.encode("a single string")
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        model.encode(TEXTS, batch_size=0)
    with pytest.raises(TypeError, match="path must be a str or a path; got int"):
        cls.from_pretrained(3)
