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
Its input likelihood is any object of :mod:`vaecore.likelihoods` (``M2Config.likelihood``).

With ``M2Config.aux_dim > 0`` it is the auxiliary deep generative model (ADGM, Maaloe
et al. 2016): an auxiliary latent a ~ q(a|x) feeds the classifier q(y|a,x) and the
encoder q(z|a,y,x), the generative side gains p(a|x,y,z), and L(x,y) gains
log p(a|x,y,z) - log q(a|x). One draw of a per example is shared by its C enumerated
copies, so U(x) stays sum_y q(y|a,x) L(x,y) + H(q(y|a,x)) inside E_q(a|x).

With ``M2Config.context_dim > 0`` each input row carries, after the ``x_dim`` modelled
values, a context c that only the classifier sees: q(y|x,c). M1+M2 passes the pixels
this way, so that its q(y|.) can be a convolutional net on the image while p(z1|y,z2)
models z1. Any q(y|.) gives a lower bound on log p(x), so the bound stays valid.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution

from ssvae.m2_config import M2Config
from vaecore.bounds import ELBOTerms, elbo, iwae_bound
from vaecore.errors import InputDataError, integer_at_least
from vaecore.likelihoods import make_likelihood
from vaecore.nets import ConvNet, apply_flat, finish_first_layer, first_layer_share, mlp
from vaecore.posteriors import DiagonalGaussianHead, StandardNormalPrior
from vaecore.runtime import check_seed


class Pairs(NamedTuple):
    """The rows of one bound pass (see :meth:`M2._pairs`); `N = C * B_u + B_l` pairs.

    Attributes:
        x: Inputs, `[N, D]`.
        y: One-hot labels, `[N, C]`.
        h: The encoder's input share, `[N, H]`.
        inputs: What the classifier sees for the `B_u + B_l` distinct examples,
            unlabelled first: x, or [x, a] with the auxiliary draw a, after the context c
            when there is one, `[B_u + B_l, (K +) D (+ A)]`.
        a: The auxiliary draws of the pairs, `[N, A]` (``None`` for plain M2).
        log_q_a: log q(a|x) of those draws, `[N]` (``None`` for plain M2).
        g: The share W_x x + b of p(a|x,y,z)'s first layer, `[N, H]` (``None`` for plain M2).
    """

    x: Tensor
    y: Tensor
    h: Tensor
    inputs: Tensor
    a: Tensor | None = None
    log_q_a: Tensor | None = None
    g: Tensor | None = None


def _categorical(logits: Tensor) -> Categorical:
    """q(y|x) from logits `[B, C]`, unvalidated.

    Argument validation reads the logits (and ``log_prob``'s labels) on the host: on a
    GPU that is a device sync in every training step. The logits come from a network
    and labels are checked when a data set is loaded, so there is nothing to validate.
    """
    return Categorical(logits=logits, validate_args=False)


