"""One vocabulary class for every text task: token <-> id, with the special tokens.

The special-token strings are defined here once; each task picks which of them it uses and
in which order (the order fixes their ids, and saved runs depend on it):

    char-lm      no specials; the sorted characters of the text (saved as one string)
    word-lm      no leading specials; ``<eos>`` is a word, ``<unk>`` appended if unseen
    sentiment    <pad> <unk>
    pos          <pad> <unk>               (words and characters; tags have none)
    translate    <pad> <unk> <bos> <eos>
    caption      <pad> <bos> <eos> <unk>

A :class:`Vocab` is a list of tokens in id order (:attr:`Vocab.tokens`) and its inverse
(:attr:`Vocab.index`); :meth:`Vocab.to_list` / :meth:`Vocab.from_list` give the JSON-able
list that a task writes to ``task_state.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

__all__ = ["Vocab", "PAD", "UNK", "BOS", "EOS"]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"

Order = Literal["sorted", "count", "count-first"]


class Vocab:
    """Tokens in id order: ``tokens[i]`` is the token of id ``i``, ``index[t]`` its id."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens: list[str] = list(tokens)
        """The tokens in id order: ``tokens[i]`` is the token of id ``i``."""
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        """Each token's id: ``index[tokens[i]] == i``."""

    @classmethod
    def build(cls, counts: Mapping[str, int], min_count: int = 1,
              specials: Sequence[str] = (), order: Order = "sorted") -> Vocab:
        """``specials`` followed by the tokens counted at least ``min_count`` times, in
        ``order``: "sorted" (by the token), "count" (descending count, ties by the token)
        or "count-first" (descending count, ties in the mapping's order, i.e. the first
        occurrence for a :class:`collections.Counter`)."""
        kept = [t for t, n in counts.items() if n >= min_count]
        if order == "sorted":
            kept.sort()
        elif order == "count":
            kept.sort(key=lambda t: (-counts[t], t))
        elif order == "count-first":
            kept.sort(key=lambda t: -counts[t])          # stable: ties keep their order
        else:
            raise ValueError(f"unknown order {order!r}; valid: sorted, count, count-first")
        return cls([*specials, *kept])

    @classmethod
    def from_list(cls, tokens, specials: Sequence[str] = ()) -> Vocab:
        """The vocabulary of a saved list; :class:`ValueError` unless ``tokens`` is a
        non-empty list of strings starting with ``specials``."""
        if (not isinstance(tokens, list) or not tokens
                or not all(isinstance(t, str) for t in tokens)
                or tokens[:len(specials)] != list(specials)):
            raise ValueError("not a vocabulary: expected a non-empty list of strings"
                             + (f" starting {' '.join(specials)}" if specials else ""))
        return cls(tokens)

    def to_list(self) -> list[str]:
        """The JSON-able form: the tokens in id order (what :meth:`from_list` reads)."""
        return self.tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __getitem__(self, i: int) -> str:
        return self.tokens[i]

    def __repr__(self) -> str:
        return f"Vocab({len(self.tokens)} tokens)"

    def id(self, token: str, default: int | None = None) -> int | None:
        """The id of ``token``, or ``default`` when it is not in the vocabulary."""
        return self.index.get(token, default)

    def encode(self, tokens: Iterable[str], unk: str | None = UNK) -> list[int]:
        """Ids of ``tokens``; unknown ones map to ``unk``'s id (KeyError when ``unk`` is
        None or not in the vocabulary and a token is unknown)."""
        if unk is None or unk not in self.index:
            return [self.index[t] for t in tokens]
        default = self.index[unk]
        return [self.index.get(t, default) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ``ids``."""
        return [self.tokens[i] for i in ids]
