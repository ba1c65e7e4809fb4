"""rnnlab: the recurrent nets of Deep Learning (Goodfellow, Bengio, Courville), chapter 10,
on PyTorch: cells, the reference time loop, fused kernels with hand-derived BPTT,
layers, torch.nn drop-ins (RNN/LSTM/GRU and RNNCell/LSTMCell/GRUCell; rnnlab's own
cells are in :mod:`rnnlab.cells`), a model-agnostic training loop, tasks and a CLI."""

from .cells import (
    CELL_NAMES,
    Cell,
    ElmanCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LeakyCell,
    LSTMState,
    MGUCell,
    MinGRUCell,
    MinLSTMCell,
    OutputFeedbackCell,
    make_cell,
)
from .compat import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, quantize_dynamic
from .config import ConfigError, RunConfig, TrainConfig, apply_overrides
from .kernels import find_kernel
from .kernels.scan import linear_scan
from .layers import Bidirectional, Recurrent, Stack
from .models.esn import (
    ESN,
    ReadoutStats,
    Reservoir,
    RLSReadout,
    echo_state_distance,
    memory_capacity,
    spectral_radius,
)
from .tasks import TASKS, Task, load_run
from .training import train
from .unroll import unroll

__version__ = "0.1.0"

__all__ = [
    "CELL_NAMES",
    "Cell",
    "ElmanCell",
    "OutputFeedbackCell",
    "LSTMState",
    "MGUCell",
    "LeakyCell",
    "MinGRUCell",
    "MinLSTMCell",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "make_cell",
    "unroll",
    "find_kernel",
    "linear_scan",
    "Recurrent",
    "Bidirectional",
    "Stack",
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "quantize_dynamic",
    "ESN",
    "Reservoir",
    "ReadoutStats",
    "RLSReadout",
    "spectral_radius",
    "echo_state_distance",
    "memory_capacity",
    "RunConfig",
    "TrainConfig",
    "ConfigError",
    "apply_overrides",
    "train",
    "TASKS",
    "Task",
    "load_run",
]
