"""Tests for chemvae.batches: property statistics, token ids and trimmed batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chemvae.batches import MoleculeTensors, encode_tokens, iterate_batches, property_stats
from chemvae.tokens import Vocabulary
from vaecore.errors import InputDataError


def test_property_stats_and_batches():
    values = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 2.0]])
    mean, std = property_stats(values)
    assert mean.tolist() == [3.0, 2.0] and std[1] == 1.0  # constant column: std replaced by 1
    with pytest.raises(InputDataError, match="no molecule"):
        property_stats(np.full((3, 1), np.nan))

    vocab = Vocabulary(["C", "O"])
    tokens = encode_tokens([["C"], ["C", "C", "O"], ["O", "O"]], vocab, 8)
    assert tokens.shape == (3, 8) and tokens[1, 3] == vocab.eos_index
    data = MoleculeTensors(["C", "CCO", "OO"], tokens, torch.zeros(3, 2))
    batches = list(iterate_batches(data, 2, shuffle=False))
    assert [b["smiles"] for b in batches] == [["C", "CCO"], ["OO"]]
    assert batches[0]["tokens"].shape == (2, 4) and batches[1]["tokens"].shape == (1, 3)  # trimmed
    # with <eos>; counted on the host, where the GRU encoder's packing needs them
    assert batches[0]["lengths"].tolist() == [2, 4] and batches[1]["lengths"].tolist() == [3]
    shuffled = list(iterate_batches(data, 2, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert sorted(s for b in shuffled for s in b["smiles"]) == ["C", "CCO", "OO"]
    assert math.isclose(float(batches[0]["properties"].sum()), 0.0)


def test_parts_of_other_lengths_are_refused_by_name():
    vocab = Vocabulary(["C", "O"])
    tokens = encode_tokens([["C"], ["O"]], vocab, 4)
    with pytest.raises(InputDataError, match="3 SMILES, 2 token rows and 2 property rows: one of each per molecule"):
        MoleculeTensors(["C", "O", "CO"], tokens, torch.zeros(2, 1))  # was an IndexError once batched
    with pytest.raises(InputDataError, match=r"must be \[N, T\] and \[N, P\], got \[2, 4\] and \[2\]"):
        MoleculeTensors(["C", "O"], tokens, torch.zeros(2))
    assert len(MoleculeTensors([], encode_tokens([], vocab, 4), torch.zeros(0, 1))) == 0  # an empty split
