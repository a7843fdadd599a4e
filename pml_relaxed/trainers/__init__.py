"""PML trainers with a frozen teacher. The only subpackage tied to PML 2.x's trainer API."""

from .embedding_transfer import EmbeddingTransfer

__all__ = ["EmbeddingTransfer"]
