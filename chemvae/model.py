"""The molecule VAE of Gómez-Bombarelli et al. (2018) with a jointly trained property head.

An encoder from :mod:`chemvae.encoders` maps a molecule to features, a
``vaecore.DiagonalGaussianHead`` to q(z|x); a GRU decoder, fed z both as its initial
state and at every step, defines p(x|z) over token sequences through
``vaecore.likelihoods.CategoricalSequenceLikelihood``; an MLP predicts z-scored
properties (logP, QED, SA by default) from z. The objective goes through
``vaecore.elbo``; training loops live in :mod:`chemvae.train`.

The model speaks SMILES at its boundary: :meth:`MoleculeVAE.encode` takes SMILES and
:meth:`MoleculeVAE.decode` returns SMILES, whatever the internal representation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from chemvae.batches import encode_tokens, token_lengths
from chemvae.data import CheckedMolecules, check_molecules
from chemvae.decoder import GRUDecoder
from chemvae.encoders import build_encoder, check_encoder
from chemvae.properties import PROPERTY_COLUMNS
from chemvae.rdkit_utils import smiles_list
from chemvae.tokens import REPRESENTATIONS, Tokenizer, Vocabulary
from vaecore.bounds import elbo
from vaecore.errors import InputDataError, finite_at_least, integer_at_least, integers_at_least
from vaecore.likelihoods import CategoricalSequenceLikelihood
from vaecore.nets import mlp
from vaecore.posteriors import DiagonalGaussianHead, StandardNormalPrior


@dataclass(frozen=True)
class ChemVAEConfig:
    """Architecture of a :class:`MoleculeVAE` (stored in every checkpoint).

    Attributes:
        representation: ``smiles`` or ``selfies``.
        encoder: A key of :data:`chemvae.encoders.ENCODERS` (``cnn``, ``gru``, ``graph``).
        latent_dim: Size ``d`` of z.
        max_length: Longest token sequence (without ``<eos>``); longer molecules are skipped.
        embedding_dim: Token embedding width (encoder and decoder each have one).
        encoder_hidden: GRU width per direction, CNN dense width, or graph node width.
        encoder_layers: GRU encoder layers.
        cnn_channels, cnn_kernels: Convolution widths and kernel sizes (paper: 9, 9, 10 / 9, 9, 11).
        graph_layers: Message-passing layers of the graph encoder.
        decoder_hidden: Decoder GRU width.
        decoder_layers: Decoder GRU layers.
        dropout: Dropout between stacked GRU layers.
        property_names: Columns of :func:`chemvae.properties.compute_properties` to predict.
        property_hidden: Hidden widths of the property MLP.
        property_weight: Weight of the property MSE added to the negative ELBO.
        canonicalize: Canonicalize SMILES with RDKit before tokenizing (training and encode).
    """

    representation: str = "smiles"
    encoder: str = "gru"
    latent_dim: int = 56
    max_length: int = 120
    embedding_dim: int = 64
    encoder_hidden: int = 256
    encoder_layers: int = 1
    cnn_channels: tuple[int, ...] = (9, 9, 10)
    cnn_kernels: tuple[int, ...] = (9, 9, 11)
    graph_layers: int = 4
    decoder_hidden: int = 512
    decoder_layers: int = 3
    dropout: float = 0.0
    property_names: tuple[str, ...] = ("logp", "qed", "sa")
    property_hidden: tuple[int, ...] = (128, 128)
    property_weight: float = 1.0
    canonicalize: bool = True

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise InputDataError(f"unknown representation {self.representation!r}; choose from {REPRESENTATIONS}")
        for name in ("latent_dim", "max_length", "embedding_dim", "encoder_hidden", "encoder_layers",
                     "graph_layers", "decoder_hidden", "decoder_layers"):
            integer_at_least(name, getattr(self, name), 1)
        if not 0.0 <= self.dropout < 1.0:
            raise InputDataError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("cnn_channels", "cnn_kernels", "property_hidden"):
            # torch's errors for a zero width or kernel come only at the first batch.
            integers_at_least(name, getattr(self, name), 1)
        check_encoder(self.encoder)  # the encoder is built once every training molecule has been checked
        if self.encoder == "cnn":  # here, not in the encoder: it is built once every molecule has been checked
            if len(self.cnn_channels) != len(self.cnn_kernels):
                raise InputDataError(f"cnn_channels {self.cnn_channels} and cnn_kernels {self.cnn_kernels} must have "
                                     "the same length (one kernel size per convolution)")
            if self.max_length + 1 - sum(k - 1 for k in self.cnn_kernels) < 1:  # unpadded convolutions
                raise InputDataError(f"CNN kernels {self.cnn_kernels} are too wide for max_length {self.max_length}")
        finite_at_least("property_weight", self.property_weight, 0)
        # A name given twice was a second head output for the same property, weighted twice.
        if not self.property_names:  # the head's layer of 0 outputs was refused once the data were read
            raise InputDataError("property_names needs at least one property for the property head; to train "
                                 "without it, set property_weight=0")
        if unknown := [n for n in self.property_names if n not in PROPERTY_COLUMNS]:
            # Refused once every training molecule had been checked and its properties computed.
            raise InputDataError(f"unknown property_names {unknown}; available: {list(PROPERTY_COLUMNS)}")
        if twice := sorted({n for n in self.property_names if list(self.property_names).count(n) > 1}):
            raise InputDataError(f"property_names {list(self.property_names)} name {twice} more than once")


def check_decoding(method: str, temperature: float, *, name: str = "method") -> None:
    """Refuse a decoding ``method`` other than ``greedy`` / ``sample``, or a ``temperature``
    that is not a finite number > 0 (inf decoded every molecule as ``""``), or one other than 1
    with ``greedy``, which takes the argmax and would ignore it. ``name`` is what the caller
    calls ``method`` (``decode_method`` in a search, whose own ``method`` is the search's).

    Raises:
        InputDataError: Naming the value.
    """
    if method not in ("greedy", "sample"):
        raise InputDataError(f"{name} must be 'greedy' or 'sample', got {method!r}")
    finite_at_least("temperature", temperature, 0, strict=True)
    if method == "greedy" and temperature != 1.0:
        raise InputDataError(f"temperature {temperature} has no effect on greedy decoding; use {name} 'sample'")


@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside the block; the previous mode is restored."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class MoleculeVAE(nn.Module):
    """Sequence VAE over molecules with a property head on z.

    Args:
        config: Architecture.
        vocab: Token vocabulary, built from the training data.
    """

    def __init__(self, config: ChemVAEConfig, vocab: Vocabulary) -> None:
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.tokenizer = Tokenizer(config.representation)
        self.latent_dim = config.latent_dim
        self.property_names = tuple(config.property_names)
        self.encoder = build_encoder(config, len(vocab))
        self.posterior_head = DiagonalGaussianHead(self.encoder.out_features, config.latent_dim)
        self.decoder = GRUDecoder(len(vocab), config.embedding_dim, config.latent_dim, config.decoder_hidden,
                                  config.decoder_layers, config.dropout)
        self.likelihood = CategoricalSequenceLikelihood(Vocabulary.pad_index)
        self.property_head = mlp(config.latent_dim, config.property_hidden, len(self.property_names),
                                 activation="relu")
        self.prior = StandardNormalPrior(config.latent_dim)
        # z-scoring statistics of the training properties: saved in the state dict.
        self.register_buffer("property_mean", torch.zeros(len(self.property_names)))
        self.register_buffer("property_std", torch.ones(len(self.property_names)))

    @property
    def device(self) -> torch.device:
        return self.property_mean.device

    def set_property_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Store the training set's property mean and std `[P]` used for z-scoring.

        Raises:
            InputDataError: Not `[P]` values each (``copy_`` broadcast one value to every
                property), not finite, or a std that is not positive.
        """
        mean_t = torch.as_tensor(mean, dtype=self.property_mean.dtype)
        std_t = torch.as_tensor(std, dtype=self.property_std.dtype)
        for name, values in (("mean", mean_t), ("std", std_t)):
            if values.shape != self.property_mean.shape or not torch.isfinite(values).all():
                raise InputDataError(f"property {name} must be {len(self.property_names)} finite values (one per "
                                     f"property {list(self.property_names)}), got {values.tolist()}")
        if not (std_t > 0).all():  # predictions would all be the mean
            raise InputDataError(f"property std must be > 0 for every property, got {std_t.tolist()}")
        self.property_mean.copy_(mean_t)
        self.property_std.copy_(std_t)

    # ------------------------------------------------------------------ training
    def posterior(self, batch: dict) -> Distribution:
        """q(z|x) for a batch, batch shape `[B]`, event `[d]`."""
        inputs = batch.get("encoder_inputs")
        if inputs is None:
            lengths = batch.get("lengths")
            if lengths is None:  # a hand-made batch: count here, at the cost of a device sync
                lengths = token_lengths(batch["tokens"]).cpu()
            inputs = self.encoder.prepare(batch["smiles"], batch["tokens"], lengths)
        return self.posterior_head(self.encoder(inputs))

    def decoder_logits(self, z: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits `[..., B, T, V]` for z `[..., B, d]` and targets `[B, T]`."""
        lead = z.shape[:-1]
        z_flat = z.reshape(-1, z.shape[-1])
        bos = torch.full_like(tokens[:, :1], Vocabulary.bos_index)
        inputs = torch.cat([bos, tokens[:, :-1]], dim=1)  # shift right: predict token t from < t
        inputs = inputs.expand(*lead, -1).reshape(z_flat.shape[0], -1)
        logits, _ = self.decoder(z_flat, inputs)
        return logits.view(*lead, *logits.shape[1:])

    def loss_terms(self, batch: dict, *, beta: float) -> dict[str, Tensor]:
        """Training loss and its parts for one batch.

        Args:
            batch: ``{"smiles": list[str], "tokens": [B, T], "lengths": [B], "properties": [B, P]}`` as
                yielded by :func:`chemvae.batches.iterate_batches` (properties z-scored, NaN
                where unknown; optional).
            beta: KL weight for this step.

        Returns:
            Scalars ``loss`` (negative beta-ELBO + weighted property MSE, per molecule),
            ``recon`` (-E_q log p(x|z)), ``kl``, ``elbo`` (beta = 1), ``property_mse``,
            ``token_accuracy`` (teacher-forced) and ``beta``.
        """
        tokens = batch["tokens"]
        q = self.posterior(batch)
        seen: dict[str, Distribution] = {}

        def decode(z: Tensor) -> Distribution:  # z [S, B, d] -> p(x|z), batch [S, B]
            seen["p"] = self.likelihood(self.decoder_logits(z, tokens))
            return seen["p"]

        terms = elbo(tokens, lambda _x: q, decode, self.prior, beta=beta)
        property_mse = self._property_mse(terms.z, batch.get("properties"))
        loss = terms.loss() + self.config.property_weight * property_mse
        return {
            "loss": loss,
            "recon": -terms.log_likelihood.mean(),
            "kl": terms.kl.mean(),
            "elbo": (terms.log_likelihood - terms.kl).mean(),
            "property_mse": property_mse,
            "token_accuracy": seen["p"].token_accuracy(tokens).mean(),
            "beta": torch.as_tensor(float(beta)),
        }

    def _property_mse(self, z: Tensor, target: Tensor | None) -> Tensor:
        """Mean squared error of the head on z `[S, B, d]` against `[B, P]`, NaNs ignored."""
        if target is None or target.numel() == 0:
            return z.new_zeros(())
        pred = self.property_head(z)
        known = torch.isfinite(target)
        err = (pred - torch.nan_to_num(target)).pow(2) * known
        return err.sum() / (known.sum() * z.shape[0]).clamp_min(1)

    # ------------------------------------------------------------------ SMILES in
    def check(self, smiles: Sequence[str]) -> CheckedMolecules:
        """Which SMILES this model can encode, and why the others not (``summary()`` counts them).

        The checks of training: RDKit parses and sanitizes the molecule, its tokens are in
        the model's vocabulary and there are at most ``max_length`` of them.
        """
        return check_molecules(smiles, self.tokenizer, max_length=self.config.max_length, vocab=self.vocab,
                               canonicalize=self.config.canonicalize)

    def encode(self, smiles: Sequence[str], errors: str = "raise", batch_size: int = 1000
               ) -> Tensor | tuple[Tensor, list[int]]:
        """Posterior means of SMILES strings.

        Args:
            smiles: ``N`` SMILES strings.
            errors: ``raise``: a molecule that cannot be encoded raises; ``skip``: it is
                left out and the kept positions are returned too.
            batch_size: Molecules per forward pass.

        Returns:
            Means `[N, d]` on the model's device; with ``errors="skip"``, ``(means [K, d],
            kept_indices)``.

        Raises:
            InputDataError: (a ``ValueError``) with ``errors="raise"``, naming the first
                bad index, its string and the reason (empty, unparsable, valence,
                too_long, unknown_token, ...).
        """
        if errors not in ("raise", "skip"):
            raise InputDataError(f"errors must be 'raise' or 'skip', got {errors!r}")
        checked = self.check(smiles_list(smiles, "encode's input"))
        if errors == "raise" and checked.first_issue is not None:
            raise InputDataError(f"cannot encode {checked.first_issue.describe()}")
        tokens = encode_tokens(checked.tokens, self.vocab, self.config.max_length + 1)
        means = []
        with _evaluating(self):
            for start in range(0, len(checked.smiles), integer_at_least("batch_size", batch_size, 1)):
                chunk = tokens[start : start + batch_size]
                lengths = token_lengths(chunk)
                batch = {"smiles": checked.smiles[start : start + batch_size],
                         "tokens": chunk[:, : int(lengths.max())].to(self.device), "lengths": lengths}
                means.append(self.posterior(batch).mean)
        z = torch.cat(means) if means else torch.zeros(0, self.latent_dim, device=self.device,
                                                       dtype=self.property_mean.dtype)
        return (z, checked.indices) if errors == "skip" else z

    # ------------------------------------------------------------------ SMILES out
    def _latents(self, z: Tensor) -> Tensor:
        """User latents `[N, d]` (or `[d]`) on the model's device and dtype, refused by name if malformed.

        Non-finite values are refused rather than decoded: a NaN latent decodes to an
        arbitrary string (one atom, as it happens), which would pass for a result.
        """
        z = torch.as_tensor(z)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.dim() != 2 or z.shape[-1] != self.latent_dim:
            raise InputDataError(f"z must have shape [N, {self.latent_dim}], got {list(z.shape)}")
        if not bool(torch.isfinite(z).all()):
            rows = (~torch.isfinite(z)).any(-1).nonzero().flatten().tolist()
            raise InputDataError(f"z has NaN or infinite values in {len(rows)} row(s), the first row {rows[0]}")
        return z.to(self.device, self.property_mean.dtype)

    def decode(self, z: Tensor, method: str = "greedy", temperature: float = 1.0,
               generator: torch.Generator | None = None, batch_size: int = 1000) -> list[str]:
        """Decode latents into SMILES strings (possibly invalid).

        All sequences of a batch step together and decoding stops when every one has
        emitted ``<eos>`` or after ``max_length + 1`` steps. The first token is always an
        atom (:meth:`chemvae.tokens.Tokenizer.starts_molecule`), so no result is empty.

        Args:
            z: Latents `[N, d]` (or `[d]`), moved to the model's device.
            method: ``greedy`` (argmax token) or ``sample`` (from softmax(logits / temperature)).
            temperature: Sampling temperature, > 0.
            generator: Random generator for ``sample`` (any device).
            batch_size: Sequences decoded at once.

        Returns:
            ``N`` SMILES strings (SELFIES models decode to SMILES).
        """
        check_decoding(method, temperature)
        z = self._latents(z)
        out: list[str] = []
        with _evaluating(self):
            for start in range(0, z.shape[0], integer_at_least("batch_size", batch_size, 1)):
                ids = self._generate(z[start : start + batch_size], method, temperature, generator)
                out += [self.tokenizer.detokenize(self.vocab.decode(row)) for row in ids.tolist()]
        return out

    def _generate(self, z: Tensor, method: str, temperature: float, generator: torch.Generator | None) -> Tensor:
        """Token ids `[N, T]` decoded step by step from z `[N, d]`."""
        n = z.shape[0]
        token = torch.full((n, 1), Vocabulary.bos_index, dtype=torch.long, device=z.device)
        finished = torch.zeros(n, dtype=torch.bool, device=z.device)
        state = self.decoder.initial_state(z)
        # Special tokens other than <eos> are never valid output, and the first token must
        # be an atom (never <eos>), so that no decoded molecule is empty.
        banned = torch.tensor([Vocabulary.pad_index, Vocabulary.bos_index, Vocabulary.unk_index], device=z.device)
        first_banned = torch.tensor([i for i, t in enumerate(self.vocab.itos) if not self.tokenizer.starts_molecule(t)],
                                    dtype=torch.long, device=z.device)
        if len(first_banned) == len(self.vocab):
            raise InputDataError(f"no token of the vocabulary can start a {self.tokenizer.representation} string")
        steps: list[Tensor] = []
        for step in range(self.config.max_length + 1):
            logits, state = self.decoder(z, token, state)
            logits = logits[:, -1].index_fill(-1, first_banned if step == 0 else banned, float("-inf"))
            if method == "greedy":
                nxt = logits.argmax(-1)
            else:
                # Inverse-CDF sampling from uniforms drawn on the generator's own device,
                # so that a CPU generator gives the same molecules on any model device.
                probs = torch.softmax(logits / temperature, dim=-1)
                device = generator.device if generator is not None else z.device
                u = torch.rand(n, 1, generator=generator, device=device).to(z.device, probs.dtype)
                nxt = (probs.cumsum(-1) < u).sum(-1).clamp_max(probs.shape[-1] - 1)
            nxt = nxt.masked_fill(finished, Vocabulary.pad_index)
            steps.append(nxt)
            finished |= nxt == Vocabulary.eos_index
            if bool(finished.all()):
                break
            token = nxt.unsqueeze(1)
        return torch.stack(steps, dim=1).cpu()

    def sample(self, n: int, method: str = "greedy", temperature: float = 1.0,
               generator: torch.Generator | None = None, batch_size: int = 1000) -> list[str]:
        """Decode ``n`` draws z ~ p(z) (drawn with ``generator``, then moved to the model)."""
        n = integer_at_least("n", n, 0)
        device = generator.device if generator is not None else self.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode(z, method=method, temperature=temperature, generator=generator, batch_size=batch_size)

    # ------------------------------------------------------------------ properties
    def property_tensor(self, z: Tensor) -> Tensor:
        """De-standardized property predictions `[..., P]` for z `[..., d]` (differentiable)."""
        return self.property_head(z) * self.property_std + self.property_mean

    def predict_properties(self, z: Tensor) -> pd.DataFrame:
        """Predicted properties of latents `[N, d]` as a table with columns ``property_names``."""
        z = self._latents(z)
        with _evaluating(self):
            values = self.property_tensor(z)
        return pd.DataFrame(values.cpu().double().numpy(), columns=list(self.property_names))
