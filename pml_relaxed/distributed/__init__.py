"""PML's distributed wrappers for teacher-fed losses and miners: the global batch of all DDP ranks, exact."""

from .distributed_transfer_loss_wrapper import DistributedTransferLossWrapper
from .distributed_transfer_miner_wrapper import DistributedTransferMinerWrapper

__all__ = ["DistributedTransferLossWrapper", "DistributedTransferMinerWrapper"]
