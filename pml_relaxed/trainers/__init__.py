"""PML trainers with a frozen teacher, and exact resumption of PML runs. The only subpackage tied to PML 2.x's
trainer API."""

from .embedding_transfer import EmbeddingTransfer
from .resume import RandomState, load_unwrapped_state_dicts, register_training_state

__all__ = ["EmbeddingTransfer", "RandomState", "load_unwrapped_state_dicts", "register_training_state"]
