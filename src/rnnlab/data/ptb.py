"""The Penn Treebank layout of Mikolov's ``simple-examples`` (read by the word-lm task).

A directory with one file per split, ``*.train.txt``, ``*.valid.txt``, ``*.test.txt``
(``ptb.train.txt``, ...; plain ``train.txt`` / ``valid.txt`` / ``test.txt`` as in PyTorch's
word_language_model example are accepted too): UTF-8, one sentence per line, words separated
by whitespace. :func:`read_sentences` appends ``<eos>`` to every line.

:func:`make_ptb_layout` builds such a directory from any text file, e.g. Tiny Shakespeare:

    python -c "from rnnlab.data.ptb import make_ptb_layout; \\
               make_ptb_layout('data/tinyshakespeare/input.txt', '/tmp/shakespeare-ptb')"
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .text import DataError, read_text
from .tokenize import tokenize_words
from .vocab import EOS, UNK

__all__ = ["SPLITS", "ptb_layout_lines", "make_ptb_layout", "find_split_files",
           "read_sentences"]

SPLITS = ("train", "valid", "test")


def ptb_layout_lines(text: str, min_count: int = 3) -> dict[str, list[str]]:
    """``text`` as PTB-layout lines per split: ``{"train": [...], "valid": [...], "test":
    [...]}``, each line its tokens joined by one space.

    Every non-blank line of ``text`` becomes one line of tokens
    (:func:`rnnlab.data.tokenize.tokenize_words`); tokens seen fewer than ``min_count`` times
    in the whole text become ``<unk>`` (as Mikolov's PTB keeps a vocabulary of the whole
    corpus); the lines are split 90/5/5 contiguously.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    lines = [tokens for tokens in map(tokenize_words, text.splitlines()) if tokens]
    if len(lines) < 3:
        raise DataError(f"the text has {len(lines)} non-blank line(s); a 90/5/5 split needs "
                        f"at least 3")
    counts = Counter(w for tokens in lines for w in tokens)
    joined = [" ".join(w if counts[w] >= min_count else UNK for w in tokens)
              for tokens in lines]
    n_valid = n_test = max(1, len(joined) // 20)
    n_train = len(joined) - n_valid - n_test
    return {"train": joined[:n_train], "valid": joined[n_train:n_train + n_valid],
            "test": joined[n_train + n_valid:]}


def make_ptb_layout(text_file, out_dir, min_count: int = 3, prefix: str = "ptb"
                    ) -> dict[str, Path]:
    """Write ``out_dir/{prefix}.{train,valid,test}.txt`` from the UTF-8 ``text_file`` with
    :func:`ptb_layout_lines`; returns the three paths. ``out_dir`` is created if needed."""
    splits = ptb_layout_lines(read_text(text_file), min_count)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, lines in splits.items():
        paths[split] = out / f"{prefix}.{split}.txt"
        paths[split].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return paths


def find_split_files(directory) -> dict[str, Path]:
    """``{"train": path, "valid": path, "test": path}`` in ``directory``: the one file named
    ``*.<split>.txt`` or ``<split>.txt`` per split; :class:`DataError` otherwise."""
    root = Path(directory)
    if not root.exists():
        raise DataError(f"data directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {str(root)!r} is not a directory; word-lm reads a "
                        f"directory in the Penn Treebank layout (*.train.txt, *.valid.txt, "
                        f"*.test.txt)")
    files = {}
    for split in SPLITS:
        found = sorted({*root.glob(f"*.{split}.txt"), *root.glob(f"{split}.txt")})
        if not found:
            raise DataError(f"data directory {str(root)!r} has no {split} split: expected a "
                            f"file named *.{split}.txt (e.g. ptb.{split}.txt) or {split}.txt")
        if len(found) > 1:
            raise DataError(f"data directory {str(root)!r} has {len(found)} {split} files ("
                            + ", ".join(p.name for p in found) + "); keep exactly one")
        files[split] = found[0]
    return files


def read_sentences(path) -> list[list[str]]:
    """The lines of a split file as word lists, ``<eos>`` appended to each."""
    text = read_text(path)              # DataError: missing, empty, or bad UTF-8 (with line)
    sentences = [line.split() + [EOS] for line in text.splitlines()]
    if all(len(s) == 1 for s in sentences):
        raise DataError(f"data file {str(path)!r} has no words (only blank lines)")
    return sentences
