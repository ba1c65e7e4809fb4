"""torch.nn drop-ins: :class:`RNN`, :class:`LSTM`, :class:`GRU` and the cells
:class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell`.

    rnn         RNN, LSTM, GRU: subclasses of torch.nn's, run by rnnlab's layers and kernels
    cells       RNNCell, LSTMCell, GRUCell: subclasses of torch.nn's, one rnnlab cell step
    quantize    quantize_dynamic: torch's, with rnnlab's modules quantized as torch.nn's are
    threads     PerThread: each thread's own weightless layers, so one module serves many

Every class here is a subclass of the torch.nn class of the same name, built by torch.nn's
own constructor (same arguments, errors, parameter names, initialisation), and reads its
weights through the module's attributes on every forward, so that weight norm,
parametrizations, weight drop, pruning and ``torch.func.functional_call`` act on it.
"""

from .cells import GRUCell, LSTMCell, RNNCell
from .quantize import dynamic_quant_mapping, quantize_dynamic, to_torch
from .rnn import GRU, LSTM, PATHS, RNN

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "PATHS", "to_torch",
           "quantize_dynamic", "dynamic_quant_mapping"]
