"""rnnlab: the recurrent nets of Deep Learning (Goodfellow, Bengio, Courville), chapter 10,
on PyTorch: cells, the reference time loop, fused kernels with hand-derived BPTT,
layers, torch.nn-compatible RNN/LSTM/GRU, a model-agnostic training loop, tasks and a CLI."""

from .cells import (
    CELL_NAMES,
    Cell,
    ElmanCell,
    GRUCell,
    LeakyCell,
    LSTMCell,
    LSTMState,
    MGUCell,
    OutputFeedbackCell,
    make_cell,
)
from .compat import GRU, LSTM, RNN
from .config import ConfigError, RunConfig, apply_overrides
from .kernels import find_kernel
from .layers import Bidirectional, Recurrent, Stack
from .tasks import TASKS, Task, load_run
from .train import TrainConfig, train
from .unroll import unroll

__version__ = "0.1.0"

__all__ = [
    "CELL_NAMES",
    "Cell",
    "ElmanCell",
    "OutputFeedbackCell",
    "LSTMCell",
    "LSTMState",
    "GRUCell",
    "MGUCell",
    "LeakyCell",
    "make_cell",
    "unroll",
    "find_kernel",
    "Recurrent",
    "Bidirectional",
    "Stack",
    "RNN",
    "LSTM",
    "GRU",
    "RunConfig",
    "TrainConfig",
    "ConfigError",
    "apply_overrides",
    "train",
    "TASKS",
    "Task",
    "load_run",
]
