"""M2: the semi-supervised generative model p(y) p(z) p(x|y,z) of Kingma et al. (2014).

Generative model: y ~ Cat(1/C) (uniform), z ~ N(0, I), x ~ p(x|y,z) (Bernoulli for
pixels, a Gaussian with learned diagonal variance for M1 features). Inference model:
a classifier q(y|x) and an encoder q(z|x,y). The objective over a labelled set L and an
unlabelled set U is

    J = sum_{(x,y) in L} [-L(x,y) - alpha log q(y|x)]  +  sum_{x in U} -U(x),

    L(x,y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z)),
    U(x)   = sum_y q(y|x) L(x,y) + H(q(y|x)).

``L(x,y)`` is :func:`vaecore.elbo` with closures binding ``y``; ``U(x)`` evaluates it for
all C classes in *one* batched pass over a `[C * B]` batch (no Python loop over classes).
The model is generic over its input likelihood: any object of
:mod:`vaecore.likelihoods` named by ``M2Config.likelihood``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution

from vaecore.bounds import ELBOTerms, elbo
from vaecore.likelihoods import make_likelihood
from vaecore.nets import mlp
from vaecore.posteriors import DiagonalGaussianHead, StandardNormalPrior


@dataclass(frozen=True)
class M2Config:
    """Architecture of M2.

    Attributes:
        x_dim: Input size D (784 for MNIST pixels, the number of active z1 dims for M1+M2).
        n_classes: Number of classes C.
        z_dim: Size of the continuous latent z (z2 in M1+M2).
        hidden: Hidden widths of encoder and decoder (paper: one layer, 300 at 100
            labels, 500 otherwise).
        classifier_hidden: Hidden widths of q(y|x); ``None`` means ``hidden``.
        activation: Nonlinearity (paper: softplus).
        likelihood: ``bernoulli`` (pixels) or ``gaussian`` (learned diagonal variance).
        batch_norm: Batch normalisation before each hidden activation (not in the paper).
    """

    x_dim: int = 784
    n_classes: int = 10
    z_dim: int = 50
    hidden: tuple[int, ...] = (500,)
    classifier_hidden: tuple[int, ...] | None = None
    activation: str = "softplus"
    likelihood: str = "bernoulli"
    batch_norm: bool = False


def _apply_2d(net: nn.Module, h: Tensor) -> Tensor:
    """Run ``net`` on `[..., k]` by flattening the leading dims (BatchNorm1d wants 2-D)."""
    lead = h.shape[:-1]
    out = net(h.reshape(-1, h.shape[-1]))
    return out.reshape(*lead, out.shape[-1])


class M2(nn.Module):
    """Classifier q(y|x), encoder q(z|x,y) and decoder p(x|y,z) with their bound.

    Args:
        config: The architecture.
    """

    def __init__(self, config: M2Config) -> None:
        super().__init__()
        self.config = config
        c = config
        act, bn = c.activation, c.batch_norm
        cls_hidden = c.hidden if c.classifier_hidden is None else c.classifier_hidden
        self.classifier = mlp(c.x_dim, cls_hidden, c.n_classes, activation=act, batch_norm=bn)
        self.encoder_net = mlp(c.x_dim + c.n_classes, c.hidden, activation=act, batch_norm=bn)
        self.encoder_head = DiagonalGaussianHead(c.hidden[-1], c.z_dim)
        self.likelihood = make_likelihood(c.likelihood)
        self.decoder_net = mlp(c.z_dim + c.n_classes, c.hidden,
                               c.x_dim * self.likelihood.params_per_feature, activation=act, batch_norm=bn)
        self.prior = StandardNormalPrior(c.z_dim)
        # log p(y) of the uniform label prior: a constant, kept so the bound is the true one.
        self.log_py = -math.log(c.n_classes)

    # --- the three networks ---------------------------------------------------------

    def logits(self, x: Tensor) -> Tensor:
        """Unnormalised log q(y|x), `[B, C]`."""
        return self.classifier(x)

    def q_y(self, x: Tensor) -> Categorical:
        """q(y|x) with batch shape `[B]`."""
        return Categorical(logits=self.logits(x))

    def q_z(self, x: Tensor, y: Tensor) -> Distribution:
        """q(z|x,y) for inputs `[B, D]` and one-hot labels `[B, C]`; batch `[B]`, event `[z]`."""
        return self.encoder_head(_apply_2d(self.encoder_net, torch.cat([x, y], -1)))

    def p_x(self, z: Tensor, y: Tensor) -> Distribution:
        """p(x|y,z) for z `[S, B, z]` and one-hot y `[B, C]`; batch shape `[S, B]`."""
        y = y.expand(*z.shape[:-1], y.shape[-1])
        return self.likelihood(_apply_2d(self.decoder_net, torch.cat([z, y], -1)))

    def one_hot(self, y: Tensor) -> Tensor:
        """Integer labels `[B]` as float one-hot rows `[B, C]`."""
        return F.one_hot(y, self.config.n_classes).to(self.prior.loc.dtype)

    # --- bounds -----------------------------------------------------------------------

    def labelled_bound(self, x: Tensor, y: Tensor, *, beta: float | Tensor = 1.0) -> ELBOTerms:
        """The ELBO of p(x|y) (without log p(y)) for one-hot labels ``y`` `[B, C]`; `[B]` terms."""
        return elbo(x, encoder=lambda x_: self.q_z(x_, y), decoder=lambda z: self.p_x(z, y),
                    prior=self.prior, beta=beta)

    @staticmethod
    def _enumerate(x: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
        """Repeat `[B, D]` inputs for every class: `[C * B, D]` and one-hot `[C * B, C]`.

        Row ``c * B + b`` pairs example ``b`` with class ``c``.
        """
        batch = x.shape[0]
        x_all = x.unsqueeze(0).expand(n_classes, *x.shape).reshape(n_classes * batch, *x.shape[1:])
        eye = torch.eye(n_classes, dtype=x.dtype, device=x.device)
        y_all = eye.unsqueeze(1).expand(n_classes, batch, n_classes).reshape(n_classes * batch, n_classes)
        return x_all, y_all

    def enumerated_bound(self, x: Tensor, *, beta: float | Tensor = 1.0) -> Tensor:
        """L(x, y) (including log p(y)) for every class y at once, `[C, B]`.

        One :func:`vaecore.elbo` call on the `[C * B]` batch of (example, class) pairs.
        """
        x_all, y_all = self._enumerate(x, self.config.n_classes)
        terms = self.labelled_bound(x_all, y_all, beta=beta)
        return terms.elbo.reshape(self.config.n_classes, x.shape[0]) + self.log_py

    @staticmethod
    def unlabelled_bound(bound_cy: Tensor, q_y: Categorical, entropy_weight: float = 1.0) -> Tensor:
        """U(x) = sum_y q(y|x) L(x,y) + w H(q(y|x)), `[B]`, from L `[C, B]` and q(y|x) `[B]`.

        ``entropy_weight`` w = 1 is the bound. w < 1 moves the optimal q(y|x) from
        softmax(L) to the sharper softmax(L / w): entropy minimisation on unlabelled data.
        """
        return (q_y.probs.T * bound_cy).sum(0) + entropy_weight * q_y.entropy()

    # --- the objective ------------------------------------------------------------------

    def loss_terms(
        self,
        x_l: Tensor,
        y_l: Tensor,
        x_u: Tensor,
        *,
        alpha: float,
        beta: float | Tensor = 1.0,
        labelled_weight: float = 1.0,
        unlabelled_weight: float = 1.0,
        entropy_weight: float = 1.0,
    ) -> dict[str, Tensor]:
        """The semi-supervised objective on one labelled and one unlabelled batch.

        ``loss = labelled_weight * mean_l[-L(x,y) - alpha log q(y|x)]
        + unlabelled_weight * mean_u[-U(x)]``. With ``labelled_weight = N_l / N``,
        ``unlabelled_weight = N_u / N`` and ``alpha = 0.1 N / N_l`` this is the paper's
        objective per training example, J / N.

        The labelled pairs and the C enumerated copies of the unlabelled batch go through
        the encoder and decoder together, in one :func:`vaecore.elbo` call over
        `[C * B_u + B_l]` rows, and both batches through the classifier together: one
        pass each, and batch statistics (batch norm) over labelled and unlabelled data.

        Args:
            x_l: Labelled inputs, `[B_l, D]`.
            y_l: Their integer labels, `[B_l]`.
            x_u: Unlabelled inputs, `[B_u, D]`.
            alpha: Weight of the classification term log q(y|x).
            beta: KL weight (warm-up; 1 is the true bound).
            labelled_weight, unlabelled_weight: Weights of the two batch means.
            entropy_weight: Weight of H(q(y|x)) in U(x) (1 = the bound, see
                :meth:`unlabelled_bound`).

        Returns:
            Scalars (tensors on the inputs' device, no host sync): ``loss``;
            ``labelled_bound`` and ``unlabelled_bound`` (mean L and U, nats);
            ``cross_entropy`` (mean -log q(y|x) on the labelled batch); ``kl`` (mean KL of
            the unlabelled batch, weighted by q(y|x)); ``labelled_accuracy``.
        """
        n_classes, n_l, n_u = self.config.n_classes, x_l.shape[0], x_u.shape[0]
        x_enum, y_enum = self._enumerate(x_u, n_classes)
        terms = self.labelled_bound(torch.cat([x_enum, x_l]), torch.cat([y_enum, self.one_hot(y_l)]), beta=beta)
        bound = terms.elbo + self.log_py
        bound_cy, bound_l = bound[: n_classes * n_u].reshape(n_classes, n_u), bound[n_classes * n_u:]

        logits = self.logits(torch.cat([x_l, x_u]))
        q_y_l, q_y_u = Categorical(logits=logits[:n_l]), Categorical(logits=logits[n_l:])
        log_q_y = q_y_l.log_prob(y_l)
        bound_u = self.unlabelled_bound(bound_cy, q_y_u, entropy_weight)

        loss = (labelled_weight * (-bound_l - alpha * log_q_y).mean()
                + unlabelled_weight * (-bound_u).mean())
        kl_u = (q_y_u.probs.T * terms.kl[: n_classes * n_u].reshape(n_classes, n_u)).sum(0)
        return {
            "loss": loss,
            "labelled_bound": bound_l.mean().detach(),
            "unlabelled_bound": bound_u.mean().detach(),
            "cross_entropy": -log_q_y.mean().detach(),
            "kl": kl_u.mean().detach(),
            "labelled_accuracy": (logits[:n_l].argmax(-1) == y_l).float().mean().detach(),
        }

    # --- using the trained model -------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """q(y|x), `[B, C]` (call ``eval()`` first when batch norm is on)."""
        return self.logits(x).softmax(-1)

    @torch.no_grad()
    def generate(self, y: Tensor, z: Tensor) -> Tensor:
        """Mean of p(x|y,z) for integer labels `[B]` and latents `[B, z]`, `[B, D]`."""
        return self.p_x(z.unsqueeze(0), self.one_hot(y)).mean.squeeze(0)

    @torch.no_grad()
    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Posterior mean of q(z|x,y), `[B, z]`; ``y`` defaults to the predicted class."""
        y = self.logits(x).argmax(-1) if y is None else y
        return self.q_z(x, self.one_hot(y)).mean


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
