"""Tab-separated text files: labelled sentences (sentiment) and sentence pairs (translate)."""

from __future__ import annotations

import gzip
from pathlib import Path

from .text import DataError, read_bytes, read_text

__all__ = ["read_labelled", "read_pairs"]


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


def read_labelled(path: str | Path) -> list[tuple[str, str, int]]:
    """``(sentence, label, line number)`` for each non-blank ``sentence<TAB>label`` line.

    Splits on the last TAB; :class:`DataError` ``file:line: ...`` for a line without a TAB,
    an empty sentence or an empty label, and for a file with no examples.
    """
    rows = []
    # split on "\n" only: imdb_labelled.txt has U+0085 inside sentences (splitlines breaks it)
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        sentence, tab, label = line.rpartition("\t")
        if not tab:
            raise DataError(f"{path}:{lineno}: no TAB in the line; expected "
                            f"'sentence<TAB>label', got {_clip(line)!r}")
        if not label.strip():
            raise DataError(f"{path}:{lineno}: empty label after the TAB; expected "
                            f"'sentence<TAB>label'")
        if not sentence.strip():
            raise DataError(f"{path}:{lineno}: empty sentence before the TAB; expected "
                            f"'sentence<TAB>label'")
        rows.append((sentence, label.strip(), lineno))
    if not rows:
        raise DataError(f"{path}: no 'sentence<TAB>label' lines (only blank lines)")
    return rows


def read_pairs(path: str | Path) -> list[tuple[int, str, str]]:
    """``(line number, column 1, column 2)`` for each non-blank line of a TSV (plain or
    ``.gz``); :class:`DataError` naming ``file:line`` for a line without a TAB or with an
    empty side."""
    path = Path(path)
    raw = read_bytes(path, "a TSV file")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"data file {str(path)!r} is not a readable gzip file: {e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(f"{path}:{lineno}: no TAB; each line must be "
                            f"'source<TAB>target' (more columns after these are ignored), "
                            f"got {line[:60]!r}")
        for side, col in (("first (source)", cols[0]), ("second (target)", cols[1])):
            if not col.strip():
                raise DataError(f"{path}:{lineno}: the {side} column is empty; both sides "
                                f"of a pair need text")
        pairs.append((lineno, cols[0], cols[1]))
    if not pairs:
        raise DataError(f"data file {str(path)!r} holds no pairs (it is empty or blank)")
    return pairs
