"""``vaelab chem train`` and ``chem eval``'s run configs, checked when they are made.

:class:`ChemTrainConfig` is what a training run's ``config.json`` holds; a resume takes
:data:`RESUME_SETTINGS` from the resuming call and the rest from there, and
:data:`SPLIT_FIELDS` name the run's data split (``vaelab molopt`` draws its initial
molecules from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chemvae.model import ChemVAEConfig, check_decoding
from chemvae.rdkit_utils import worker_count
from vaecore.errors import InputDataError, finite_at_least, integer_at_least


@dataclass(frozen=True)
class ChemTrainConfig:
    """Everything ``vaelab chem train`` needs; written to ``config.json``.

    Attributes:
        data: ``moses``, ``fixture`` or a CSV path.
        smiles_column: SMILES column of a CSV (matched case-insensitively).
        max_molecules: Cap on training molecules (seeded random subset); None: all.
        valid_fraction, test_fraction: Held-out fractions (test only for CSVs without a
            ``split`` column; MOSES has its own test files).
        model: The architecture (:class:`chemvae.model.ChemVAEConfig`).
        epochs, batch_size, lr, grad_clip: Adam training settings; ``epochs`` ``None``:
            :data:`NEW_RUN_EPOCHS` for a new run, the run's own total for a resumed one.
        beta: Final KL weight (MOSES's CharVAE uses 0.05; 1 is the plain ELBO).
        kl_schedule: ``linear``, ``sigmoid`` or ``none``.
        kl_warmup_fraction, kl_delay_fraction: Warm-up length and initial delay as
            fractions of all training steps (of the run as first begun: a resume to more
            epochs keeps them in steps, so that the KL weight never falls back).
        n_jobs: Worker processes for checking molecules and properties (-1: all cores).
        seed, device, progress, resume: Run settings (``resume``: run directory to continue).
    """

    data: str = "moses"
    smiles_column: str = "smiles"
    max_molecules: int | None = None
    valid_fraction: float = 0.05
    test_fraction: float = 0.1
    model: ChemVAEConfig = field(default_factory=ChemVAEConfig)
    epochs: int | None = None
    batch_size: int = 512
    lr: float = 1e-3
    grad_clip: float = 50.0
    beta: float = 0.05
    kl_schedule: str = "linear"
    kl_warmup_fraction: float = 1.0
    kl_delay_fraction: float = 0.0
    n_jobs: int = -1
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    resume: str | None = None

    def __post_init__(self) -> None:
        integer_at_least("batch_size", self.batch_size, 1)  # Python callers' 2.5 or NaN passed `< 1`
        if self.epochs is not None:
            integer_at_least("epochs", self.epochs, 0)
        finite_at_least("lr", self.lr, 0, strict=True)
        finite_at_least("beta", self.beta, 0)
        finite_at_least("grad_clip", self.grad_clip, 0, strict=True)  # as chemvae.train, before the data load
        worker_count(self.n_jobs)  # checked here too: it is first read after the data load
        for name in ("kl_warmup_fraction", "kl_delay_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputDataError(f"{name} must be in [0, 1] (a fraction of all steps), got {getattr(self, name)}")


@dataclass(frozen=True)
class ChemEvalConfig:
    """Everything ``vaelab chem eval`` needs.

    Attributes:
        run_dir: A ``vaelab chem train`` run directory.
        n_samples: Prior samples to decode (10,000 for unique@10k).
        n_recon: Test molecules to reconstruct (seeded subset); None: all; 0: none (recon is NaN).
        sample_method, temperature: How prior samples are decoded (``sample`` or ``greedy``).
        compute_fcd: Compute the Fréchet ChemNet distance.
        batch_size: Molecules per encode/decode pass.
        grid_size: Valid samples drawn in ``prior_samples.png``.
        progress: Show which stage the evaluation is in (a bar of its stages, on stderr).
    """

    run_dir: str
    n_samples: int = 10_000
    n_recon: int | None = 1000
    sample_method: str = "sample"
    temperature: float = 1.0
    compute_fcd: bool = True
    batch_size: int = 1000
    grid_size: int = 24
    n_jobs: int = -1
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        # Checked before the model is loaded; an empty sample would fail later inside a metric.
        for name, least in (("n_samples", 1), ("batch_size", 1), ("n_recon", 0), ("grid_size", 0)):
            if getattr(self, name) is not None:
                integer_at_least(name, getattr(self, name), least)
        worker_count(self.n_jobs)  # first read once every sample is decoded
        check_decoding(self.sample_method, self.temperature, name="sample_method")


# Architecture settings that only one encoder reads.
ENCODER_ONLY = {"cnn_channels": "cnn", "cnn_kernels": "cnn", "encoder_layers": "gru", "graph_layers": "graph"}


def unused_settings(config: ChemTrainConfig) -> list[str]:
    """Settings changed from their defaults that this run would not read.

    The CNN's channels and kernels, the GRU's layers and the graph encoder's layers are read
    by their own encoder only, dropout between stacked GRU layers only (a decoder of one
    layer and no GRU encoder of two or more have none), and the KL schedule, warm-up and
    delay by a run whose beta is not 0 (the warm-up and delay: whose schedule is not ``none``).
    """
    default_model, default = ChemVAEConfig(), ChemTrainConfig()
    model = config.model
    unused = [f"{name}={getattr(model, name)!r} (read by the {encoder} encoder only)"
              for name, encoder in ENCODER_ONLY.items()
              if model.encoder != encoder and getattr(model, name) != getattr(default_model, name)]
    stacked = model.decoder_layers > 1 or (model.encoder == "gru" and model.encoder_layers > 1)
    if model.dropout != default_model.dropout and not stacked:
        unused.append(f"dropout={model.dropout!r} (read between stacked GRU layers only, and this model has "
                      "a decoder of 1 layer and no GRU encoder of 2 or more)")
    changed = [name for name in ("kl_schedule", "kl_warmup_fraction", "kl_delay_fraction")
               if getattr(config, name) != getattr(default, name)]
    if config.beta == 0:  # a warm-up from 0 to 0
        unused += [f"{name}={getattr(config, name)!r} (beta 0 has no KL weight to warm up to)" for name in changed]
    elif config.kl_schedule == "none":
        unused += [f"{name}={getattr(config, name)!r} (kl_schedule 'none' has no warm-up)"
                   for name in changed if name != "kl_schedule"]
    return unused


def check_warmup(config: ChemTrainConfig) -> None:
    """Refuse a KL delay and warm-up that end after the run: beta would never be reached.

    The warm-up starts after the delay, so a delay of 0.1 with the default warm-up of the
    whole run ended at 90% of beta without a word. Checked for new runs only: a stored
    run of such settings still loads, resumes and evaluates.

    Raises:
        InputDataError: Naming both fractions and the longest warm-up that fits.
    """
    delay, warmup = config.kl_delay_fraction, config.kl_warmup_fraction
    if config.kl_schedule != "none" and delay + warmup > 1 + 1e-9:
        raise InputDataError(f"kl_delay_fraction {delay} + kl_warmup_fraction {warmup} is more than all steps: "
                             f"the KL weight would end below beta; make the warm-up at most {1 - delay:g}")


# The fields of ChemTrainConfig that a resumed run takes from the resuming call (the epochs
# where given: the interrupted run's hint, 'vaelab chem train --resume DIR', gives none, and
# the default 10 replaced the run's own total, and with it the KL warm-up's length).
RESUME_SETTINGS = ("epochs", "device", "progress", "resume", "n_jobs")
NEW_RUN_EPOCHS = 10  # a new run's epochs where none are given

# The fields of ChemTrainConfig that name a run's split: all that load_run_splits reads.
SPLIT_FIELDS = ("data", "smiles_column", "max_molecules", "valid_fraction", "test_fraction", "seed")
