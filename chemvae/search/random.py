"""Random search: decode draws from the VAE prior (the ``random`` method).

The baseline every search is compared with: same decoder, same oracle, same budget,
no model of the objective. It ignores the initial molecules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torch.distributions import Distribution

from chemvae.search.oracle import Evaluation
from vaecore.errors import integer_at_least


class RandomSearch:
    """Propose ``batch_size`` latents z ~ p(z) per iteration.

    Args:
        prior: The VAE prior (a distribution with event shape `[d]`).
        batch_size: Latents per iteration.
    """

    name = "random"
    uses_init = False
    uses_decodable = False

    def __init__(self, prior: Distribution, batch_size: int) -> None:
        self.prior = prior
        self.q = integer_at_least("batch_size", batch_size, 1)

    def initialize(self, z: Tensor, scores: Tensor, decodable: Tensor | None = None) -> None:
        """Random search uses no initial data."""

    def observe(self, z: Tensor, evaluations: Sequence[Evaluation]) -> None:
        """Random search learns nothing from its results."""

    def propose(self) -> tuple[Tensor, dict[str, Any]]:
        """``batch_size`` prior draws `[q, d]` (from torch's global generator, seeded by the loop)."""
        return self.prior.sample((self.q,)), {}
