"""Samplers for training with PML's trainers on several processes."""

from .distributed_m_per_class_sampler import DistributedMPerClassSampler

__all__ = ["DistributedMPerClassSampler"]
