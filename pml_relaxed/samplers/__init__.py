"""Samplers for PML's trainers: class-balanced batches on several processes, and STML's nearest-neighbour
batches."""

from .distributed_m_per_class_sampler import DistributedMPerClassSampler
from .nearest_neighbour_batch_sampler import NearestNeighbourBatchSampler, nearest_neighbour_table

__all__ = ["DistributedMPerClassSampler", "NearestNeighbourBatchSampler", "nearest_neighbour_table"]
