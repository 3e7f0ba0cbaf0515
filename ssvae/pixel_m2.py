"""M2 on pixels: the model view that ``vaelab fewlabel --model m2`` trains."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssvae.m2 import M2
from ssvae.m2_config import M2Config


class PixelM2(nn.Module):
    """M2 on pixels: the input view the training loop sees for ``--model m2``.

    Training rows are the grey-level pixels; every batch is binarized afresh (dynamic
    binarization, for the Bernoulli likelihood), evaluation uses the grey levels.

    Args:
        config: M2's architecture (``likelihood="bernoulli"`` for pixels).
        binarize: Draw a fresh Bernoulli sample of each training batch.
    """

    kind = "m2"

    def __init__(self, config: M2Config, *, binarize: bool = True) -> None:
        super().__init__()
        self.m2 = M2(config)
        self.binarize = binarize

    @torch.no_grad()
    def rows(self, x: Tensor) -> Tensor:
        """The stored training representation of pixels `[N, D]`: the pixels themselves."""
        return x

    def sample(self, rows: Tensor) -> Tensor:
        """A stochastic training input for rows `[B, D]`."""
        return torch.bernoulli(rows) if self.binarize else rows

    def mean(self, rows: Tensor) -> Tensor:
        """The deterministic (test-time) input for rows `[B, D]`."""
        return rows

    def logits(self, x: Tensor) -> Tensor:
        """Class logits for pixels `[B, D]`, `[B, C]`."""
        return self.m2.logits(x)

    def bayes_logits(self, x: Tensor, *, k: int, seed: int | None = None) -> Tensor:
        """:meth:`M2.bayes_logits` for pixels `[B, D]`, `[B, C]`."""
        return self.m2.bayes_logits(x, k=k, seed=seed)

    @torch.no_grad()
    def generate(self, y: Tensor, z: Tensor) -> Tensor:
        """Pixel means of p(x|y,z), `[B, D]`."""
        return self.m2.generate(y, z)

    @torch.no_grad()
    def latent(self, x: Tensor) -> Tensor:
        """The latent code shown in t-SNE plots: E q(z|x, y_hat), `[B, z]`."""
        return self.m2.encode(x)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Pixel means of p(x|y_hat, E q(z|x,y_hat)), `[B, D]`."""
        y = self.m2.logits(x).argmax(-1)
        return self.m2.generate(y, self.m2.encode(x, y))
