"""Tests for chemvae.model and chemvae.encoders: loss terms, encode/decode, persistence."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import chemvae
from chemvae.batches import MoleculeTensors, encode_tokens, iterate_batches
from chemvae.data import FIXTURE_CSV, check_molecules
from chemvae.encoders import ENCODERS
from chemvae.model import ChemVAEConfig, MoleculeVAE
from chemvae.persistence import load, save_model
from chemvae.rdkit_utils import mol_from_smiles
from chemvae.tokens import Tokenizer, Vocabulary
from vaecore.datasets import REPO_DATA_DIR
from vaecore.errors import CheckpointError, InputDataError

TINY = dict(latent_dim=8, embedding_dim=8, encoder_hidden=16, decoder_hidden=24, decoder_layers=2,
            property_hidden=(8,), max_length=60)
FIXTURE_MODEL = REPO_DATA_DIR / "fixtures" / "chemvae_tiny"


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    return pd.read_csv(FIXTURE_CSV)["smiles"].tolist()[:64]


def _model(molecules, **overrides) -> MoleculeVAE:
    torch.manual_seed(0)
    config = ChemVAEConfig(**{**TINY, **overrides})
    checked = check_molecules(molecules, Tokenizer(config.representation), max_length=config.max_length)
    return MoleculeVAE(config, Vocabulary.build(checked.tokens))


def _batch(model: MoleculeVAE, molecules: list[str]) -> dict:
    checked = check_molecules(molecules, model.tokenizer, max_length=model.config.max_length, vocab=model.vocab)
    tokens = encode_tokens(checked.tokens, model.vocab, model.config.max_length + 1)
    props = torch.randn(len(checked.smiles), len(model.property_names))
    props[0, 1] = float("nan")  # unknown values are ignored, not propagated
    data = MoleculeTensors(checked.smiles, tokens, props)
    return next(iterate_batches(data, 16, shuffle=False))


@pytest.mark.parametrize("field, value", [("decoder_layers", 0), ("encoder_hidden", 0), ("latent_dim", -1),
                                          ("dropout", 1.0), ("representation", "inchi"), ("encoder", "transformer"),
                                          # torch failed on these only at the first batch, or never:
                                          ("cnn_channels", (9, 0, 10)), ("cnn_kernels", (9, 9, 0)),
                                          ("property_hidden", (0,)), ("property_weight", float("nan")),
                                          ("property_weight", -1.0),
                                          # a second head output for the same property, weighted twice:
                                          ("property_names", ("qed", "logp", "qed")),
                                          # refused once every molecule had been checked (and its properties computed):
                                          ("property_names", ("qed", "logP")), ("property_names", ())])
def test_a_bad_architecture_is_refused_by_name(field, value):
    with pytest.raises(InputDataError, match=field):
        ChemVAEConfig(**{field: value})


def test_a_cnn_geometry_that_cannot_be_built_is_refused_with_the_config():
    # Refused when the CNN encoder was built, after every training molecule had been checked
    # and its properties computed (minutes on MOSES).
    with pytest.raises(InputDataError, match=r"cnn_channels \(8,\) and cnn_kernels \(9, 9, 11\) must have the same "
                                             "length"):
        ChemVAEConfig(encoder="cnn", cnn_channels=(8,))
    with pytest.raises(InputDataError, match=r"CNN kernels \(9, 9, 11\) are too wide for max_length 20"):
        ChemVAEConfig(encoder="cnn", max_length=20)  # 21 positions, 26 taken by the kernels
    assert ChemVAEConfig(encoder="cnn", max_length=26).max_length == 26  # exactly one position left
    ChemVAEConfig(encoder="gru", max_length=20)  # the CNN's settings are not read


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_loss_terms_follow_the_elbo(molecules, encoder):
    model = _model(molecules, encoder=encoder, representation="selfies" if encoder == "cnn" else "smiles")
    batch = _batch(model, molecules)
    terms = model.loss_terms(batch, beta=0.3)
    assert set(terms) >= {"loss", "recon", "kl", "elbo", "property_mse", "token_accuracy"}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    expected = terms["recon"] + 0.3 * terms["kl"] + model.config.property_weight * terms["property_mse"]
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    assert 0 <= terms["token_accuracy"] <= 1
    terms["loss"].backward()
    for part in (model.encoder, model.decoder, model.property_head, model.posterior_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_encode_errors_raise_or_skip(molecules):
    model = _model(molecules)
    inputs = [molecules[0], "C1CC", molecules[1], "", "C" * 80]
    with pytest.raises(ValueError, match=r"molecule 1 \('C1CC'\): unparsable") as info:
        model.encode(inputs)
    assert isinstance(info.value, InputDataError)
    z, kept = model.encode(inputs, errors="skip")
    assert kept == [0, 2] and z.shape == (2, 8)
    torch.testing.assert_close(z, model.encode([molecules[0], molecules[1]]))
    with pytest.raises(InputDataError, match="too_long"):
        model.encode(["C" * 80])
    # A 5,000-character string made a 5,000-character message.
    with pytest.raises(InputDataError, match=r"molecule 0 \('C{96}\.\.\. \(5000 characters\)\): too_long") as info:
        model.encode(["C" * 5000])
    assert len(str(info.value)) < 250
    with pytest.raises(InputDataError, match="errors must be"):
        model.encode(molecules[:1], errors="ignore")
    assert model.encode([], errors="skip")[0].shape == (0, 8)


def test_encode_does_not_depend_on_the_batch(molecules):
    model = _model(molecules)
    alone = model.encode(molecules[:1])
    with_longer = model.encode([molecules[0], "CCCCCCCCCCCCCCCCCCCCCCCCCCCCC(=O)O"])[:1]
    torch.testing.assert_close(alone, with_longer)
    assert model.training  # encode restores the previous mode


def test_gru_packs_by_the_batchs_host_lengths(molecules):
    model = _model(molecules, encoder="gru")
    batch = _batch(model, molecules)
    assert batch["lengths"].device.type == "cpu"
    hand_made = {k: v for k, v in batch.items() if k != "lengths"}  # counted from the tokens instead
    torch.testing.assert_close(model.posterior(batch).mean, model.posterior(hand_made).mean)
    truncated = {**batch, "lengths": torch.ones_like(batch["lengths"])}
    assert not torch.allclose(model.posterior(batch).mean, model.posterior(truncated).mean)


def test_decode_greedy_is_batched_consistently(molecules):
    model = _model(molecules)
    z = torch.randn(7, 8, generator=torch.Generator().manual_seed(1))
    together = model.decode(z, batch_size=7)
    one_by_one = [model.decode(z[i : i + 1])[0] for i in range(7)]
    assert together == one_by_one and len(together) == 7
    assert all(isinstance(s, str) and "<" not in s for s in together)  # no special tokens leak


def test_decode_sampling_is_reproducible(molecules):
    model = _model(molecules)
    z = torch.zeros(5, 8)
    a = model.decode(z, method="sample", generator=torch.Generator().manual_seed(3))
    b = model.decode(z, method="sample", generator=torch.Generator().manual_seed(3))
    c = model.decode(z, method="sample", generator=torch.Generator().manual_seed(4))
    assert a == b and a != c
    with pytest.raises(InputDataError, match="temperature"):
        model.decode(z, method="sample", temperature=0)
    with pytest.raises(InputDataError, match="temperature must be a finite number > 0, got inf"):
        model.decode(z, method="sample", temperature=float("inf"))  # decoded every molecule as ""
    with pytest.raises(InputDataError, match="temperature 0.5 has no effect on greedy decoding"):
        model.decode(z, temperature=0.5)  # greedy takes the argmax: it was ignored without a word
    with pytest.raises(InputDataError, match="method"):
        model.decode(z, method="beam")
    with pytest.raises(InputDataError, match=r"shape \[N, 8\]"):
        model.decode(torch.zeros(2, 3))


def test_selfies_model_decodes_to_smiles(molecules):
    model = _model(molecules, representation="selfies")
    out = model.decode(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), method="sample",
                       generator=torch.Generator().manual_seed(0))
    assert not any("[Branch" in s or "[Ring" in s or "[=" in s for s in out)  # SMILES, not SELFIES
    # Any SELFIES symbol string decodes to a valid molecule, even from an untrained model.
    assert all(s and mol_from_smiles(s) is not None for s in out)


@pytest.mark.parametrize("representation", ["smiles", "selfies"])
def test_decoding_never_starts_with_a_non_atom(molecules, representation):
    model = _model(molecules, representation=representation)
    # A decoder that prefers <eos>, then ring or branch tokens, would otherwise decode to empty strings.
    non_atoms = [i for i, t in enumerate(model.vocab.itos) if not model.tokenizer.starts_molecule(t)
                 and i != Vocabulary.eos_index and t.startswith(("[", "(", "1"))]
    assert non_atoms
    with torch.no_grad():
        model.decoder.out.bias[non_atoms] = 20.0
        model.decoder.out.bias[Vocabulary.eos_index] = 40.0
    z = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    for out in (model.decode(z), model.decode(z, method="sample", generator=torch.Generator().manual_seed(0))):
        assert all(out), out  # no empty molecule
        first = [model.tokenizer.tokenize(s)[0] for s in out]
        assert all(model.tokenizer.starts_molecule(t) for t in first)
    non_atom_tokens = ["(", "=", "1"] if representation == "smiles" else ["[Ring1]", "[=Branch1]"]
    atomless = MoleculeVAE(ChemVAEConfig(**TINY, representation=representation), Vocabulary(non_atom_tokens))
    with pytest.raises(InputDataError, match=f"no token of the vocabulary can start a {representation} string"):
        atomless.decode(z[:2])


def test_predict_properties_is_destandardized(molecules):
    model = _model(molecules)
    model.set_property_stats([1.0, 0.5, 3.0], [2.0, 0.1, 1.0])
    z = torch.randn(4, 8)
    table = model.predict_properties(z)
    assert list(table.columns) == ["logp", "qed", "sa"] and table.shape == (4, 3)
    raw = model.property_head(z).detach()
    torch.testing.assert_close(torch.tensor(table["logp"].to_numpy(), dtype=torch.float32), raw[:, 0] * 2 + 1)
    # One value was broadcast to every property, and a zero std made every prediction the mean.
    with pytest.raises(InputDataError, match=r"property mean must be 3 finite values .*got \[0.0\]"):
        model.set_property_stats([0.0], [1.0, 1.0, 1.0])
    with pytest.raises(InputDataError, match="property std must be 3 finite values"):
        model.set_property_stats([0.0, 0.0, 0.0], [1.0, float("nan"), 1.0])
    with pytest.raises(InputDataError, match=r"property std must be > 0 for every property, got \[2.0, 0.0, 1.0\]"):
        model.set_property_stats([0.0, 0.0, 0.0], [2.0, 0.0, 1.0])
    assert model.property_std.tolist() == pytest.approx([2.0, 0.1, 1.0])  # the refused values were not stored


def test_checkpoint_round_trip_keeps_vocabulary(molecules, tmp_path):
    model = _model(molecules, representation="selfies")
    model.set_property_stats([1.0, 0.5, 3.0], [2.0, 0.1, 1.0])
    save_model(model, tmp_path / "model.safetensors")
    loaded = load(tmp_path)
    assert loaded.vocab == model.vocab and loaded.config == model.config
    assert loaded.vocab.itos == model.vocab.itos
    torch.testing.assert_close(loaded.property_std, model.property_std)
    model.eval()
    torch.testing.assert_close(loaded.encode(molecules[:5]), model.encode(molecules[:5]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no"):
        load(empty)


def test_committed_fixture_model_loads_and_works():
    model = chemvae.load(FIXTURE_MODEL)
    assert isinstance(model, MoleculeVAE) and not model.training
    assert model.latent_dim == 56 and model.property_names == ("logp", "qed", "sa")
    z = model.encode(["CCOC(=O)c1ccccc1", "CC(=O)Nc1ccc(O)cc1"])
    assert z.shape == (2, 56)
    greedy = model.decode(z)
    assert len(greedy) == 2
    cold = model.decode(z, method="sample", temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert cold == greedy  # temperature -> 0 is greedy
    props = model.predict_properties(z)
    assert props["qed"].between(-1, 2).all()


def test_malformed_latents_are_refused_by_name():
    model = load(FIXTURE_MODEL)
    z = torch.zeros(3, model.latent_dim)
    z[1, 4] = float("nan")
    for use in (model.decode, model.predict_properties):
        with pytest.raises(InputDataError, match="z has NaN or infinite values in 1 row\\(s\\), the first row 1"):
            use(z)
        with pytest.raises(InputDataError, match=f"z must have shape \\[N, {model.latent_dim}\\], got \\[2, 10\\]"):
            use(torch.zeros(2, 10))
    one = torch.zeros(model.latent_dim)  # one latent `[d]` is a batch of one
    assert model.decode(one) == model.decode(one.unsqueeze(0))
    assert model.predict_properties(one).shape == (1, len(model.property_names))


def test_bad_sizes_and_devices_are_refused_by_name():
    with pytest.raises(InputDataError, match="unknown device 'tpu'"):
        load(FIXTURE_MODEL, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputDataError, match="device 'cuda' was asked for but CUDA is not available here"):
            load(FIXTURE_MODEL, device="cuda")
    model = load(FIXTURE_MODEL, device="auto")
    with pytest.raises(InputDataError, match="n must be an integer >= 0, got -1"):
        model.sample(-1)
    assert model.sample(0) == []
    with pytest.raises(InputDataError, match="batch_size must be an integer >= 1, got 0"):
        model.decode(torch.zeros(2, model.latent_dim), batch_size=0)
    with pytest.raises(InputDataError, match="batch_size must be an integer >= 1, got 2.5"):
        model.encode(["CCO"], batch_size=2.5)
