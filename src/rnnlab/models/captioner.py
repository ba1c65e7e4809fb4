"""Image captioner: a small CNN encoder and the RNN decoder of :mod:`rnnlab.models.seq2seq`
(book 10.2.4 and 10.4; Vinyals et al. 2015 "Show and Tell"; Xu et al. 2015 "Show, Attend
and Tell").

    image (B, 3, S, S) -> ConvEncoder -> feature map (B, C, s, s),  s = S / 2^blocks
        context = mean over positions     (B, C)       the fixed-size vector x of 10.2.4
        memory  = the s*s positions        (s*s, B, C)  what attention reads (Xu et al.)
    Decoder(tokens_in (T, B), context, memory) -> logits (T, B, V)   p(y(t) | y(<t), image)

Used by the caption task.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .seq2seq import Decoder

__all__ = ["Captioner", "ConvEncoder"]


class ConvEncoder(nn.Module):
    """A small CNN: blocks of [3x3 conv -> batch norm -> ReLU -> 2x2 max-pool].

    ``images (B, 3, S, S) -> context (B, C), memory (s*s, B, C)`` with C the last block's
    channels and s = S / 2^len(channels): the context is the mean of the feature map over
    its positions, the memory lists the positions row by row (time-major, like a sequence).
    """

    def __init__(self, channels: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.output_size = c_in

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        fmap = self.features(images)                          # (B, C, s, s)
        memory = self.drop(fmap.flatten(2).permute(2, 0, 1))  # (s*s, B, C)
        context = self.drop(fmap.mean(dim=(2, 3)))            # (B, C)
        return context, memory


class Captioner(nn.Module):
    """:class:`ConvEncoder` + :class:`~rnnlab.models.seq2seq.Decoder`.

    ``forward(images (N, 3, S, S), tokens_in (T, B), index (B,))`` -> logits ``(T, B, V)``:
    caption ``b`` is conditioned on image ``index[b]``, so each image is encoded once however
    many of its captions are in the batch (``index=None``: caption b goes with image b).
    ``channels`` lists the conv blocks' channels; ``condition`` is "init", "input" or
    "both" (book 10.2.4).
    """

    def __init__(self, vocab_size: int, channels: list[int], cell: str = "lstm",
                 embed: int = 64, hidden: int = 128, num_layers: int = 1,
                 condition: str = "input", attention: bool = False, dropout: float = 0.5):
        super().__init__()
        self.encoder = ConvEncoder(list(channels), dropout)
        self.decoder = Decoder(vocab_size, embed, hidden, self.encoder.output_size,
                               cell=cell, num_layers=num_layers, condition=condition,
                               attention=attention, dropout=dropout)

    def encode(self, images: Tensor, index: Tensor | None = None):
        context, memory = self.encoder(images)        # (N, C), (s*s, N, C)
        if index is not None:
            context, memory = context[index], memory[:, index]   # (B, C), (s*s, B, C)
        return context, memory

    def forward(self, images: Tensor, tokens_in: Tensor, index: Tensor | None = None,
                teacher_forcing: float = 1.0, generator: torch.Generator | None = None):
        context, memory = self.encode(images, index)
        return self.decoder(tokens_in, context, memory, None, teacher_forcing=teacher_forcing,
                            generator=generator)                  # (T, B, V)
