"""Drop-in replacements for ``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``.

They take torch.nn's constructor arguments, register the same parameters under the same
names and shapes (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, ...) in the
same order, initialise them the same way (the same seed gives the same weights), accept
the same inputs (batched or unbatched, ``batch_first``, ``PackedSequence``, ``h_0`` /
``(h_0, c_0)``) and return the same outputs and gradients.

They are built from rnnlab's own pieces, not beside them: a :class:`rnnlab.Stack` of
:class:`rnnlab.Recurrent` / :class:`rnnlab.Bidirectional` layers over rnnlab cells, whose
parameter tensors are the ones registered here under torch.nn's names.

Deliberate differences from torch.nn:
- With ``dropout > 0`` in training mode and a ``PackedSequence`` input, torch.nn draws the
  dropout mask over the packed rows and rnnlab over the padded (T, B, F) tensor, so the
  masks differ (same distribution). Unpacked inputs draw the same masks as torch.nn.
- Extra keyword options are rnnlab's own: ``path`` (below) and, for :class:`GRU`,
  ``reset="before"`` (Cho et al.'s original reset placement).

Execution paths (``path=``), all on the same parameter tensors and all tested against
torch.nn:
- ``"fused"``: rnnlab's fused kernels with hand-derived BPTT (the reference loop for cell
  options that have no kernel);
- ``"reference"``: the reference loop through the cells' steps, differentiated by autograd;
- ``"torch"``: torch's own recurrent op (oneDNN on CPU, cuDNN on CUDA), through a
  ``torch.nn`` module that holds no weights of its own (not available with rnnlab-only
  options such as ``reset="before"``);
- ``"auto"`` (default): the fastest correct one measured (benchmarks/RESULTS.md): torch's op
  for the LSTM without projection (oneDNN's fused LSTM beats the hand kernel on CPU) and for
  everything on CUDA (cuDNN); rnnlab's fused kernels for the RNN, the GRU and the projected
  LSTM on CPU (they beat torch.nn's per-step loop there).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .cells import ElmanCell, GRUCell, LSTMCell, LSTMState
from .layers import Bidirectional, Recurrent, Stack

__all__ = ["RNN", "LSTM", "GRU"]

PATHS = ("auto", "fused", "reference", "torch")

# rnnlab cell attribute -> torch.nn parameter name stem, in torch.nn's registration order
_NAMES = (("W_xh", "weight_ih"), ("W_hh", "weight_hh"), ("b_xh", "bias_ih"),
          ("b_hh", "bias_hh"), ("W_hr", "weight_hr"))


class _RNNBase(nn.Module):
    _lstm = False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 path: str = "auto", **cell_options):
        super().__init__()
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
        if path == "torch" and cell_options:
            raise ValueError(f"path='torch' runs torch.nn's own op, which has no rnnlab cell "
                             f"options ({', '.join(sorted(cell_options))})")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(f"proj_size should be a non-negative int, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size ({proj_size}) has to be smaller than hidden_size "
                             f"({hidden_size})")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.path = path
        use_kernel = path != "reference"
        out = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        factory = {"device": device, "dtype": dtype, "bias": bias}
        layers, size = [], input_size
        # the cells' own initialisation must not consume the random stream that
        # reset_parameters() below draws from, so that a seed gives torch.nn's weights
        cuda = [torch.device(device)] if device is not None and \
            torch.device(device).type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            for layer in range(num_layers):
                cells = [self._make_cell(size, hidden_size, proj_size, factory, cell_options)
                         for _ in range(directions)]
                for direction, cell in enumerate(cells):
                    suffix = f"_l{layer}" + ("_reverse" if direction else "")
                    for attr, stem in _NAMES:
                        p = getattr(cell, attr, None)
                        if p is not None:
                            self.register_parameter(stem + suffix, p)
                if bidirectional:
                    layers.append(Bidirectional.from_cells(*cells, use_kernel=use_kernel))
                else:
                    layers.append(Recurrent(cells[0], use_kernel=use_kernel))
                size = out * directions
        # the stack shares the parameters above but is not a submodule, so that state
        # dicts and named_parameters() carry torch.nn's names only
        object.__setattr__(self, "_stack", Stack(layers, dropout))
        self._bindings = [(cell, attr, stem + suffix)
                          for cell, suffix in zip(self._cells(), self._suffixes())
                          for attr, stem in _NAMES if getattr(cell, attr, None) is not None]
        # torch.nn's own module for path="torch", built on the meta device so that it holds
        # no weights: every forward runs it on the parameters registered here
        self._torch = None
        if not cell_options:
            with warnings.catch_warnings():      # its dropout warning was given above
                warnings.simplefilter("ignore")
                object.__setattr__(self, "_torch", self._torch_module(device="meta"))
        self.reset_parameters()

    def _torch_module(self, device) -> nn.Module:
        raise NotImplementedError

    def _uses_torch(self, input) -> bool:
        if self.path == "torch":
            return True
        if self.path != "auto" or self._torch is None:
            return False
        data = input.data if isinstance(input, PackedSequence) else input
        cuda = isinstance(data, Tensor) and data.is_cuda
        return cuda or (self._lstm and self.proj_size == 0)

    def _make_cell(self, input_size, hidden_size, proj_size, factory, options):
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op kept for drop-in compatibility (rnnlab has no flat weight buffer)."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        per_cell = len([a for a, _ in _NAMES if getattr(self._cells()[0], a, None) is not None])
        params = list(self.parameters())
        return [params[k:k + per_cell] for k in range(0, len(params), per_cell)]

    def _suffixes(self) -> list[str]:
        return [f"_l{layer}" + ("_reverse" if direction else "")
                for layer in range(self.num_layers)
                for direction in range(2 if self.bidirectional else 1)]

    def _bind_parameters(self) -> None:
        """Point the stack's cells at the tensors registered here under torch.nn's names.

        They are the same objects after construction, ``.to()`` and ``deepcopy``, but
        ``load_state_dict(assign=True)`` and ``torch.func.functional_call`` replace the
        registered tensors, so every forward reads them afresh."""
        for cell, attr, name in self._bindings:
            cell._parameters[attr] = self._parameters[name]

    def _cells(self):
        cells = []
        for layer in self._stack.layers:
            cells += [layer.fwd.cell, layer.bwd.cell] if self.bidirectional else [layer.cell]
        return cells

    def train(self, mode: bool = True):
        super().train(mode)
        self._stack.train(mode)
        return self

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # -- forward -------------------------------------------------------------------------

    def forward(self, input, hx=None):
        if self._uses_torch(input):
            self._torch.training = self.training
            if all(isinstance(p, nn.Parameter) for p in self._parameters.values()):
                for name, p in self._parameters.items():   # (re)bind; cheap when unchanged
                    if getattr(self._torch, name) is not p:
                        setattr(self._torch, name, p)
                return self._torch(input, hx)
            # plain tensors (torch.func.functional_call on this module) cannot be set as
            # parameters of torch.nn's module: hand them over the same way
            return torch.func.functional_call(self._torch, dict(self._parameters), (input, hx))
        packed = isinstance(input, PackedSequence)
        if packed:
            xs, lengths = pad_packed_sequence(input)            # (T, B, I), original order
            batched = True
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
                raise ValueError(f"{type(self).__name__}: expected input of shape (L, "
                                 f"{self.input_size}) unbatched or (L, N, {self.input_size}) "
                                 f"batched ((N, L, {self.input_size}) with batch_first), "
                                 f"got {shape}")
            batched = input.dim() == 3
            xs = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                xs = xs.transpose(0, 1)
            lengths = None
        if xs.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {xs.shape[-1]}")
        weight = self.weight_hh_l0
        if xs.dtype != weight.dtype:
            raise ValueError(f"input must have the type {weight.dtype}, got type {xs.dtype}")
        B = xs.shape[1]
        self._bind_parameters()
        state = self._split_state(hx, B, batched, xs)
        ys, states = self._stack(xs, state, lengths)
        h_n = self._join_state(states)
        if packed:
            valid = torch.arange(ys.shape[0])[:, None] < lengths[None, :]    # (T, B)
            order = input.sorted_indices
            if order is not None:
                ys, valid = ys[:, order.to(ys.device)], valid[:, order.cpu()]
            output = PackedSequence(ys[valid.to(ys.device)], input.batch_sizes,
                                    input.sorted_indices, input.unsorted_indices)
        else:
            output = ys.transpose(0, 1) if batched and self.batch_first else ys
            if not batched:
                output = output.squeeze(1)
                h_n = tuple(h.squeeze(1) for h in h_n) if self._lstm else h_n.squeeze(1)
        return output, h_n

    def _expected_state_shapes(self, B: int) -> list[tuple[int, ...]]:
        D = 2 if self.bidirectional else 1
        h = (D * self.num_layers, B, self.proj_size or self.hidden_size)
        return [h, (D * self.num_layers, B, self.hidden_size)] if self._lstm else [h]

    def _split_state(self, hx, B: int, batched: bool, xs: Tensor):
        """torch.nn's (D*L, B, H) state tensors -> the stack's per-layer states."""
        if hx is None:
            return None
        # torch.nn also takes a list [h_0, c_0]
        if self._lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError("LSTM expects hx to be a tuple (h_0, c_0)")
        parts = list(hx) if self._lstm else [hx]
        expected = self._expected_state_shapes(B)
        for k, (p, shape) in enumerate(zip(parts, expected)):
            if not isinstance(p, Tensor):
                raise TypeError(f"hidden state must be a tensor, got {type(p).__name__}")
            if not batched:
                if p.dim() != 2:
                    raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but "
                                       f"got {p.dim()}-D tensor")
                p = p.unsqueeze(1)
            elif p.dim() != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got "
                                   f"{p.dim()}-D tensor")
            if tuple(p.shape) != shape:
                raise RuntimeError(f"Expected hidden size {shape}, got {list(p.shape)}"
                                   f"{' (c_0)' if k == 1 else ''}")
            if p.dtype != xs.dtype:
                raise ValueError(f"hidden state must have the input's type {xs.dtype}, "
                                 f"got {p.dtype}")
            parts[k] = p
        per_cell = [LSTMState(h, c) for h, c in zip(parts[0], parts[1])] if self._lstm \
            else list(parts[0])
        if self.bidirectional:
            return [(per_cell[2 * k], per_cell[2 * k + 1]) for k in range(self.num_layers)]
        return per_cell

    def _join_state(self, states):
        per_cell = [s for layer in states for s in layer] if self.bidirectional else states
        if self._lstm:
            return (torch.stack([s.h for s in per_cell]), torch.stack([s.c for s in per_cell]))
        return torch.stack(per_cell)


class RNN(_RNNBase):
    """Drop-in ``torch.nn.RNN``: Elman RNN (book eq. 10.8), tanh or relu, built from
    :class:`rnnlab.ElmanCell` and its fused BPTT kernel.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None,
                 **options):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             f"'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, **options)

    def _torch_module(self, device) -> nn.Module:
        return nn.RNN(self.input_size, self.hidden_size, self.num_layers, self.nonlinearity,
                      self.bias, self.batch_first, self.dropout, self.bidirectional,
                      device=device)

    def _make_cell(self, input_size, hidden_size, proj_size, factory, options):
        return ElmanCell(input_size, hidden_size, self.nonlinearity, **factory, **options)


