"""Molecule data: reading SMILES, skip-and-count checking, splits.

Bad molecules never crash a run. :func:`check_molecules` sorts every input string
into "kept" or one skip reason (see :data:`SKIP_REASONS`), with RDKit's own log lines
blocked so that a file of broken SMILES prints one summary line, not one line each.

Sources (``--data``): ``moses`` (the MOSES train / test / test-scaffold files, fetched
from the pinned ``molsets`` wheel through :func:`vaecore.datasets.fetch_member`),
``fixture`` (``data/fixtures/moses_small.csv``), or any CSV path with a SMILES column.
Checked molecules become tensors and batches in :mod:`chemvae.batches`.
"""

from __future__ import annotations

import functools
import gzip
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from chemvae.rdkit_utils import map_chunks, quiet_rdkit, smiles_list
from chemvae.tokens import TokenizationError, Tokenizer, Vocabulary
from vaecore.datasets import REPO_DATA_DIR, fetch_member
from vaecore.errors import InputDataError, brief, integer_at_least

FIXTURE_CSV = REPO_DATA_DIR / "fixtures" / "moses_small.csv"

# Every reason a molecule can be skipped, in the order the checks run.
SKIP_REASONS: tuple[str, ...] = (
    "empty",  # empty cell, NaN, whitespace or a non-string
    "unparsable",  # RDKit cannot read the SMILES syntax
    "valence",  # parsed, but an atom has an impossible valence
    "sanitize",  # parsed, but other sanitization failed (e.g. kekulization)
    "untokenizable",  # a character no SMILES token covers
    "selfies_error",  # the SELFIES encoder refused the molecule
    "too_long",  # more tokens than the model's maximum length
    "unknown_token",  # a token outside the model's vocabulary
)


@dataclass(frozen=True)
class MoleculeIssue:
    """Why one input molecule was skipped."""

    index: int
    smiles: object
    reason: str
    message: str

    def describe(self) -> str:
        return f"molecule {self.index} ({brief(self.smiles)}): {self.reason}: {self.message}"


@dataclass
class CheckedMolecules:
    """The outcome of :func:`check_molecules`.

    Attributes:
        indices: Positions, in the input, of the kept molecules.
        smiles: Their SMILES (canonical when checking canonicalized).
        tokens: Their token lists in the tokenizer's representation.
        skipped: Count of skipped molecules per reason.
        first_issue: The first skipped molecule, for error messages.
        total: Number of input molecules.
    """

    indices: list[int] = field(default_factory=list)
    smiles: list[str] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    first_issue: MoleculeIssue | None = None
    total: int = 0

    def summary(self, what: str = "molecules") -> str:
        """One line: ``kept 1990 of 2000 molecules; skipped 10 (unparsable 7, too_long 3)``."""
        n_skipped = sum(self.skipped.values())
        line = f"kept {len(self.indices)} of {self.total} {what}"
        if n_skipped:
            reasons = ", ".join(f"{r} {self.skipped[r]}" for r in SKIP_REASONS if self.skipped[r])
            line += f"; skipped {n_skipped} ({reasons})"
        return line


