"""Drop-in replacements for ``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``.

Each is a subclass of the torch.nn class (``isinstance(m, torch.nn.LSTM)`` and
``isinstance(m, torch.nn.RNNBase)`` hold) built by torch.nn's own constructor, so the
arguments, their errors, the parameters (names, shapes, order, where they are registered)
and the initialisation (the same seed gives the same weights) are torch.nn's. Every
forward reads the weights through the module's attributes (``getattr(self, name)`` for
each of ``_flat_weights_names``) and runs rnnlab's layers on them: a :class:`rnnlab.Stack`
of :class:`rnnlab.Recurrent` / :class:`rnnlab.Bidirectional` layers over rnnlab cells that
hold no weights of their own (they are built on the meta device; the weights are bound to
them for the call and unbound after it). So whatever changes those attributes acts on the
result: ``torch.nn.utils.weight_norm`` and ``parametrizations.weight_norm``,
``torch.nn.utils.parametrize``, AWD-LSTM's WeightDrop (which deletes ``weight_hh_l0`` and
sets a plain tensor in its place before each forward), ``torch.nn.utils.prune``,
``load_state_dict(assign=True)`` and ``torch.func.functional_call``. Attributes are read
on every call too: setting ``.dropout`` or ``.training`` takes effect at once.

The inputs (batched or unbatched, ``batch_first``, ``PackedSequence``, ``h_0`` /
``(h_0, c_0)``), the checks on them (torch.nn's own ``check_forward_args``; the same
exception types for the same bad input) and the outputs and gradients are torch.nn's. An
empty batch (B = 0) has nothing to compute: it returns torch.nn's empty results through
torch's op.

Pickling, ``copy.deepcopy`` and ``torch.save`` of a whole model store what torch.nn's
module stores (its ``__dict__``) plus rnnlab's two options; the weightless layers are
rebuilt on load. ``torch.load(..., weights_only=True)`` of a whole model needs every
module class allowlisted (``torch.serialization.add_safe_globals``), for torch.nn's
modules as for these: a checkpoint of a model holding :class:`LSTM` names
``rnnlab.compat.rnn.LSTM`` where torch.nn's names ``torch.nn.modules.rnn.LSTM``, and
nothing else.

Deliberate differences from torch.nn:
- With ``dropout > 0`` in training mode and a ``PackedSequence`` input, torch.nn draws the
  dropout mask over the packed rows and rnnlab over the padded (T, B, F) tensor, so the
  masks differ (same distribution). Unpacked inputs draw the same masks as torch.nn.
- Extra keyword options are rnnlab's own: ``path`` (below) and, for :class:`GRU`,
  ``reset="before"`` (Cho et al.'s original reset placement).

Execution paths (``path=``), all on the same weights and all tested against torch.nn:
- ``"fused"``: rnnlab's fused kernels with hand-derived BPTT (the reference loop for cell
  options that have no kernel);
- ``"reference"``: the reference loop through the cells' steps, differentiated by autograd;
- ``"torch"``: torch.nn's own forward (oneDNN on CPU, cuDNN on CUDA) on this module (not
  available with rnnlab-only options such as ``reset="before"``);
- ``"auto"`` (default): the fastest correct one measured (benchmarks/RESULTS.md): torch's op
  for the LSTM without projection (oneDNN's fused LSTM beats the hand kernel on CPU) and for
  everything on CUDA (cuDNN); rnnlab's fused kernels for the RNN, the GRU and the projected
  LSTM on CPU (they beat torch.nn's per-step loop there).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import ElmanCell, LSTMState
from ..cells import GRUCell as _GRUCell
from ..cells import LSTMCell as _LSTMCell
from ..layers import Bidirectional, Recurrent, Stack
from .threads import PerThread

__all__ = ["RNN", "LSTM", "GRU", "PATHS", "TORCH_CLASSES"]

PATHS = ("auto", "fused", "reference", "torch")

# torch.nn's classes as they were when rnnlab was imported: a program that swaps
# ``torch.nn.LSTM = rnnlab.LSTM`` still gets torch's classes here (no recursion)
_TorchRNN, _TorchLSTM, _TorchGRU = nn.RNN, nn.LSTM, nn.GRU

# torch.nn parameter name stem -> the rnnlab cell attribute it binds to
_CELL_ATTR = {"weight_ih": "W_xh", "weight_hh": "W_hh", "bias_ih": "b_xh", "bias_hh": "b_hh",
              "weight_hr": "W_hr"}


class _Drop:
    """What RNN, LSTM and GRU share; mixed in before the torch.nn class."""

    _lstm = False
    _options: dict

    def _setup(self, path: str, options: dict) -> None:
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
        if path == "torch" and options:
            raise ValueError(f"path='torch' runs torch.nn's own op, which has no rnnlab cell "
                             f"options ({', '.join(sorted(options))})")
        self.path = path
        self._options = options
        self._build_layers()

    # -- the weightless layers ------------------------------------------------------------

    def _build_layers(self, claimed: bool = True) -> None:
        """rnnlab's layers, for this thread (``claimed``) or the first that runs the module,
        and the stack's parameter names that ``_flat_weights_names`` bind, in order."""
        stack, slots = self._new_stack()
        # not submodules: parameters(), state_dict() and .to() see torch.nn's names only
        object.__setattr__(self, "_slots", slots)
        object.__setattr__(self, "_stacks", PerThread(stack, claimed))

    def _new_stack(self):
        """rnnlab's layers over cells on the meta device (no memory, no random draws), and
        the names of their parameters that ``_flat_weights_names`` bind, in order."""
        directions = 2 if self.bidirectional else 1
        out = self.proj_size or self.hidden_size
        use_kernel = self.path != "reference"
        layers, cells, size = [], [], self.input_size
        for _ in range(self.num_layers):
            pair = [self._make_cell(size) for _ in range(directions)]
            cells += pair
            layers.append(Bidirectional.from_cells(*pair, use_kernel=use_kernel)
                          if self.bidirectional else Recurrent(pair[0], use_kernel=use_kernel))
            size = out * directions
        stack = Stack(layers, self.dropout)
        where = {id(module): name for name, module in stack.named_modules()}
        # the stack's parameter name that each of ``_flat_weights_names`` binds, in order
        slots = [f"{where[id(cell)]}.{_CELL_ATTR[name.split('_l')[0]]}"
                 for cell, names in zip(cells, self._all_weights) for name in names]
        return stack, slots

    @property
    def _stack(self) -> Stack:
        """The weightless layers this thread binds the weights into (:mod:`.threads`)."""
        return self._stacks.get(lambda: self._new_stack()[0])

    def _make_cell(self, input_size: int):
        raise NotImplementedError

    def _run_layers(self, weights: list[Tensor], xs: Tensor, state, lengths):
        """The stack on ``weights`` (one per name of ``_flat_weights_names``)."""
        stack = self._stack
        stack.dropout, stack.training = self.dropout, self.training
        bound = dict(zip(self._slots, weights))
        if torch.jit.is_tracing():   # functional_call refuses the tracer, which runs eagerly
            return _swapped_call(stack, bound, (xs, state, lengths))
        # the cells keep no weights (nor graphs) between calls; functional_call binds them
        # for this call only, and torch.compile / torch.export trace it as such
        return torch.func.functional_call(stack, bound, (xs, state, lengths),
                                          tie_weights=False)

    def extra_repr(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in sorted(self._options.items()))
        return super().extra_repr() + extra

    # -- pickling, deepcopy, DataParallel -------------------------------------------------

    def __getstate__(self):
        state = super().__getstate__()
        for key in ("_stacks", "_slots"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._build_layers()

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        replica._build_layers(claimed=False)    # its own layers, for its worker thread
        return replica

    # -- forward --------------------------------------------------------------------------

    def _uses_torch(self, input) -> bool:
        if self.path == "torch":
            return True
        if self.path != "auto" or self._options or torch.compiler.is_compiling():
            return False              # dynamo cannot compile torch's fused LSTM op on CPU
        data = input.data if isinstance(input, PackedSequence) else input
        cuda = isinstance(data, Tensor) and data.is_cuda
        return cuda or (self._lstm and self.proj_size == 0)

    def forward(self, input, hx=None):
        # under torch.compile, as torch.nn's module: eager unless dynamo may trace it
        if torch.compiler.is_compiling() or _dynamo_allows_rnn():
            return self._forward(input, hx)
        return _forward_eagerly(self, input, hx)

    def _forward(self, input, hx=None):
        if self._uses_torch(input):
            return super().forward(input, hx)
        packed = isinstance(input, PackedSequence)
        batched = True
        sorted_indices = unsorted_indices = batch_sizes = None
        if packed:
            input, batch_sizes, sorted_indices, unsorted_indices = input
            B = int(batch_sizes[0])
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                                 f"{input.dim()}D tensor instead")
            batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not batched:
                input = input.unsqueeze(batch_dim)
            B = input.size(batch_dim)
        if hx is not None:
            hx = self._check_state(hx, batched)
        # read through the attributes: weight norm, parametrize, weight drop, pruning, ...
        weights = [getattr(self, name) for name in self._flat_weights_names]
        self._check_input(input, batch_sizes, weights[0])
        if hx is not None:
            self._check_hidden(input, hx, batch_sizes)
            hx = self.permute_hidden(hx, sorted_indices)
        if not packed and input.size(0 if not self.batch_first else 1) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if B == 0:
            if self._options:
                raise ValueError(f"an empty batch (B = 0) runs torch.nn's op, which has no "
                                 f"rnnlab cell options ({', '.join(sorted(self._options))})")
            return super().forward(self._repack(input, batch_sizes, sorted_indices,
                                                unsorted_indices, batched), hx)
        if packed:
            xs, lengths = pad_packed_sequence(PackedSequence(input, batch_sizes))
        else:
            xs, lengths = (input.transpose(0, 1) if self.batch_first else input), None
        ys, states = self._run_layers(weights, xs, self._split_state(hx), lengths)
        h_n = self._join_state(states)
        if packed:
            data = pack_padded_sequence(ys, lengths).data
            return (PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices),
                    self.permute_hidden(h_n, unsorted_indices))
        output = ys.transpose(0, 1) if self.batch_first else ys
        if not batched:
            output = output.squeeze(batch_dim)
            h_n = tuple(h.squeeze(1) for h in h_n) if self._lstm else h_n.squeeze(1)
        return output, h_n

    def _check_input(self, input: Tensor, batch_sizes, weight: Tensor) -> None:
        """torch.nn's ``check_input``, against the weight this call reads."""
        if input.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype "
                             f"({weight.dtype}). Convert input: input.to({weight.dtype}), or "
                             f"convert model: model.to({input.dtype})")
        expected = 2 if batch_sizes is not None else 3
        if input.dim() != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.size(-1)}")

    def _check_hidden(self, input: Tensor, hx, batch_sizes) -> None:
        self.check_hidden_size(hx, self.get_expected_hidden_size(input, batch_sizes))
        _check_dtype(hx, input, "h_0")

    def _repack(self, input, batch_sizes, sorted_indices, unsorted_indices, batched):
        if batch_sizes is not None:
            return PackedSequence(input, batch_sizes, sorted_indices, unsorted_indices)
        return input if batched else input.squeeze(0 if self.batch_first else 1)

    def _check_state(self, hx, batched: bool):
        """torch.nn's checks on the rank of h_0 (and c_0); unbatched states get B = 1."""
        if not batched:
            if hx.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got "
                                   f"{hx.dim()}-D tensor")
            return hx.unsqueeze(1)
        if hx.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got "
                               f"{hx.dim()}-D tensor")
        return hx

    def _split_state(self, hx):
        """torch.nn's (D*L, B, H) state -> the stack's per-layer states (None stays None)."""
        if hx is None:
            return None
        per_cell = list(hx)
        if self.bidirectional:
            return [(per_cell[2 * k], per_cell[2 * k + 1]) for k in range(self.num_layers)]
        return per_cell

    def _join_state(self, states):
        per_cell = [s for layer in states for s in layer] if self.bidirectional else states
        return torch.stack(per_cell)


