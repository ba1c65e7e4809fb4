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

# text models (char-lm, word-lm, sentiment, pos, caption)
from .captioner import Captioner, ConvEncoder  # noqa: E402
from .classifier import SentenceClassifier  # noqa: E402
from .language import CharRNN, TieError, WordRNN  # noqa: E402
from .tagger import CharCNN, CharEncoder, TagBatch, Tagger  # noqa: E402

__all__ += ["CharRNN", "WordRNN", "TieError", "SentenceClassifier", "Tagger", "CharEncoder",
            "CharCNN", "TagBatch", "Captioner", "ConvEncoder"]
