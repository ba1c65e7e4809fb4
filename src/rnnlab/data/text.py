"""Reading UTF-8 text, and the default English corpus that ships with Python.

The default corpus is the standard library's ``pydoc_data.topics.topics``: about 80 pages of
the Python language reference (~465 KB of English prose and code), joined in key order.
It needs no download and no data files in the project.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

__all__ = ["DataError", "read_text", "default_corpus"]


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and the problem."""


def read_bytes(path: Path, kind: str) -> bytes:
    """The bytes of the data file ``path``; :class:`DataError` for a missing or unreadable
    file, or a directory where ``kind`` (e.g. "a TSV file") was expected."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"data path {str(path)!r} is a directory, not {kind}") from None
    except OSError as e:
        raise DataError(f"cannot read data file {str(path)!r}: {e.strerror or e}") from None


def read_lines(path: Path, kind: str):
    """(line number, raw bytes without the newline) of the plain or gzipped (``.gz``) data
    file ``path``; :class:`DataError` for a missing or unreadable file, a directory where
    ``kind`` (e.g. "a CoNLL-U file") was expected, or a gzip failure, naming the line where
    reading stopped (the lines before it were read)."""
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                yield lineno, raw.rstrip(b"\r\n")
    except FileNotFoundError:
        raise DataError(f"data file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"data path {str(path)!r} is a directory, not {kind}") from None
    except EOFError:
        raise DataError(f"{path}:{lineno + 1}: the gzip stream ends early (a truncated .gz "
                        f"file?); the lines before it were read") from None
    except gzip.BadGzipFile as e:
        raise DataError(f"{path}:{lineno + 1}: not a valid gzip file ({e}); a name ending "
                        f"in .gz must be gzip-compressed") from None
    except zlib.error as e:
        raise DataError(f"{path}:{lineno + 1}: corrupt gzip data ({e})") from None
    except OSError as e:
        raise DataError(f"cannot read data file {str(path)!r}: {e.strerror or e}") from None


def read_text(path: str | Path) -> str:
    """The contents of a UTF-8 text file (a leading BOM is dropped).

    Raises :class:`DataError` for a missing, unreadable, empty or non-UTF-8 file; for bad
    UTF-8 the message gives the byte offset and the line of the first bad byte.
    """
    path = Path(path)
    raw = read_bytes(path, "a text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"data file {str(path)!r} is not UTF-8 text: byte 0x{raw[e.start]:02x} "
                        f"at offset {e.start} (line {line}) cannot be decoded") from None
    if not text:
        raise DataError(f"data file {str(path)!r} is empty")
    return text


def default_corpus() -> str:
    """The embedded English corpus: Python's ``pydoc_data.topics`` texts joined by key."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise DataError("the default corpus (Python's pydoc_data module) is missing from "
                        "this Python; pass a UTF-8 text file with --data FILE") from None
    return "\n".join(topics[key] for key in sorted(topics))
