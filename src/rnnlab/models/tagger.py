"""A bidirectional word + character tagger (many-to-many; book section 10.3), the model of
Plank, Søgaard & Goldberg (2016) after Ling et al. (2015) and Lample et al. (2016):

    c(w)  = [→h_char(last char) ; ←h_char(first char)]     char BiLSTM over w's characters
    x(t)  = [E_word[w_t] ; c(w_t)]                          (T, B, E + 2 C)
    h(t)  = [→h(t) ; ←h(t)] = BiLSTM(x)(t)                  (T, B, 2 H), ragged lengths
    logits(t) = V h(t) + b                                  (T, B, K)

The character features are :class:`CharEncoder` (char BiLSTM) or :class:`CharCNN` (width-3
convolution with max pooling, dos Santos & Zadrozny 2014). Id 0 is padding in the word and
character vocabularies. Used by the pos task.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..layers import Stack

__all__ = ["Tagger", "CharEncoder", "CharCNN", "TagBatch"]

PAD = 0                             # padding id of the word and character vocabularies


class TagBatch(NamedTuple):
    """A padded batch of sentences, time-major."""

    words: Tensor              # (T, B) word ids, PAD past each sentence's end
    lengths: Tensor            # (B,) sentence lengths
    types: Tensor              # (T, B) column of each token's word form in ``chars``
    chars: Tensor              # (L, U) character ids of the U distinct forms, PAD-padded
    char_lengths: Tensor       # (U,) characters of each form
    tags: Tensor               # (T, B) tag ids, -100 (ignored) past each sentence's end


class CharEncoder(nn.Module):
    """chars (L, U) + lengths (U,) -> (U, 2C): each word's forward char-LSTM state after its
    last character and backward state after its first (Ling et al. 2015)."""

    def __init__(self, cell: str, n_chars: int, embed: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(n_chars, embed, padding_idx=PAD)
        self.rnn = Stack.build(cell, embed, hidden, 1, bidirectional=True)
        self.hidden = hidden
        self.output_size = 2 * hidden

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        ys, _ = self.rnn(self.embed(chars), lengths=lengths)          # (L, U, 2C)
        C, U = self.hidden, chars.shape[1]
        last = (lengths - 1).clamp(min=0)                              # (U,)
        forward = ys[last, torch.arange(U, device=ys.device), :C]     # (U, C)
        backward = ys[0, :, C:]                                        # (U, C)
        return torch.cat([forward, backward], dim=-1)                  # (U, 2C)


class CharCNN(nn.Module):
    """chars (L, U) + lengths (U,) -> (U, C): max over positions of a width-3 convolution of
    the character embeddings (dos Santos & Zadrozny 2014; Ma & Hovy 2016)."""

    def __init__(self, n_chars: int, embed: int, channels: int, width: int = 3):
        super().__init__()
        self.embed = nn.Embedding(n_chars, embed, padding_idx=PAD)
        self.conv = nn.Conv1d(embed, channels, width, padding=width // 2)
        self.output_size = channels

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        xs = self.embed(chars).permute(1, 2, 0)                        # (U, E, L)
        ys = torch.tanh(self.conv(xs))                                 # (U, C, L)
        pad = torch.arange(chars.shape[0], device=chars.device) >= lengths.unsqueeze(1)
        return ys.masked_fill(pad.unsqueeze(1), -1.0).amax(dim=-1)     # (U, C)


class Tagger(nn.Module):
    """Word embedding (+ char BiLSTM/CNN features) -> BiLSTM stack -> per-token tag logits.

    ``char_hidden`` is C, the units of each direction of the char BiLSTM (``char_model=
    "lstm"``) or the channels of the char CNN (``"cnn"``); 0 = words only.
    ``bidirectional=False`` runs the word stack forwards only (book 10.3: the tag of word t
    then sees only words 1..t), the contrast that shows what the backward direction adds.
    """

    def __init__(self, n_words: int, n_chars: int, n_tags: int, cell: str = "lstm",
                 word_embed: int = 100, char_embed: int = 32, char_model: str = "lstm",
                 char_hidden: int = 64, hidden: int = 128, num_layers: int = 1,
                 dropout: float = 0.33, bidirectional: bool = True):
        super().__init__()
        self.word_embed = nn.Embedding(n_words, word_embed, padding_idx=PAD)
        self.chars: nn.Module | None = None
        if char_hidden > 0 and char_model == "lstm":
            self.chars = CharEncoder(cell, n_chars, char_embed, char_hidden)
        elif char_hidden > 0:
            self.chars = CharCNN(n_chars, char_embed, char_hidden)
        size = word_embed + (self.chars.output_size if self.chars is not None else 0)
        self.drop = nn.Dropout(dropout)
        self.rnn = Stack.build(cell, size, hidden, num_layers, dropout,
                               bidirectional=bidirectional)
        self.out = nn.Linear(self.rnn.output_size, n_tags)

    def forward(self, batch: TagBatch) -> Tensor:
        """A :class:`TagBatch` -> logits (T, B, K)."""
        xs = self.word_embed(batch.words)                              # (T, B, E)
        if self.chars is not None:
            per_form = self.chars(batch.chars, batch.char_lengths)     # (U, 2C)
            xs = torch.cat([xs, per_form[batch.types]], dim=-1)        # (T, B, E + 2C)
        ys, _ = self.rnn(self.drop(xs), lengths=batch.lengths)         # (T, B, 2H or H)
        return self.out(self.drop(ys))                                 # (T, B, K)