def _check_one(
    smiles: object, tokenizer: Tokenizer, max_length: int, vocab: Vocabulary | None, canonicalize: bool
) -> tuple[str, list[str]] | tuple[None, tuple[str, str]]:
    """``(smiles, tokens)`` for a usable molecule, else ``(None, (reason, message))``."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None, ("empty", "no SMILES in this cell")
    smiles = smiles.strip()
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None or mol.GetNumAtoms() == 0:
        return None, ("unparsable", "RDKit cannot parse it")
    # catchErrors returns the failing step instead of raising (and logging) an exception.
    failed = Chem.SanitizeMol(mol, catchErrors=True)
    if failed != Chem.SanitizeFlags.SANITIZE_NONE:
        if failed == Chem.SanitizeFlags.SANITIZE_PROPERTIES:
            return None, ("valence", "an atom has an impossible valence")
        return None, ("sanitize", f"RDKit sanitization failed at {failed}")
    if canonicalize:
        # RDKit's canonical form, as MolFromSmiles + MolToSmiles (and canonical_smiles) give
        # it: parsed without sanitizing, the molecule keeps explicit [H] atoms that the default
        # parse removes ('[H]c1ccccc1' stayed itself, not c1ccccc1, and was then an unknown
        # token, or 'too_long'; 221 MOSES training molecules are written '[H]N=c1...').
        try:
            mol = Chem.RemoveHs(mol)
        except Exception as err:  # noqa: BLE001 - RDKit raises several types; the molecule is skipped, by reason
            return None, ("sanitize", f"RDKit could not remove its explicit hydrogens ({type(err).__name__})")
        smiles = Chem.MolToSmiles(mol)
    try:
        tokens = tokenizer.tokenize(smiles)
    except TokenizationError as err:
        return None, (err.reason, str(err))
    if len(tokens) > max_length:
        return None, ("too_long", f"{len(tokens)} tokens, the maximum is {max_length}")
    if vocab is not None:
        unknown = vocab.unknown(tokens)
        if unknown:
            return None, ("unknown_token", f"tokens {unknown} are not in the vocabulary")
    return smiles, tokens


def _check_items(chunk: Sequence[object], *, tokenizer: Tokenizer, max_length: int, vocab: Vocabulary | None,
                 canonicalize: bool) -> list[tuple]:
    """:func:`_check_one` over a chunk (module level so that worker processes can run it)."""
    with quiet_rdkit():  # RDKit's per-molecule complaints are counted, not printed
        return [_check_one(s, tokenizer, max_length, vocab, canonicalize) for s in chunk]


def check_molecules(
    smiles: Sequence[object],
    tokenizer: Tokenizer,
    *,
    max_length: int,
    vocab: Vocabulary | None = None,
    canonicalize: bool = True,
    n_jobs: int = 1,
    chunk_size: int = 20_000,
    progress: bool = True,
) -> CheckedMolecules:
    """Keep the usable molecules, count the others by reason.

    Args:
        smiles: Input strings (anything else counts as ``empty``).
        tokenizer: Representation to tokenize into.
        max_length: Longest allowed token sequence (without ``<eos>``).
        vocab: If given, molecules with tokens outside it are skipped (``unknown_token``).
        canonicalize: Replace each SMILES by RDKit's canonical form before tokenizing.
        n_jobs: Worker processes for long lists (``-1``: every core).
        chunk_size: Molecules per worker task.
        progress: Show a progress bar over the chunks.

    Returns:
        :class:`CheckedMolecules`, in input order; never raises for bad molecules.

    Raises:
        InputDataError: ``smiles`` is one string rather than a sequence of them, or
            ``max_length`` is not an integer >= 1.
    """
    smiles = smiles_list(smiles, "smiles")
    max_length = integer_at_least("max_length", max_length, 1)
    check = functools.partial(_check_items, tokenizer=tokenizer, max_length=max_length, vocab=vocab,
                              canonicalize=canonicalize)
    results = map_chunks(check, smiles, n_jobs=n_jobs, chunk_size=chunk_size, desc="checking molecules",
                         progress=progress)
    out = CheckedMolecules(total=len(smiles))
    for i, (good, info) in enumerate(results):
        if good is None:
            reason, message = info
            out.skipped[reason] += 1
            if out.first_issue is None:
                out.first_issue = MoleculeIssue(i, smiles[i], reason, message)
            continue
        out.indices.append(i)
        out.smiles.append(good)
        out.tokens.append(info)
    return out


# Data sources named rather than given by path (each verified by its own checksum).
NAMED_SOURCES = ("moses", "fixture")


# A SMILES file: one molecule a line, its SMILES first, anything after whitespace (or a comma) its name.
SMILES_FILE_SUFFIXES = (".smi", ".smiles")


def read_smiles_csv(path: str | Path, smiles_column: str = "smiles") -> pd.DataFrame:
    """Read a CSV whose SMILES column is matched exactly, else case-insensitively.

    Commas separate the columns, or tabs or semicolons where the header line has them and
    no comma. A SMILES file (:data:`SMILES_FILE_SUFFIXES`, optionally ``.gz``) is read by
    :func:`read_smiles_file` instead, ``smiles_column`` aside.

    Returns:
        The table with that column renamed ``smiles`` and empty cells as ``""``.

    Raises:
        InputDataError: Missing, empty or unreadable file (binary, a damaged ``.gz``, ragged
            rows), no such column (the message lists the columns) or more than one.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"no data file at {path}")
    if path.suffix.lower() in SMILES_FILE_SUFFIXES or (
            path.suffix.lower() == ".gz" and Path(path.stem).suffix.lower() in SMILES_FILE_SUFFIXES):
        return read_smiles_file(path)
    try:
        header, sep = pd.read_csv(path, nrows=0).columns, ","
        if len(header) == 1 and (other := next((d for d in "\t;" if d in str(header[0])), None)):
            # A tab- or semicolon-separated table (a .tsv, a spreadsheet's export) read as
            # one column named by the whole header line.
            header, sep = pd.read_csv(path, nrows=0, sep=other).columns, other
        matches = [c for c in header if str(c) == smiles_column]  # an exact match wins...
        matches = matches or [c for c in header if str(c).lower() == smiles_column.lower()]
        if not matches:
            raise InputDataError(f"{path} has no SMILES column {smiles_column!r}; its columns are {list(header)}")
        if len(matches) > 1:  # ...else which of 'Smiles' and 'SMILES' was meant? The first was taken.
            raise InputDataError(f"{path} has {len(matches)} columns that match {smiles_column!r} only "
                                 f"case-insensitively: {matches}; rename the one to read {smiles_column!r}")
        # Read SMILES verbatim: pandas would turn strings such as "NA" into NaN.
        table = pd.read_csv(path, sep=sep, dtype={matches[0]: str}, keep_default_na=False, na_values={})
    except pd.errors.EmptyDataError as err:
        raise InputDataError(f"{path} is empty (no header row naming a SMILES column)") from err
    except (UnicodeDecodeError, pd.errors.ParserError, OSError, EOFError) as err:
        # A binary file, a damaged .gz (BadGzipFile is an OSError) or ragged rows.
        raise InputDataError(f"{path} cannot be read as a CSV table: {err}") from err
    return table.rename(columns={matches[0]: "smiles"})


