"""Molecule strings as token sequences: the SMILES regex tokenizer, SELFIES, and the vocabulary.

A :class:`Tokenizer` turns one molecule string into a list of tokens and back; the
:class:`Vocabulary` maps tokens to integer ids with four special tokens (padding,
begin, end, unknown) and is built from the training data, then stored with the model.

SMILES tokens are bracket atoms (``[nH]``, ``[C@@H]``, ``[O-]``), the two-letter organic
elements ``Cl`` and ``Br``, single-letter atoms, bonds, branches, and ring closures
(``1``-``9`` and ``%nn``). With ``representation="selfies"`` the SMILES is first
translated by the ``selfies`` package and split into its bracketed symbols; decoding
goes back to SMILES, so callers always see SMILES.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import selfies as sf

from vaecore.errors import InputDataError, brief, integer_at_least

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
REPRESENTATIONS: tuple[str, ...] = ("smiles", "selfies")

# Order matters: bracket atoms first (they may contain anything but ']'), then the
# two-letter organic-subset halogens before their one-letter prefixes B and C, then
# '%nn' ring closures before single digits.
_SMILES_ATOM_PATTERN = (
    r"\[[^\[\]]+\]"  # bracket atom
    r"|Br|Cl"  # two-letter organic subset
    r"|[BCNOPSFI]|[bcnops]"  # one-letter organic subset (aliphatic, aromatic)
    r"|\*"  # wildcard atom
)
_SMILES_ATOM = re.compile(_SMILES_ATOM_PATTERN)
_SMILES_TOKEN = re.compile(
    _SMILES_ATOM_PATTERN
    + r"|%\d{2}|\d"  # ring closures
    r"|[=#\-\+\\/:~\(\)\.\$@\?>]"  # bonds, branches, dot and reaction marks
)
# SELFIES symbols that are not atoms: a string of only these decodes to an empty molecule.
_SELFIES_NON_ATOM = ("Branch", "Ring", "nop")


class TokenizationError(InputDataError):
    """A string that cannot be split into tokens; ``reason`` is a short machine label."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES string into regex tokens.

    Raises:
        TokenizationError: If some character is not covered by any token (reason
            ``untokenizable``); the message names the position and the character. A
            non-string has the reason ``empty``, as a non-string cell does in a data file.
    """
    if not isinstance(smiles, str):
        raise TokenizationError(f"a SMILES must be a string, got {type(smiles).__name__} {smiles!r}", "empty")
    tokens: list[str] = []
    pos = 0
    for match in _SMILES_TOKEN.finditer(smiles):
        if match.start() != pos:
            break
        tokens.append(match.group())
        pos = match.end()
    if pos != len(smiles):
        raise TokenizationError(
            f"cannot tokenize SMILES {smiles!r}: unexpected {smiles[pos]!r} at position {pos}",
            "untokenizable",
        )
    return tokens


@dataclass(frozen=True)
class Tokenizer:
    """Molecule string <-> tokens for one representation.

    Args:
        representation: ``smiles`` (regex tokens) or ``selfies`` (SELFIES symbols).
    """

    representation: str = "smiles"

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise InputDataError(
                f"unknown representation {self.representation!r}; choose from {list(REPRESENTATIONS)}"
            )

    def tokenize(self, smiles: str) -> list[str]:
        """Tokens of a SMILES string in this representation.

        Raises:
            TokenizationError: ``untokenizable`` (SMILES) or ``selfies_error`` (SELFIES
                encoder refused the molecule).
        """
        if self.representation == "smiles":
            return tokenize_smiles(smiles)
        try:
            encoded = sf.encoder(smiles)
        except sf.EncoderError as err:
            raise TokenizationError(f"SELFIES cannot encode {smiles!r}: {err}", "selfies_error") from err
        if encoded is None:  # older selfies versions signal failure with None
            raise TokenizationError(f"SELFIES cannot encode {smiles!r}", "selfies_error")
        return list(sf.split_selfies(encoded))

    def starts_molecule(self, token: str) -> bool:
        """Whether a molecule's first token may be ``token``: an atom, in either representation.

        Decoding allows only such tokens at its first step. A SMILES cannot begin with a
        bond, branch or ring digit, and SELFIES skips ring and branch symbols that follow no
        atom, so without this a sample could decode to an empty molecule.
        """
        if self.representation == "smiles":
            return _SMILES_ATOM.fullmatch(token) is not None
        return token.startswith("[") and not any(word in token for word in _SELFIES_NON_ATOM)

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Join tokens back into a SMILES string (SELFIES are decoded to SMILES).

        Never raises: a SELFIES string the decoder refuses yields ``""``.
        """
        text = "".join(tokens)
        if self.representation == "smiles":
            return text
        try:
            return sf.decoder(text) or ""
        except sf.DecoderError:
            return ""


class Vocabulary:
    """Token <-> id map; ids 0-3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.

    Args:
        tokens: The ordinary tokens, in id order (special tokens are prepended).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        ordinary = [t for t in tokens if t not in SPECIAL_TOKENS]
        if len(set(ordinary)) != len(ordinary):
            raise InputDataError("vocabulary tokens must be unique")
        self.itos: list[str] = list(SPECIAL_TOKENS) + ordinary
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_index = SPECIAL_TOKENS.index(PAD)
    bos_index = SPECIAL_TOKENS.index(BOS)
    eos_index = SPECIAL_TOKENS.index(EOS)
    unk_index = SPECIAL_TOKENS.index(UNK)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """Vocabulary of every token seen at least ``min_count`` times, most frequent first.

        Raises:
            InputDataError: ``min_count`` is not an integer >= 1, or an item of
                ``token_lists`` is a string (it would be split into characters) rather
                than its tokens (``tokenize_smiles(smiles)``).
        """
        min_count = integer_at_least("min_count", min_count, 1)
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            if isinstance(tokens, str):
                raise InputDataError(f"token_lists must hold lists of tokens, got the string {tokens!r}; tokenize it first")
            counts.update(tokens)
        # Sort by (-count, token) so that the same data always gives the same ids.
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The tokens not in the vocabulary, in order of appearance, without repeats."""
        return list(dict.fromkeys(t for t in tokens if t not in self.stoi))

    def encode(self, tokens: Sequence[str], length: int) -> list[int]:
        """Ids of ``tokens + <eos>``, padded with ``<pad>`` to ``length``.

        Raises:
            InputDataError: If ``len(tokens) + 1 > length``.
        """
        if len(tokens) + 1 > length:
            raise InputDataError(f"{len(tokens)} tokens do not fit in length {length} (with <eos>)")
        ids = [self.stoi.get(t, self.unk_index) for t in tokens] + [self.eos_index]
        return ids + [self.pad_index] * (length - len(ids))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to (not including) the first ``<eos>``; ``<pad>`` and ``<bos>`` dropped."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.eos_index:
                break
            if i in (self.pad_index, self.bos_index):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-able form, stored in checkpoints' ``extra``."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        """The vocabulary :meth:`to_dict` stored.

        Raises:
            InputDataError: ``data`` has no ``itos`` list of strings starting with the
                special tokens, or repeats a token.
        """
        stored = data.get("itos") if isinstance(data, dict) else None
        if not isinstance(stored, list) or not all(isinstance(t, str) for t in stored):
            raise InputDataError(f"a stored vocabulary needs an 'itos' list of token strings, got {brief(data, 200)}")
        itos = list(stored)
        if tuple(itos[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise InputDataError(f"stored vocabulary does not start with the special tokens {SPECIAL_TOKENS}")
        return cls(itos[len(SPECIAL_TOKENS):])
