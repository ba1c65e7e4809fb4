"""Data: text corpora read with clear errors, and the embedded default corpus."""

from .text import DataError, default_corpus, read_text

__all__ = ["DataError", "read_text", "default_corpus"]
