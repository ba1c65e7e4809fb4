"""Reading CoNLL-U, the file format of Universal Dependencies treebanks (words and UPOS tags).

A CoNLL-U file (https://universaldependencies.org/format.html) holds sentences separated by
blank lines. Each word is one line of 10 tab-separated columns

    ID  FORM  LEMMA  UPOS  XPOS  FEATS  HEAD  DEPREL  DEPS  MISC
    1   The   the    DET   DT    ...    2     det     2:det _

Lines starting with ``#`` are comments (``# sent_id = ...``, ``# text = ...``). Two kinds of
line are not words and are skipped: multiword tokens, whose ID is a range (``3-4  don't``;
their words follow as ``3 do`` and ``4 n't``), and empty nodes of enhanced dependencies,
whose ID is a decimal (``8.1``). Only FORM and UPOS are kept.

    sentences = read_conllu("en_ewt-ud-dev.conllu.gz")     # plain or gzip
    sentences[0].words, sentences[0].tags                   # ('From', 'the', ...), ('ADP', ...)
    ud_split_files("ud_english_ewt")                        # {"train": Path, "dev": ..., ...}

Anything malformed (a wrong number of columns, an ID that is not a word index or out of
order, an empty FORM or UPOS, bytes that are not UTF-8, a truncated or corrupt .gz) raises
:class:`~rnnlab.data.text.DataError` whose message starts with ``FILE:LINE:``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from .text import DataError, read_lines

__all__ = ["Sentence", "read_conllu", "ud_split_files", "COLUMNS"]

COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
_RANGE = re.compile(r"[0-9]+-[0-9]+")          # multiword token: 3-4
_EMPTY_NODE = re.compile(r"[0-9]+\.[0-9]+")    # empty node: 8.1
_WORD_ID = re.compile(r"[0-9]+")               # word: 1, 2, ...


class Sentence(NamedTuple):
    """One sentence: its word forms and their UPOS tags, equally long."""

    words: tuple[str, ...]
    tags: tuple[str, ...]


def read_conllu(path: str | Path) -> list[Sentence]:
    """The sentences of a CoNLL-U file (``.gz``: gzip-compressed), as words and UPOS tags.

    Raises :class:`DataError` (``FILE:LINE: what was wrong``) for malformed input and for a
    file with no sentences.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    for lineno, raw in read_lines(path, "a CoNLL-U file"):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            hint = (" (it looks gzip-compressed: name it .gz)"
                    if lineno == 1 and raw.startswith(b"\x1f\x8b") else "")
            raise DataError(f"{path}:{lineno}: not UTF-8: byte 0x{raw[e.start]:02x} at column "
                            f"{e.start + 1} cannot be decoded (CoNLL-U files are UTF-8){hint}"
                            ) from None
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():                       # a blank line ends the sentence
            if words:
                sentences.append(Sentence(tuple(words), tuple(tags)))
                words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            hint = " (separated by spaces instead of tabs?)" if len(cols) < 10 and " " in line \
                else ""
            raise DataError(f"{path}:{lineno}: expected 10 tab-separated columns "
                            f"({' '.join(COLUMNS)}), got {len(cols)}{hint}")
        wid, form, upos = cols[0], cols[1], cols[3]
        if _RANGE.fullmatch(wid) or _EMPTY_NODE.fullmatch(wid):
            continue                               # multiword token or empty node
        if not _WORD_ID.fullmatch(wid):
            raise DataError(f"{path}:{lineno}: ID {wid!r} is not an integer word index (nor a "
                            f"range such as 3-4 or an empty node such as 3.1)")
        if int(wid) != len(words) + 1:
            raise DataError(f"{path}:{lineno}: word ID {wid} is out of order: expected "
                            f"{len(words) + 1} (IDs count 1, 2, ... in each sentence, and a "
                            f"blank line ends a sentence)")
        if not form:
            raise DataError(f"{path}:{lineno}: word {wid} has an empty FORM (column 2)")
        if upos in ("", "_") or upos != upos.strip():
            raise DataError(f"{path}:{lineno}: word {wid} ({form!r}) has no UPOS tag "
                            f"(column 4 is {upos!r}); expected a tag such as NOUN or VERB")
        words.append(form)
        tags.append(upos)
    if words:                                      # the last sentence may lack a blank line
        sentences.append(Sentence(tuple(words), tuple(tags)))
    if not sentences:
        raise DataError(f"{path}: no sentences: the file has no word lines (10 tab-separated "
                        f"columns, ID 1, 2, ...)")
    return sentences


def ud_split_files(directory: str | Path) -> dict[str, Path]:
    """The train, dev and test files of a UD treebank folder: ``*-ud-train.conllu``,
    ``*-ud-dev.conllu`` and ``*-ud-test.conllu``, each plain or ``.gz``.

    Raises :class:`DataError` naming what is missing or ambiguous.
    """
    directory = Path(directory)
    found: dict[str, Path] = {}
    for split in ("train", "dev", "test"):
        matches = sorted(p for pattern in (f"*-ud-{split}.conllu", f"*-ud-{split}.conllu.gz")
                         for p in directory.glob(pattern))
        if not matches:
            present = sorted(p.name for p in directory.glob("*.conllu*"))
            raise DataError(f"data folder {str(directory)!r} has no *-ud-{split}.conllu "
                            f"(or .conllu.gz) file; a UD treebank folder holds "
                            f"*-ud-train/dev/test.conllu; CoNLL-U files there: "
                            f"{', '.join(present) or 'none'}")
        if len(matches) > 1:
            raise DataError(f"data folder {str(directory)!r} has more than one {split} file: "
                            f"{', '.join(p.name for p in matches)}; keep one")
        found[split] = matches[0]
    return found
