"""Datasets: digits (embedded default), Omniglot, CUB/Cars/SOP wrappers, Banking77, multi-view wrapper."""
from .digits import Digits
from .multi_view import MultiViewDataset, multi_view_collate

__all__ = ["Digits", "MultiViewDataset", "multi_view_collate"]