class M2(nn.Module):
    """Classifier q(y|x), encoder q(z|x,y) and decoder p(x|y,z) with their bound.

    Args:
        config: The architecture.
    """

    def __init__(self, config: M2Config) -> None:
        super().__init__()
        config.check_images()
        self.config = config
        c = config
        act, bn = c.activation, c.batch_norm
        cls_hidden = c.hidden if c.classifier_hidden is None else c.classifier_hidden
        # q(y|.) and q(z|., y) see x, or x and the auxiliary a: `in_dim` inputs; q(y|.)
        # sees the context c before them (first, where a ConvNet expects its pixels).
        self.in_dim = c.x_dim + c.aux_dim
        if c.classifier_channels:
            assert c.image_shape is not None  # check_images
            extra = self.in_dim if c.context_dim else c.aux_dim
            self.classifier = ConvNet(c.image_shape, c.classifier_channels, cls_hidden, c.n_classes,
                                      activation=act, batch_norm=bn, extra_features=extra)
        else:
            self.classifier = mlp(c.context_dim + self.in_dim, cls_hidden, c.n_classes, activation=act, batch_norm=bn)
        self.encoder_net = mlp(self.in_dim + c.n_classes, c.hidden, activation=act, batch_norm=bn)
        self.encoder_head = DiagonalGaussianHead(c.hidden[-1], c.z_dim)
        self.likelihood = make_likelihood(c.likelihood)
        self.decoder_net = mlp(c.z_dim + c.n_classes, c.hidden,
                               c.x_dim * self.likelihood.params_per_feature, activation=act, batch_norm=bn)
        self.prior = StandardNormalPrior(c.z_dim)
        if c.aux_dim:
            self.aux_encoder = nn.Sequential(mlp(c.x_dim, c.hidden, activation=act, batch_norm=bn),
                                             DiagonalGaussianHead(c.hidden[-1], c.aux_dim))
            # p(a|x,y,z) on [x, y, z]; its first layer is split like the encoder's.
            self.aux_decoder_net = mlp(c.x_dim + c.n_classes + c.z_dim, c.hidden, activation=act, batch_norm=bn)
            self.aux_decoder_head = DiagonalGaussianHead(c.hidden[-1], c.aux_dim)
        # log p(y) of the uniform label prior: a constant, kept so the bound is the true one.
        self.log_py = -math.log(c.n_classes)

    # --- the networks ------------------------------------------------------------------

    def logits(self, x: Tensor) -> Tensor:
        """Unnormalised log q(y|x), `[B, C]`; with ``aux_dim``, q(y|a,x) at the mean of q(a|x)."""
        return self.classifier(self.classifier_input(x, self.inference_input(x)[0]))

    def classifier_input(self, x: Tensor, inputs: Tensor) -> Tensor:
        """q(y|.)'s input from input rows ``x`` `[B, D (+ K)]` and :meth:`inference_input` `[B, in_dim]`.

        ``inputs`` itself, or [c, inputs] with the rows' context c, `[B, K + in_dim]`.
        """
        if not self.config.context_dim:
            return inputs
        return torch.cat([x[:, self.config.x_dim:], inputs], -1)

    def inference_input(self, x: Tensor, *, sample: bool = False) -> tuple[Tensor, Tensor | None]:
        """What the classifier and encoder see for inputs `[B, D (+ K)]`, and log q(a|x).

        A context (``context_dim``) is dropped: only :meth:`classifier_input` adds it.

        Plain M2: ``(x, None)``. ADGM: ``([x, a], log q(a|x))`` `([B, D + A], [B])`, with a
        drawn from q(a|x) if ``sample`` (training) and its mean otherwise (prediction:
        deterministic and one pass, where the reference averaged many draws), and then
        ``None`` for the log density.
        """
        x = x[:, :self.config.x_dim]
        if not self.config.aux_dim:
            return x, None
        q_a = self.aux_encoder(x)
        if not sample:
            return torch.cat([x, q_a.mean], -1), None
        a = q_a.rsample()
        return torch.cat([x, a], -1), q_a.log_prob(a)

    def q_y(self, x: Tensor) -> Categorical:
        """q(y|x) with batch shape `[B]`."""
        return _categorical(self.logits(x))

    def q_z(self, x: Tensor, y: Tensor) -> Distribution:
        """q(z|x,y) for inputs `[B, D (+ K)]` and one-hot labels `[B, C]`; batch `[B]`, event `[z]`.

        With ``aux_dim``, q(z|a,x,y) at the mean of q(a|x).
        """
        return self.q_z_from(self.encoder_input(self.inference_input(x)[0]), y)

    def encoder_input(self, x: Tensor) -> Tensor:
        """The inputs' share W_x x + b of the encoder's first layer, `[B, H]`.

        ``x`` is :meth:`inference_input`'s first output, `[B, in_dim]`. The first layer
        acts on [x, y] and is split (see :func:`vaecore.nets.first_layer_share`): the costly
        x share is computed once per example, not once per (example, class) pair.
        """
        return first_layer_share(self.encoder_net, x, self.in_dim)

    def q_z_from(self, h_x: Tensor, y: Tensor) -> Distribution:
        """q(z|x,y) from :meth:`encoder_input` `[B, H]` and one-hot labels `[B, C]`."""
        return self.encoder_head(finish_first_layer(self.encoder_net, h_x, y, self.in_dim))

    def p_a(self, g: Tensor, y: Tensor, z: Tensor) -> Distribution:
        """p(a|x,y,z) from the x share ``g`` `[N, H]`, one-hot y `[N, C]` and z `[S, N, z]`; batch `[S, N]`."""
        v = torch.cat([y.expand(*z.shape[:-1], y.shape[-1]), z], -1)
        return self.aux_decoder_head(finish_first_layer(self.aux_decoder_net, g, v, self.config.x_dim))

    def p_x(self, z: Tensor, y: Tensor) -> Distribution:
        """p(x|y,z) for z `[S, B, z]` and one-hot y `[B, C]`; batch shape `[S, B]`."""
        y = y.expand(*z.shape[:-1], y.shape[-1])
        return self.likelihood(apply_flat(self.decoder_net, torch.cat([z, y], -1)))

    def one_hot(self, y: Tensor) -> Tensor:
        """Integer labels `[B]` as float one-hot rows `[B, C]`."""
        return F.one_hot(y, self.config.n_classes).to(self.prior.loc.dtype)

    # --- bounds -----------------------------------------------------------------------

    def labelled_bound(
        self, x: Tensor, y: Tensor, *, beta: float | Tensor = 1.0, h_x: Tensor | None = None
    ) -> ELBOTerms:
        """The z-part of the ELBO of p(x|y) for one-hot labels ``y`` `[B, C]`; `[B]` terms.

        Without log p(y), and with ``aux_dim`` without a's term (:meth:`bound` has both).
        ``h_x`` `[B, H]` is :meth:`encoder_input` of the inputs when the caller already has
        it; otherwise q(z|.) uses the mean of q(a|x). A context in ``x`` is not modelled.
        """
        x = x[:, :self.config.x_dim]
        h_x = self.encoder_input(self.inference_input(x)[0]) if h_x is None else h_x
        return elbo(x, encoder=lambda _: self.q_z_from(h_x, y), decoder=lambda z: self.p_x(z, y),
                    prior=self.prior, beta=beta)

    def _pairs(self, x_u: Tensor, x_l: Tensor | None = None, y_l: Tensor | None = None) -> Pairs:
        """The rows of one bound pass: every (unlabelled example, class) pair, then the labelled pairs.

        Row ``c * B_u + b`` pairs unlabelled example ``b`` with class ``c``; the labelled
        pairs follow. Per-example work (the auxiliary draw, :meth:`encoder_input`, the x
        share of p(a|x,y,z)) runs on the `B_u + B_l` distinct examples and is repeated,
        not recomputed, for the C copies of each unlabelled one.

        Args:
            x_u: Unlabelled inputs, `[B_u, D (+ K)]`.
            x_l: Labelled inputs, `[B_l, D (+ K)]` (none if omitted).
            y_l: Their integer labels, `[B_l]`.
        """
        n_classes, n_u = self.config.n_classes, x_u.shape[0]
        if x_l is None:
            x_l, y_l = x_u[:0], torch.zeros(0, dtype=torch.long, device=x_u.device)

        def per_pair(t: Tensor) -> Tensor:
            return torch.cat([t[:n_u].repeat(n_classes, *([1] * (t.dim() - 1))), t[n_u:]])

        rows = torch.cat([x_u, x_l])
        inputs, log_q_a = self.inference_input(rows, sample=True)
        x = rows[:, :self.config.x_dim]
        eye = torch.eye(n_classes, dtype=self.prior.loc.dtype, device=x_u.device)
        y_all = torch.cat([eye.repeat_interleave(n_u, dim=0), self.one_hot(y_l)])
        pairs = Pairs(x=per_pair(x), y=y_all, h=per_pair(self.encoder_input(inputs)),
                      inputs=self.classifier_input(rows, inputs))
        if log_q_a is None:
            return pairs
        g = first_layer_share(self.aux_decoder_net, x, self.config.x_dim)
        return pairs._replace(a=per_pair(inputs[:, self.config.x_dim:]), log_q_a=per_pair(log_q_a), g=per_pair(g))

    def _pair_bounds(self, pairs: Pairs, *, beta: float | Tensor = 1.0) -> tuple[Tensor, ELBOTerms]:
        """L(x, y) (including log p(y), and the auxiliary term with ``aux_dim``) per pair, `[N]`.

        One :func:`vaecore.elbo` call over all the pairs; also returns its terms.
        """
        terms = self.labelled_bound(pairs.x, pairs.y, beta=beta, h_x=pairs.h)
        bound = terms.elbo + self.log_py
        if pairs.a is not None:
            # log p(a|x,y,z) - log q(a|x): a's share of the bound, on the ELBO's own z draws.
            bound = bound + self.p_a(pairs.g, pairs.y, terms.z).log_prob(pairs.a).mean(0) - pairs.log_q_a
        return bound, terms

    def bound(self, x: Tensor, y: Tensor, *, beta: float | Tensor = 1.0) -> Tensor:
        """L(x, y) (including log p(y)) for inputs `[B, D]` and integer labels `[B]`, `[B]`."""
        return self._pair_bounds(self._pairs(x[:0], x, y), beta=beta)[0]

    def enumerated_bound(self, x: Tensor, *, beta: float | Tensor = 1.0) -> Tensor:
        """L(x, y) (including log p(y)) for every class y at once, `[C, B]`.

        One :func:`vaecore.elbo` call on the `[C * B]` batch of (example, class) pairs.
        """
        return self._pair_bounds(self._pairs(x), beta=beta)[0].reshape(self.config.n_classes, x.shape[0])

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
            x_l: Labelled inputs, `[B_l, D (+ K)]` (K: ``context_dim``).
            y_l: Their integer labels, `[B_l]`.
            x_u: Unlabelled inputs, `[B_u, D (+ K)]`.
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
        n_classes, n_u = self.config.n_classes, x_u.shape[0]
        pairs = self._pairs(x_u, x_l, y_l)
        bound, terms = self._pair_bounds(pairs, beta=beta)
        bound_cy, bound_l = bound[: n_classes * n_u].reshape(n_classes, n_u), bound[n_classes * n_u:]

        # Both batches through the classifier at once, on the inputs (and a draws) of the bound.
        logits = self.classifier(pairs.inputs)
        q_y_u, q_y_l = _categorical(logits[:n_u]), _categorical(logits[n_u:])
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
            "labelled_accuracy": (logits[n_u:].argmax(-1) == y_l).float().mean().detach(),
        }

    # --- using the trained model -------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """q(y|x), `[B, C]` (call ``eval()`` first when batch norm is on)."""
        return self.logits(x).softmax(-1)

    @torch.no_grad()
    def log_joint(self, x: Tensor, *, k: int, seed: int | None = None) -> Tensor:
        """Importance-weighted estimate of log p(x, y) for every class y, `[B, C]`.

        The bound of Burda et al. (:func:`vaecore.bounds.iwae_bound`) with ``k`` draws from q(z|x,y),
        for all C classes in one `[C * B]` pass. With ``aux_dim`` the proposal is q(z|a,x,y) at the
        mean of q(a|x): p(x|y) does not involve a, so any proposal is valid. A context is not modelled.

        Args:
            x: Inputs, `[B, D (+ K)]`.
            k: Importance samples per (example, class) pair.
            seed: The k draws from this seed, shared by all examples and classes (``None``: fresh).
        """
        n_classes, n = self.config.n_classes, x.shape[0]
        h = self.encoder_input(self.inference_input(x)[0]).repeat(n_classes, 1)
        y = torch.eye(n_classes, dtype=self.prior.loc.dtype, device=x.device).repeat_interleave(n, dim=0)
        noise = None if seed is None else torch.randn(  # on the CPU: the same numbers on every device
            integer_at_least("k", k, 1), 1, self.config.z_dim, generator=torch.Generator().manual_seed(check_seed(seed)),
            dtype=self.prior.loc.dtype).to(x.device)
        bound = iwae_bound(x[:, :self.config.x_dim].repeat(n_classes, 1), encoder=lambda _: self.q_z_from(h, y),
                           decoder=lambda z: self.p_x(z, y), prior=self.prior, k=k, noise=noise)
        return (bound + self.log_py).reshape(n_classes, n).T

    @torch.no_grad()
    def bayes_logits(self, x: Tensor, *, k: int, seed: int | None = None) -> Tensor:
        """log q(y|x) + log p(y|x): the classifier times the generative model's own posterior, `[B, C]`.

        p(y|x) = p(x, y) / sum_y' p(x, y') from :meth:`log_joint` (``k``, ``seed`` as there). The
        two estimate the same posterior with different errors: as good as each other (M1+M2's
        MLP on z1, 100 labels) the product beat either; beside a much better classifier it did
        worse (BENCHMARKS.md, "Bayes' rule at test time"). Unnormalised.
        """
        return self.logits(x).log_softmax(-1) + self.log_joint(x, k=k, seed=seed).log_softmax(-1)

    @torch.no_grad()
    def generate(self, y: Tensor, z: Tensor) -> Tensor:
        """Mean of p(x|y,z) for integer labels `[B]` and latents `[B, z]`, `[B, D]`.

        Raises:
            InputDataError: ``y`` is not `[B]` integer labels in ``0..n_classes - 1``, or ``z``
                is not `[B, z_dim]` (each was an error from deep inside torch).
        """
        c, d = self.config.n_classes, self.config.z_dim
        integer = y.dim() == 1 and not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
        if not integer or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < c):
            shown = y.tolist() if y.numel() <= 10 else f"a tensor of shape {list(y.shape)}"
            raise InputDataError(f"y must be integer labels [B] in 0..{c - 1}, got {shown}")
        if z.shape != (len(y), d):
            raise InputDataError(f"z must be [B, z_dim] = [{len(y)}, {d}] for {len(y)} labels, got {list(z.shape)}")
        return self.p_x(z.unsqueeze(0), self.one_hot(y)).mean.squeeze(0)

    @torch.no_grad()
    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Posterior mean of q(z|x,y), `[B, z]`; ``y`` defaults to the predicted class."""
        y = self.logits(x).argmax(-1) if y is None else y
        return self.q_z(x, self.one_hot(y)).mean
