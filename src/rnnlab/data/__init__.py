"""Data: text corpora read with clear errors, and the embedded default corpus."""

from .text import DataError, default_corpus, read_text

__all__ = ["DataError", "read_text", "default_corpus"]

# text tasks: one vocabulary class and the special tokens (vocab), the tokenizers side by
# side (tokenize), the PTB layout (ptb) and tab-separated readers (tsv)
from .vocab import BOS, EOS, PAD, UNK, Vocab  # noqa: E402

__all__ += ["Vocab", "PAD", "UNK", "BOS", "EOS"]
