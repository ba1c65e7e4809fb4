"""Data: every reader, tokenizer and generator, with errors that name the file and line.

    text        read_text, the embedded default corpus, DataError
    vocab       Vocab (token <-> id) and the special tokens PAD, UNK, BOS, EOS
    tokenize    the tokenizers of the text tasks, side by side
    ptb, tsv    the Penn-Treebank layout; tab-separated pairs and labelled sentences
    conllu      CoNLL-U (pos);  trees: PTB-style sentiment trees;  coco: COCO captions
    pianoroll   piano-roll JSON and MIDI;  series: CSV time series;  idx: MNIST IDX files
    synthetic   adding / copy / forecast generators;  babi: bAbI-style stories;
    ntm         the NTM copy, repeat-copy and recall batches;  mackey_glass: the series
"""

from .text import DataError, default_corpus, read_text
from .vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = ["DataError", "read_text", "default_corpus", "Vocab", "PAD", "UNK", "BOS", "EOS"]
