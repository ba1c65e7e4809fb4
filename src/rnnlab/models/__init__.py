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

# the models of the non-text tasks (digits, adding/copy, forecast, music, memnet, ntm-*,
# seq-length)
from .forecaster import Forecaster  # noqa: E402
from .length import LengthModel  # noqa: E402
from .memnet import MemN2N  # noqa: E402
from .memory import MemoryModel  # noqa: E402
from .music import MusicRNN  # noqa: E402
from .sequence import SequenceClassifier, SequenceModel  # noqa: E402

__all__ += ["Forecaster", "LengthModel", "MemN2N", "MemoryModel", "MusicRNN",
            "SequenceClassifier", "SequenceModel"]
