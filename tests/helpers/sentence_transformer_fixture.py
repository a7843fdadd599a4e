"""A tiny, genuine sentence-transformers model built offline: a 1-layer BERT over a word-piece vocabulary of the
Banking77 fixture's words, mean pooling and a Dense layer to ``dim`` (not MiniLM: another width, other weights)."""

from pathlib import Path

WORDS = "where is my card transfer refund pin atm cash top up exchange rate please how do i get".split()


def make_sentence_transformer(folder: Path, dim: int = 24, seed: int = 0) -> Path:
    """Saves the model as a sentence-transformers folder ``folder`` (created) and returns it."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *map(str, range(10)), ",", "?"]
    raw = folder.parent / f"{folder.name}-transformer"
    raw.mkdir(parents=True)
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt")).save_pretrained(str(raw))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(raw))
    transformer = models.Transformer(str(raw), max_seq_length=32)
    modules = [transformer, models.Pooling(32, "mean"), models.Dense(32, dim, activation_function=torch.nn.Tanh())]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder
