"""Every model of the chapter, built from rnnlab layers and cells; each takes sizes and plain
options, never a task's config.

    language        CharRNN, WordRNN (10.2: language models)
    classifier      SentenceClassifier (many-to-one)
    tagger          Tagger with CharEncoder / CharCNN word features (many-to-many)
    sequence        SequenceModel (adding, copy), SequenceClassifier (sequential digits)
    forecaster      Forecaster (many-to-one / many-to-many with a horizon)
    music           MusicRNN (independent sigmoid outputs over 88 keys)
    seq2seq         Encoder, Decoder (attention, scheduled sampling, beam search), Seq2Seq
    captioner       Captioner (a CNN encoder + an RNN decoder)
    recursive       TreeRNN, ChildSumTreeLSTM, NaryTreeLSTM (10.6)
    esn             ESN, Reservoir, readouts (10.8)
    length          LengthHead, HaltHead, LengthModel (10.2.4: ending a sequence)
    memnet          MemN2N (10.12: end-to-end memory network)
    memory          MemoryModel (10.12: an NTM or LSTM over the memory tasks)
"""

from .captioner import Captioner, ConvEncoder
from .classifier import SentenceClassifier
from .forecaster import Forecaster
from .language import CharRNN, TieError, WordRNN
from .length import LengthModel
from .memnet import MemN2N
from .memory import MemoryModel
from .music import MusicRNN
from .seq2seq import (
    SCHEDULES,
    AdditiveAttention,
    Decoder,
    Encoder,
    Seq2Seq,
    teacher_forcing_ratio,
)
from .sequence import SequenceClassifier, SequenceModel
from .tagger import CharCNN, CharEncoder, TagBatch, Tagger

__all__ = ["SCHEDULES", "AdditiveAttention", "Decoder", "Encoder", "Seq2Seq",
           "teacher_forcing_ratio", "CharRNN", "WordRNN", "TieError", "SentenceClassifier",
           "Tagger", "CharEncoder", "CharCNN", "TagBatch", "Captioner", "ConvEncoder",
           "SequenceModel", "SequenceClassifier", "Forecaster", "MusicRNN", "MemN2N",
           "MemoryModel", "LengthModel"]
