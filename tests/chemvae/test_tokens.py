"""Tests for chemvae.tokens: regex SMILES tokens, SELFIES, the vocabulary."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chemvae.data import FIXTURE_CSV
from chemvae.rdkit_utils import canonical_smiles
from chemvae.tokens import (
    SPECIAL_TOKENS,
    TokenizationError,
    Tokenizer,
    Vocabulary,
    tokenize_smiles,
)
from vaecore.errors import InputDataError


@pytest.fixture(scope="module")
def fixture_smiles() -> list[str]:
    return pd.read_csv(FIXTURE_CSV)["smiles"].tolist()


def test_smiles_round_trip_on_fixture(fixture_smiles):
    tokenizer = Tokenizer("smiles")
    for s in fixture_smiles:
        tokens = tokenizer.tokenize(s)
        assert tokenizer.detokenize(tokens) == s
        assert all(t for t in tokens)


def test_smiles_token_kinds():
    assert tokenize_smiles("ClCBr") == ["Cl", "C", "Br"]
    assert tokenize_smiles("c1cc[nH]c1") == ["c", "1", "c", "c", "[nH]", "c", "1"]
    assert tokenize_smiles("[C@@H](F)[O-]") == ["[C@@H]", "(", "F", ")", "[O-]"]
    assert tokenize_smiles("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    assert tokenize_smiles("C/C=C\\C#N") == ["C", "/", "C", "=", "C", "\\", "C", "#", "N"]
    # B and C are their own tokens when not followed by r / l.
    assert tokenize_smiles("BC") == ["B", "C"]


def test_untokenizable_smiles_names_position():
    with pytest.raises(TokenizationError, match=r"'X' at position 2") as info:
        tokenize_smiles("CCX")
    assert info.value.reason == "untokenizable"
    assert isinstance(info.value, ValueError)


def test_selfies_round_trip_gives_same_molecule(fixture_smiles):
    tokenizer = Tokenizer("selfies")
    for s in fixture_smiles[:300]:
        tokens = tokenizer.tokenize(s)
        assert all(t.startswith("[") and t.endswith("]") for t in tokens)
        assert canonical_smiles(tokenizer.detokenize(tokens)) == canonical_smiles(s)


def test_selfies_refusal_is_a_tokenization_error():
    with pytest.raises(TokenizationError) as info:
        Tokenizer("selfies").tokenize("C1CC")  # unclosed ring
    assert info.value.reason == "selfies_error"


def test_unknown_representation():
    with pytest.raises(InputDataError, match="representation"):
        Tokenizer("inchi")


def test_only_atoms_start_a_molecule(fixture_smiles):
    smiles, selfies = Tokenizer("smiles"), Tokenizer("selfies")
    assert [t for t in ("C", "Cl", "[nH]", "c", "*", "(", "=", "1", "%10", ".", "<eos>") if smiles.starts_molecule(t)] \
        == ["C", "Cl", "[nH]", "c", "*"]
    assert [t for t in ("[C]", "[=C]", "[#N]", "[NH1+1]", "[Ring1]", "[=Branch1]", "[-/Ring2]", "[nop]", ".", "<eos>")
            if selfies.starts_molecule(t)] == ["[C]", "[=C]", "[#N]", "[NH1+1]"]
    # Every fixture molecule begins with such a token in both representations.
    for s in fixture_smiles:
        assert smiles.starts_molecule(smiles.tokenize(s)[0]) and selfies.starts_molecule(selfies.tokenize(s)[0])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_random_strings_raise_only_documented_errors(text):
    for representation in ("smiles", "selfies"):
        try:
            tokens = Tokenizer(representation).tokenize(text)
        except TokenizationError as err:
            assert err.reason in ("untokenizable", "selfies_error")
        else:
            assert isinstance(tokens, list)
            if representation == "smiles":
                assert "".join(tokens) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["[C]", "[O]", "[=C]", "[Branch1]", "[Ring1]", "[#N]", "[nop]", "[X]"]),
                max_size=20))
def test_selfies_detokenize_never_raises(tokens):
    assert isinstance(Tokenizer("selfies").detokenize(tokens), str)


def test_vocabulary_build_encode_decode():
    vocab = Vocabulary.build([["C", "C", "O"], ["C", "N"]])
    assert vocab.itos[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert vocab.itos[len(SPECIAL_TOKENS)] == "C"  # most frequent first
    assert len(vocab) == len(SPECIAL_TOKENS) + 3
    ids = vocab.encode(["C", "O", "Cl"], 6)
    assert ids[3] == vocab.eos_index and ids[4:] == [vocab.pad_index] * 2
    assert ids[2] == vocab.unk_index
    assert vocab.decode(ids) == ["C", "O", "<unk>"]
    assert vocab.decode([vocab.bos_index, vocab.stoi["N"], vocab.eos_index, vocab.stoi["C"]]) == ["N"]
    assert vocab.unknown(["C", "Cl", "Br", "Cl"]) == ["Cl", "Br"]
    with pytest.raises(InputDataError, match="do not fit"):
        vocab.encode(["C"] * 6, 6)


def test_vocabulary_is_deterministic_and_serializable():
    lists = [["O", "C"], ["N", "C"], ["C"]]
    a, b = Vocabulary.build(lists), Vocabulary.build(list(reversed(lists)))
    assert a == b
    assert Vocabulary.from_dict(a.to_dict()) == a
    with pytest.raises(InputDataError, match="special tokens"):
        Vocabulary.from_dict({"itos": ["C", "O"]})
    with pytest.raises(InputDataError, match="needs an 'itos' list of token strings"):
        Vocabulary.from_dict({"tokens": ["C", "O"]})  # a damaged checkpoint: was KeyError 'itos'
    with pytest.raises(InputDataError, match="needs an 'itos' list of token strings"):
        Vocabulary.from_dict({"itos": [*SPECIAL_TOKENS, 6]})
    with pytest.raises(InputDataError, match="must be unique"):
        Vocabulary.from_dict({"itos": [*SPECIAL_TOKENS, "C", "C"]})


def test_vocabulary_build_refuses_strings_and_bad_counts():
    # A list of SMILES strings would be counted character by character ("Cl" as C and l).
    with pytest.raises(InputDataError, match="got the string 'CCl'; tokenize it first"):
        Vocabulary.build(["CCl"])
    with pytest.raises(InputDataError, match="min_count must be an integer >= 1, got 2.5"):
        Vocabulary.build([["C"]], min_count=2.5)  # would have dropped every token silently
    with pytest.raises(InputDataError, match="min_count must be an integer >= 1, got 0"):
        Vocabulary.build([["C"]], min_count=0)
    assert Vocabulary.build([["C", "C", "O"]], min_count=2).itos[len(SPECIAL_TOKENS):] == ["C"]


@pytest.mark.parametrize("bad", [None, 5, b"CCO"])
def test_a_non_string_is_a_tokenization_error_with_the_empty_reason(bad):
    with pytest.raises(TokenizationError, match=f"a SMILES must be a string, got {type(bad).__name__}") as info:
        tokenize_smiles(bad)
    assert info.value.reason == "empty"  # the reason a non-string cell of a data file gets
