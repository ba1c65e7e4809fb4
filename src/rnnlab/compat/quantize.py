"""Dynamic quantization of rnnlab's drop-ins, as torch quantizes torch.nn's modules.

``torch.ao.quantization.quantize_dynamic`` finds the modules to quantize by their exact
type: ``qconfig_spec`` and the module mapping are dictionaries keyed by class, and the
quantized modules' ``from_float`` accepts only ``type(mod) in {nn.LSTM, nn.GRU}`` (and
the cells). A subclass of ``nn.LSTM`` — rnnlab's, or anyone's — is therefore left as it
is, silently. :func:`quantize_dynamic` here is torch's, with rnnlab's classes added
wherever their torch.nn class is named (or implied by the default spec) and a mapping
(:func:`dynamic_quant_mapping`) that turns each into the quantized module torch.nn's
would become (``torch.ao.nn.quantized.dynamic.LSTM``, ...), built from the same weights:

    >>> qmodel = rnnlab.compat.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear})

Calling torch's own function works too, given the mapping and rnnlab's classes:

    >>> torch.ao.quantization.quantize_dynamic(
    ...     model, {rnnlab.LSTM, torch.nn.Linear}, mapping=dynamic_quant_mapping())
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .cells import TORCH_CELL_CLASSES, RNNCell
from .rnn import LSTM, RNN, TORCH_CLASSES

__all__ = ["to_torch", "dynamic_quant_mapping", "quantize_dynamic"]

#: rnnlab's class -> the torch.nn class it stands in for (RNN, LSTM, GRU and the cells)
_TORCH_OF = {**TORCH_CLASSES, **TORCH_CELL_CLASSES}


def to_torch(module: nn.Module) -> nn.Module:
    """The torch.nn module an rnnlab drop-in stands in for, on the same parameter tensors
    (shared, not copied), in the same train/eval mode, with its ``qconfig`` if any."""
    torch_cls = _TORCH_OF.get(type(module))
    if torch_cls is None:
        raise TypeError(f"to_torch takes an rnnlab RNN, LSTM, GRU, RNNCell, LSTMCell or "
                        f"GRUCell, got {type(module).__name__}")
    if getattr(module, "_options", None):
        raise ValueError(f"{type(module).__name__} with rnnlab-only options "
                         f"({', '.join(sorted(module._options))}) has no torch.nn twin")
    if issubclass(torch_cls, nn.RNNBase):
        kwargs = dict(num_layers=module.num_layers, bias=module.bias,
                      batch_first=module.batch_first, dropout=module.dropout,
                      bidirectional=module.bidirectional)
        if isinstance(module, LSTM):
            kwargs["proj_size"] = module.proj_size
        if isinstance(module, RNN):
            kwargs["nonlinearity"] = module.nonlinearity
    else:
        kwargs = {"bias": module.bias}
        if isinstance(module, RNNCell):
            kwargs["nonlinearity"] = module.nonlinearity
    with warnings.catch_warnings():               # torch.nn's dropout warning: given once
        warnings.simplefilter("ignore")
        twin = torch_cls(module.input_size, module.hidden_size, device="meta", **kwargs)
    twin.load_state_dict(module.state_dict(keep_vars=True), assign=True)
    twin.train(module.training)
    if hasattr(module, "qconfig"):
        twin.qconfig = module.qconfig
    return twin


class _FromRnnlab:
    """A mapping target: ``from_float`` of torch's quantized module, on the torch.nn twin."""

    def __init__(self, quantized_cls):
        self.quantized_cls = quantized_cls

    def from_float(self, mod, use_precomputed_fake_quant: bool = False):
        return self.quantized_cls.from_float(
            to_torch(mod), use_precomputed_fake_quant=use_precomputed_fake_quant)

    def __repr__(self) -> str:
        return f"_FromRnnlab({self.quantized_cls.__module__}.{self.quantized_cls.__name__})"


def dynamic_quant_mapping(mapping: dict | None = None) -> dict:
    """``mapping`` (torch's default dynamic-quantization mapping when None) with every
    rnnlab drop-in mapped to what its torch.nn class maps to."""
    from torch.ao.quantization import quantization_mappings  # on use: ~0.1 s to import

    mapping = dict(quantization_mappings.get_default_dynamic_quant_module_mappings()
                   if mapping is None else mapping)
    for ours, theirs in _TORCH_OF.items():
        if theirs in mapping and ours not in mapping:
            mapping[ours] = _FromRnnlab(mapping[theirs])
    return mapping


def _with_rnnlab(spec):
    """A qconfig spec (set or dict of classes / names) with rnnlab's class beside each
    torch.nn class it names."""
    if isinstance(spec, set):
        return spec | {ours for ours, theirs in _TORCH_OF.items() if theirs in spec}
    spec = dict(spec)
    for ours, theirs in _TORCH_OF.items():
        if theirs in spec and ours not in spec:
            spec[ours] = spec[theirs]
    return spec


def quantize_dynamic(model: nn.Module, qconfig_spec=None, dtype=torch.qint8, mapping=None,
                     inplace: bool = False) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` with rnnlab's drop-ins quantized as their
    torch.nn classes are: the same arguments, defaults and result."""
    from torch.ao.quantization import quantize_dynamic as torch_quantize_dynamic

    if qconfig_spec is None and dtype in (torch.qint8, torch.float16):
        # torch's default spec for these dtypes: one qconfig for Linear, the RNNs and cells
        qconfig_spec = {nn.Linear, *_TORCH_OF.values()}
    if qconfig_spec is not None:
        qconfig_spec = _with_rnnlab(qconfig_spec)
    return torch_quantize_dynamic(model, qconfig_spec, dtype, dynamic_quant_mapping(mapping),
                                   inplace)