def read_smiles_file(path: str | Path) -> pd.DataFrame:
    """Read a SMILES file: a molecule a line, its SMILES first, a name after whitespace or a comma.

    It was refused as a CSV without a SMILES column ("its columns are ['CCOC(=O)c1...']").
    A first line whose first word is ``smiles`` (any case) is a header; blank lines are
    skipped.

    Returns:
        Columns ``smiles`` and ``name`` (``""`` where a line has none).

    Raises:
        InputDataError: An unreadable file (binary, a damaged ``.gz``), naming it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            # No SMILES holds a space, a tab or a comma: any of them ends it ("CCO,ethanol" too).
            rows = [re.split(r"[\s,]+", line.strip(), maxsplit=1) for line in fh if line.strip()]
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise InputDataError(f"{path} cannot be read as a SMILES file: {err}") from err
    if rows and rows[0][0].lower() == "smiles":
        rows = rows[1:]
    return pd.DataFrame({"smiles": [row[0] for row in rows],
                         "name": [row[1].strip() if len(row) > 1 else "" for row in rows]})


def moses_smiles(split: str) -> list[str]:
    """SMILES of a MOSES split: ``train``, ``test`` or ``test_scaffolds``."""
    path = fetch_member("moses", f"{split}.csv.gz")
    return read_smiles_csv(path, "SMILES")["smiles"].tolist()


@dataclass
class DataSplits:
    """Raw SMILES for training, validation and evaluation.

    Attributes:
        train, valid, test: Input strings (unchecked).
        test_scaffolds: MOSES scaffold-split test set, or ``None``.
        reference: Molecules generated ones are compared with for novelty (the full
            training file for MOSES, the training split otherwise).
        test_source: Where ``test`` came from: ``"moses"`` (the official test file),
            ``"split column"`` (a CSV's rows marked ``test``) or ``"test_fraction"``.
        valid_source: Where ``valid`` came from: ``"split column"`` (a CSV's rows marked
            ``valid``) or ``"valid_fraction"``.
    """

    train: list[str]
    valid: list[str]
    test: list[str]
    test_scaffolds: list[str] | None
    reference: list[str]
    test_source: str = "test_fraction"
    valid_source: str = "valid_fraction"


# The values a CSV's split column may hold (case-insensitive), and the split each names.
SPLIT_VALUES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid", "test": "test",
                "test_scaffolds": "test_scaffolds"}


def _split_column(table: pd.DataFrame, data: str) -> pd.Series | None:
    """The split of each row (:data:`SPLIT_VALUES`' names) from a ``split`` column, if any.

    Matched case-insensitively, as MOSES's own ``dataset_v1.csv`` spells it ``SPLIT``, whose
    ``test_scaffolds`` rows went into the training pool and whose column was not read.

    Raises:
        InputDataError: Two such columns, or values other than :data:`SPLIT_VALUES`', named.
    """
    columns = [c for c in table.columns if str(c).lower() == "split"]
    if not columns:
        return None
    if len(columns) > 1:
        raise InputDataError(f"{data}: {len(columns)} columns name the split ({columns}); keep one")
    values = table[columns[0]].astype(str).str.strip().str.lower()
    if unknown := sorted(set(values) - set(SPLIT_VALUES)):
        raise InputDataError(f"{data}: its {columns[0]!r} column holds {unknown[:5]}; a split is one of "
                             f"{sorted(SPLIT_VALUES)}")
    return values.map(SPLIT_VALUES)


def load_splits(
    data: str,
    *,
    smiles_column: str = "smiles",
    max_molecules: int | None = None,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Deterministic splits of a data source (the same arguments give the same splits).

    ``moses`` uses the official test files and draws train/valid from its training
    file. A CSV with a ``split`` column (any case; values in :data:`SPLIT_VALUES`) uses
    its ``test``, ``valid`` and ``test_scaffolds`` rows as those sets; a CSV without
    ``test`` rows is split at random by ``test_fraction``. ``max_molecules`` caps the
    number of training molecules (a seeded random subset); without ``valid`` rows the
    validation set is ``valid_fraction`` of the molecules used, at most 10,000.
    """
    if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1:
        raise InputDataError(f"fractions must be in [0, 1), got {valid_fraction}, {test_fraction}")
    if max_molecules is not None:  # None: all
        integer_at_least("max_molecules", max_molecules, 1)
    rng = np.random.default_rng(seed)
    if data == "moses":
        pool = moses_smiles("train")
        test, scaffolds, reference = moses_smiles("test"), moses_smiles("test_scaffolds"), pool
        test_source, given_valid = "moses", None
    else:
        table = read_smiles_csv(FIXTURE_CSV if data == "fixture" else data, smiles_column)
        if len(table) == 0:
            raise InputDataError(f"{data}: the file has no rows")
        split = _split_column(table, data)
        if split is None:
            split = pd.Series("train", index=table.index)
        rows = {name: table["smiles"][split == name].tolist() for name in ("valid", "test_scaffolds")}
        given_valid, scaffolds = rows["valid"] or None, rows["test_scaffolds"] or None
        if (split == "test").any():
            pool, test = table["smiles"][split == "train"].tolist(), table["smiles"][split == "test"].tolist()
            test_source = "split column"
        else:
            rest = table["smiles"][split == "train"].to_numpy()
            order = rng.permutation(len(rest))
            n_test = int(round(test_fraction * len(rest)))
            test, pool = rest[order[:n_test]].tolist(), rest[order[n_test:]].tolist()
            test_source = "test_fraction"
        reference = None
    order = rng.permutation(len(pool))
    # The validation set scales with the molecules used (capped at 10k): a 2k-molecule
    # run on MOSES should not spend its time validating on 10k molecules.
    n_used = len(pool) if max_molecules is None else min(len(pool), max_molecules)
    n_valid = min(int(math.ceil(valid_fraction * n_used)), 10_000) if valid_fraction > 0 and not given_valid else 0
    valid = given_valid or [pool[i] for i in order[:n_valid]]
    train_idx = order[n_valid:] if max_molecules is None else order[n_valid : n_valid + max_molecules]
    train = [pool[i] for i in train_idx]
    if not train:
        raise InputDataError(f"{data}: no molecule left to train on: {len(pool) + len(test)} rows, {len(test)} "
                             f"held out for test and {n_valid} for validation; lower --test-fraction / "
                             "--valid-fraction or use a larger file")
    return DataSplits(train, valid, test, scaffolds, train if reference is None else reference, test_source,
                      "split column" if given_valid else "valid_fraction")
