"""Built-in objectives: values, names, invalid input, head surrogates."""

import math

import pytest
import torch

from chemvae import objectives, properties
from chemvae.rdkit_utils import mol_from_smiles
from vaecore.errors import InputDataError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "Cn1cnc2c1c(=O)n(C)c(=O)n2C"


def test_qed_matches_rdkit_and_invalid_is_nan():
    values = objectives.qed([ASPIRIN, "not a smiles", CAFFEINE])
    assert values[0] == pytest.approx(properties.qed(mol_from_smiles(ASPIRIN)))
    assert math.isnan(values[1])
    assert 0 < values[2] < 1


def test_penalized_logp_forms_are_named_and_differ():
    mol = mol_from_smiles(CAFFEINE)
    norm = objectives.penalized_logp([CAFFEINE])[0]
    raw = objectives.penalized_logp_unnormalized([CAFFEINE])[0]
    assert objectives.penalized_logp.name == "plogp"
    assert objectives.penalized_logp_unnormalized.name == "plogp_unnormalized"
    assert norm == pytest.approx(properties.penalized_logp(mol, normalized=True))
    assert raw == pytest.approx(properties.penalized_logp(mol, normalized=False))
    assert norm != pytest.approx(raw)


def test_sa_objective_is_negated_sa_score():
    easy, hard = "CCO", "C[C@H]1C[C@@]2(O)C[C@H](O)[C@]3(C)C(=O)C=C[C@@]3(C)[C@@H]2C[C@H]1O"
    values = objectives.sa([easy, hard])
    assert objectives.sa.name == "neg_sa" and objectives.neg_sa is objectives.sa
    assert values[0] == pytest.approx(-properties.sa_score(mol_from_smiles(easy)))
    assert values[0] > values[1]  # easier to make -> higher objective
    assert all(-10 <= v <= -1 for v in values)


def test_similarity_is_one_for_the_target_and_rejects_bad_targets():
    sim = objectives.similarity(ASPIRIN)
    same, other = sim(["O=C(O)c1ccccc1OC(C)=O", CAFFEINE])  # aspirin written differently
    assert same == pytest.approx(1.0)
    assert 0 <= other < 0.5
    assert sim.surrogate is None
    with pytest.raises(InputDataError, match="not a valid SMILES"):
        objectives.similarity("C1CC")
    # RDKit reads what follows a blank as a name: 'CC O' targeted ethane without a word.
    with pytest.raises(InputDataError, match="similarity target 'CC O' holds a blank; RDKit would read only 'CC'"):
        objectives.get_objective("similarity:CC O")
    assert objectives.similarity(" CCO ").name == "similarity:CCO"  # surrounding blanks are harmless
    # RDKit's own errors: an OverflowError, an IndexError at scoring, a Boost signature dump.
    with pytest.raises(InputDataError, match="radius must be an integer >= 0, got -1"):
        objectives.similarity(ASPIRIN, radius=-1)
    with pytest.raises(InputDataError, match="n_bits must be an integer >= 1, got 0"):
        objectives.similarity(ASPIRIN, n_bits=0)
    with pytest.raises(InputDataError, match="n_bits must be an integer >= 1, got 2.5"):
        objectives.similarity(ASPIRIN, n_bits=2.5)


def test_get_objective_parses_names_and_names_unknown_ones():
    assert objectives.get_objective("qed") is objectives.qed
    assert objectives.get_objective("plogp") is objectives.penalized_logp
    assert objectives.get_objective("sa") is objectives.sa
    assert objectives.get_objective("similarity:CCO").name == "similarity:CCO"
    with pytest.raises(InputDataError, match="'logp_typo'"):
        objectives.get_objective("logp_typo")
    with pytest.raises(InputDataError, match="an objective is named by a string, got None"):
        objectives.get_objective(None)  # was AttributeError: no attribute 'startswith'
    with pytest.raises(InputDataError):
        objectives.qed("CCO")  # one string, not a list


def test_surrogates_reproduce_the_objectives_from_true_properties():
    mol = mol_from_smiles(CAFFEINE)  # no ring larger than 6: the ring penalty is 0
    props = {"logp": torch.tensor(properties.logp(mol)), "qed": torch.tensor(properties.qed(mol)),
             "sa": torch.tensor(properties.sa_score(mol))}
    for objective in (objectives.qed, objectives.penalized_logp, objectives.penalized_logp_unnormalized,
                      objectives.sa):
        assert float(objective.surrogate(props)) == pytest.approx(objective([CAFFEINE])[0], rel=1e-5)
