"""Cells: the transition function h(t) = f(h(t-1), x(t); θ) of Deep Learning, chapter 10.

    base        the contract (:class:`Cell`, :class:`LSTMState`) and init helpers
    elman       ElmanCell (tanh / relu, eq. 10.8)
    feedback    OutputFeedbackCell (output-to-hidden recurrence, Fig. 10.4)
    lstm        LSTMCell (10.10.1)
    gru         GRUCell, MGUCell (10.10.2)
    leaky       LeakyCell (10.9.2)
    linear      MinGRUCell, MinLSTMCell (gates from the input only: a linear scan)
    norm        LayerNormLSTMCell, LayerNormGRUCell (Ba et al. 2016)
    time        DeepTransitionCell, DeepOutputCell (10.5), SkipCell, ClockworkCell (10.9)
    memory      NTMCell (the Neural Turing Machine, 10.12)
    registry    make_cell(name, ...) and CELL_NAMES: every cell by name
"""

from .base import Cell, LSTMState, map_state, state_fields
from .elman import ElmanCell
from .feedback import OutputFeedbackCell
from .gru import GRUCell, MGUCell
from .leaky import LeakyCell
from .linear import MinGRUCell, MinLSTMCell
from .lstm import LSTMCell
from .memory import NTMCell, NTMState
from .norm import LayerNormGRUCell, LayerNormLSTMCell
from .registry import CELL_NAMES, make_cell
from .time import (
    ClockworkCell,
    ClockworkState,
    DeepOutputCell,
    DeepTransitionCell,
    SkipCell,
    SkipState,
)

__all__ = ["Cell", "LSTMState", "state_fields", "map_state", "ElmanCell",
           "OutputFeedbackCell", "LSTMCell", "GRUCell", "MGUCell", "LeakyCell", "MinGRUCell",
           "MinLSTMCell", "LayerNormLSTMCell", "LayerNormGRUCell", "DeepTransitionCell",
           "DeepOutputCell", "SkipCell", "SkipState", "ClockworkCell", "ClockworkState",
           "NTMCell", "NTMState", "CELL_NAMES", "make_cell"]
