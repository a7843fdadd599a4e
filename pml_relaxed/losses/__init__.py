"""PML losses for embedding transfer. Each takes ``teacher_emb=`` besides PML's usual arguments."""

from .base_relaxed_loss import BaseRelaxedLoss
from .base_transfer_loss import BaseTransferLoss
from .dark_rank_loss import DarkRankLoss
from .fitnet_loss import FitNetLoss
from .hinton_kd_loss import HintonKDLoss
from .pkt_loss import PKTLoss
from .relaxed_contrastive_loss import RelaxedContrastiveLoss
from .relaxed_multi_similarity_loss import RelaxedMultiSimilarityLoss
from .rkd_loss import RKDLoss
from .stml_loss import STMLLoss
from .transfer_batch import TransferBatch
from .transfer_cross_batch_memory import TransferCrossBatchMemory
from .transfer_multiple_losses import TransferMultipleLosses
from .transfer_self_supervised_loss import TransferSelfSupervisedLoss
from .two_view_loss import TwoViewLoss

__all__ = [
    "BaseTransferLoss",
    "BaseRelaxedLoss",
    "RelaxedContrastiveLoss",
    "RelaxedMultiSimilarityLoss",
    "STMLLoss",
    "RKDLoss",
    "PKTLoss",
    "DarkRankLoss",
    "FitNetLoss",
    "HintonKDLoss",
    "TransferCrossBatchMemory",
    "TransferMultipleLosses",
    "TransferSelfSupervisedLoss",
    "TransferBatch",
    "TwoViewLoss",
]
