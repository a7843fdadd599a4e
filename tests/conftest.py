import os
from pathlib import Path

import pytest
import torch

#: The tests read the real Omniglot / Banking77 from the sibling folder ../shared/datasets of the checkout,
#: through the library's documented variable (an explicit PML_RELAXED_DATA, or a per-dataset variable, wins).
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
os.environ.setdefault("PML_RELAXED_DATA", str(SHARED_DATASETS))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
