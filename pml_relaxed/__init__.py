"""pml-relaxed: embedding transfer with label relaxation for pytorch-metric-learning."""

__version__ = "0.1.0"

from . import functional, losses, miners, similarities  # noqa: E402

__all__ = ["functional", "losses", "miners", "similarities", "__version__"]
