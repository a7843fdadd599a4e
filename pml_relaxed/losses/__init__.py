"""PML losses for embedding transfer. Each takes ``teacher_emb=`` besides PML's usual arguments."""
from .base_relaxed_loss import BaseRelaxedLoss
from .base_transfer_loss import BaseTransferLoss
from .relaxed_contrastive_loss import RelaxedContrastiveLoss
from .relaxed_multi_similarity_loss import RelaxedMultiSimilarityLoss

__all__ = [
    "BaseTransferLoss",
    "BaseRelaxedLoss",
    "RelaxedContrastiveLoss",
    "RelaxedMultiSimilarityLoss",
]
