"""Tests for chemvae.rdkit_utils: quiet parsing, canonical SMILES, order-keeping worker maps."""

from __future__ import annotations

import math

import pytest
from rdkit import Chem, RDLogger

from chemvae.rdkit_utils import canonical_smiles, canonicalize_all, map_chunks, mol_from_smiles, quiet_rdkit
from vaecore.errors import InputDataError


@pytest.mark.parametrize("bad", [None, math.nan, 3, "", "   ", "C1CC", "C(C)(C)(C)(C)C", "c1cccc1", "[Xx]"])
def test_unusable_smiles_give_none(bad) -> None:
    # Non-strings, blanks, an unclosed ring, a pentavalent carbon, a bad aromatic ring, an unknown element.
    assert mol_from_smiles(bad) is None
    assert canonical_smiles(bad) is None


def test_canonical_smiles_is_one_string_per_molecule() -> None:
    assert canonical_smiles("OCC") == canonical_smiles("C(O)C") == "CCO"
    assert canonical_smiles("C1=CC=CC=C1") == "c1ccccc1"  # Kekulé input, aromatic output
    assert "@" in canonical_smiles("C[C@H](N)O")  # stereochemistry is kept
    assert mol_from_smiles("CCO").GetNumAtoms() == 3


def test_canonicalize_all_keeps_order_across_workers() -> None:
    smiles = ["OCC", "bad(", "c1ccccc1", None, "C(C)N", "C1CC", "O=C=O"] * 3
    serial = canonicalize_all(smiles, n_jobs=1)
    assert serial[:7] == ["CCO", None, "c1ccccc1", None, "CCN", None, "O=C=O"]
    # Chunks of two in two worker processes come back in the input's order.
    assert canonicalize_all(smiles, n_jobs=2, chunk_size=2) == serial


@pytest.mark.parametrize(("kwargs", "named"), [({"chunk_size": 0}, "chunk_size must be an integer >= 1, got 0"),
                                               ({"n_jobs": 0}, "n_jobs must be an integer >= 1 or -1, got 0"),
                                               ({"n_jobs": -2}, "got -2"),
                                               ({"n_jobs": 2.5}, "got 2.5"),
                                               ({"chunk_size": 2.5}, "got 2.5")])
def test_map_chunks_rejects_bad_settings(kwargs, named) -> None:
    with pytest.raises(InputDataError, match=named):
        map_chunks(list, [1, 2, 3], **kwargs)


def test_canonicalize_all_refuses_one_string() -> None:
    with pytest.raises(InputDataError, match="not one string 'CCO'"):
        canonicalize_all("CCO")  # was ['C', 'C', 'O']


def test_quiet_rdkit_blocks_logs_that_are_enabled(capfd) -> None:
    RDLogger.EnableLog("rdApp.error")  # as code that re-enables RDKit's logs would
    try:
        Chem.MolFromSmiles("C1CC")
        loud = capfd.readouterr().err
        with quiet_rdkit():
            Chem.MolFromSmiles("C1CC")
        quiet = capfd.readouterr().err
    finally:
        RDLogger.DisableLog("rdApp.*")  # back to what importing chemvae.rdkit_utils set
    assert "C1CC" in loud
    assert quiet == ""


def test_one_bare_string_is_never_read_as_its_characters() -> None:
    from chemvae import metrics, objectives
    from chemvae.properties import compute_properties
    from chemvae.rdkit_utils import smiles_list

    assert smiles_list(("CCO", "CCN"), "x") == ["CCO", "CCN"]
    # Each of these once took "CCO" as the molecules C, C and O (compute_properties gave three rows).
    for call, what in ((lambda: compute_properties("CCO"), "smiles"), (lambda: metrics.validity("CCO"), "smiles"),
                       (lambda: objectives.qed("CCO"), "the input of objective 'qed'"),
                       (lambda: metrics.novelty(["CCN"], "CCO"), "train"),
                       (lambda: metrics.reconstruction_accuracy(["CCO"], "CCO"), "decoded")):
        with pytest.raises(InputDataError, match=f"{what} must be a sequence of SMILES strings, not one string 'CCO'"):
            call()
