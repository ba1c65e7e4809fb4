"""Models built from rnnlab layers (book 10.4 onwards): the encoder-decoder and its parts.

    from rnnlab.models import Encoder, Decoder, Seq2Seq, teacher_forcing_ratio
"""

from .seq2seq import (
    SCHEDULES,
    AdditiveAttention,
    Decoder,
    Encoder,
    Seq2Seq,
    teacher_forcing_ratio,
)

__all__ = ["SCHEDULES", "AdditiveAttention", "Decoder", "Encoder", "Seq2Seq",
           "teacher_forcing_ratio"]