class LSTM(_RNNBase):
    """Drop-in ``torch.nn.LSTM`` (with ``proj_size``), built from :class:`rnnlab.LSTMCell`
    and its fused BPTT kernel. Returns ``output, (h_n, c_n)``.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None)``
    """

    _lstm = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 **options):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, **options)

    def _torch_module(self, device) -> nn.Module:
        return nn.LSTM(self.input_size, self.hidden_size, self.num_layers, self.bias,
                       self.batch_first, self.dropout, self.bidirectional, self.proj_size,
                       device=device)

    def _make_cell(self, input_size, hidden_size, proj_size, factory, options):
        return LSTMCell(input_size, hidden_size, proj_size=proj_size, forget_bias=0.0,
                        **factory, **options)


class GRU(_RNNBase):
    """Drop-in ``torch.nn.GRU``, built from :class:`rnnlab.GRUCell` (reset gate after the
    product, as torch.nn) and its fused BPTT kernel.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None)``
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, **options):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, **options)

    def _torch_module(self, device) -> nn.Module:
        return nn.GRU(self.input_size, self.hidden_size, self.num_layers, self.bias,
                      self.batch_first, self.dropout, self.bidirectional, device=device)

    def _make_cell(self, input_size, hidden_size, proj_size, factory, options):
        return GRUCell(input_size, hidden_size, **factory, **options)