def _swapped_call(module: nn.Module, tensors: dict[str, Tensor], args: tuple):
    """``module(*args)`` with its parameters named in ``tensors`` swapped for those tensors
    for the call only (what ``torch.func.functional_call`` does, for the jit tracer)."""
    slots = []
    for name in tensors:
        owner, _, attr = name.rpartition(".")
        params = module.get_submodule(owner)._parameters
        slots.append((params, attr, params[attr]))
    try:
        for (params, attr, _), tensor in zip(slots, tensors.values()):
            params[attr] = tensor
        return module(*args)
    finally:
        for params, attr, original in slots:
            params[attr] = original


def _check_dtype(state: Tensor, input: Tensor, name: str) -> None:
    if state.dtype != input.dtype:            # torch.nn's op fails with a RuntimeError too
        raise RuntimeError(f"{name} must have the input's dtype {input.dtype}, got "
                           f"{state.dtype}")


class RNN(_Drop, _TorchRNN):
    """Drop-in ``torch.nn.RNN``: Elman RNN (book eq. 10.8), tanh or relu, run by
    :class:`rnnlab.ElmanCell` and its fused BPTT kernel.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
    path='auto')``
    """

    def __init__(self, *args, path: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._setup(path, {})

    def _make_cell(self, input_size: int):
        return ElmanCell(input_size, self.hidden_size, self.nonlinearity, bias=self.bias,
                         device="meta")


class LSTM(_Drop, _TorchLSTM):
    """Drop-in ``torch.nn.LSTM`` (with ``proj_size``), run by :class:`rnnlab.cells.LSTMCell`
    and its fused BPTT kernel. Returns ``output, (h_n, c_n)``.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, path='auto')``
    """

    _lstm = True

    def __init__(self, *args, path: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._setup(path, {})

    def _make_cell(self, input_size: int):
        return _LSTMCell(input_size, self.hidden_size, bias=self.bias,
                         proj_size=self.proj_size, forget_bias=0.0, device="meta")

    def _check_state(self, hx, batched: bool):
        # torch.nn: a tensor or a 1-tuple fails on hx[1] (IndexError), a longer tuple in its
        # op (RuntimeError)
        n = len(hx) if not isinstance(hx, Tensor) else (hx.size(0) if hx.dim() else 0)
        if n < 2:
            raise IndexError(f"LSTM expects hx to be a pair (h_0, c_0), got "
                             f"{'a tensor' if isinstance(hx, Tensor) else n}")
        if n > 2 and not isinstance(hx, Tensor):
            raise RuntimeError(f"LSTM expects two hidden states (h_0, c_0), got {n}")
        h, c = hx[0], hx[1]
        if batched and (h.dim() != 3 or c.dim() != 3):
            raise RuntimeError(f"For batched 3-D input, hx and cx should also be 3-D but got "
                               f"({h.dim()}-D, {c.dim()}-D) tensors")
        if not batched:
            if h.dim() != 2 or c.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx and cx should also be 2-D "
                                   f"but got ({h.dim()}-D, {c.dim()}-D) tensors")
            return h.unsqueeze(1), c.unsqueeze(1)
        return h, c

    def _check_hidden(self, input: Tensor, hx, batch_sizes) -> None:
        self.check_hidden_size(hx[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hx[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")
        _check_dtype(hx[0], input, "h_0")
        _check_dtype(hx[1], input, "c_0")

    def _split_state(self, hx):
        if hx is None:
            return None
        per_cell = [LSTMState(h, c) for h, c in zip(*hx)]
        if self.bidirectional:
            return [(per_cell[2 * k], per_cell[2 * k + 1]) for k in range(self.num_layers)]
        return per_cell

    def _join_state(self, states):
        per_cell = [s for layer in states for s in layer] if self.bidirectional else states
        return torch.stack([s.h for s in per_cell]), torch.stack([s.c for s in per_cell])


class GRU(_Drop, _TorchGRU):
    """Drop-in ``torch.nn.GRU``, run by :class:`rnnlab.cells.GRUCell` (reset gate after the
    product, as torch.nn) and its fused BPTT kernel.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None, path='auto',
    reset='after')``; ``reset="before"`` is Cho et al.'s original GRU (rnnlab's own option).
    """

    def __init__(self, *args, path: str = "auto", reset: str = "after", **kwargs):
        super().__init__(*args, **kwargs)
        if reset not in ("after", "before"):
            raise ValueError(f"reset must be 'after' or 'before', got {reset!r}")
        self._setup(path, {"reset": reset} if reset != "after" else {})

    def _make_cell(self, input_size: int):
        return _GRUCell(input_size, self.hidden_size, bias=self.bias,
                        reset=self._options.get("reset", "after"), device="meta")


#: rnnlab's class -> the torch.nn class it stands in for
TORCH_CLASSES = {RNN: _TorchRNN, LSTM: _TorchLSTM, GRU: _TorchGRU}


def _dynamo_allows_rnn() -> bool:
    return torch._dynamo.config.allow_rnn


def _forward_eagerly(module: _Drop, input, hx):
    """``module._forward`` with dynamo off for it and everything it calls.

    Dynamo refuses torch.nn's RNN classes (and so these, their subclasses) unless
    ``torch._dynamo.config.allow_rnn`` is set: a compiled caller breaks its graph and calls
    the module eagerly. torch.nn's forward is then skipped, being torch's own code, but
    rnnlab's would be compiled frame by frame: seconds of inductor for nothing, the work
    being rnnlab's operators. So outside a dynamo trace, and unless ``allow_rnn`` is set,
    the forward runs here, eagerly as torch.nn's does. With ``allow_rnn``, or when dynamo
    traces into ``forward`` from a compiled caller, ``_forward`` is compiled as before."""
    return module._forward(input, hx)


def _skip_frames() -> None:
    try:                         # dynamo's per-code switch (private API)
        from torch._dynamo.eval_frame import set_code_exec_strategy
        from torch._dynamo.types import FrameAction, FrameExecStrategy
    except ImportError:          # without it, a refused module's frames get compiled: slower
        return                   # first calls, the same results

    # forward itself never starts a compiled frame: it picks one of the two below
    for code in (_Drop.forward.__code__, _dynamo_allows_rnn.__code__):
        set_code_exec_strategy(code, FrameExecStrategy(FrameAction.SKIP, FrameAction.DEFAULT))
    set_code_exec_strategy(_forward_eagerly.__code__,
                           FrameExecStrategy(FrameAction.SKIP, FrameAction.SKIP))


_skip_frames()
