"""Why a recurrent net learns or fails, measured on any model built from rnnlab layers:
gradient flow through time, state-to-state Jacobians, weight spectra, saturation.

Book section 10.7 (the challenge of long-term dependencies) and Pascanu, Mikolov & Bengio
2013 ("On the difficulty of training recurrent neural networks"):

- **gradient norm through time** (:func:`gradient_flow`): ‖∂L/∂h_t‖ for every step t of
  every recurrent layer, averaged over the batch (for an LSTM, h_t is the whole state
  (h, c)). The total derivative of the loss with respect to the state, the quantity BPTT
  carries backwards (eq. 10.18 ff.): when it decays geometrically from t = T back to t = 1
  the early inputs cannot be learned (vanishing gradient); when it grows, it explodes;
- **the state-to-state Jacobian** (:func:`jacobian_flow`) J_t = ∂h_t/∂h_{t-1} along the
  trajectory of the first sequence, its spectral radius and largest singular value per
  step, and the norm of the product ‖∂h_T/∂h_t‖ = ‖J_T ⋯ J_{t+1}‖₂ (eq. 10.36-10.37: the
  product of Jacobians is what vanishes or explodes);
- **the recurrent weights' spectra** (:func:`weight_spectra`): eigenvalues of each H×H
  block of W_hh (one per gate for gated cells) against the unit circle, with spectral
  radius and largest singular value;
- **saturation** (:func:`saturation`): gate activations (LSTM i, f, o; GRU r, z; MGU f) or,
  for cells without gates, the hidden units (|h| near 1 means a saturated tanh).

The measurements run the traced reference loop (:func:`rnnlab.trace.tracing`) in place of
the fused kernels, because BPTT through a kernel never materialises the per-step state
gradients; the model's weights and outputs are the same. :mod:`rnnlab.diagnose.report`
turns them into the figures and the HTML report of a run directory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..cells import GRUCell, LeakyCell, LSTMCell, MGUCell, state_fields
from ..layers import Recurrent
from ..trace import LayerTrace, tracing

__all__ = ["GATES", "gradient_flow", "jacobian_flow", "weight_spectra", "gate_values",
           "saturation", "hidden"]

#: gate names of the H x H blocks of W_hh, in the cells' row order
GATES = {LSTMCell: ("input i", "forget f", "cell g", "output o"),
         GRUCell: ("reset r", "update z", "new n"),
         MGUCell: ("forget f", "new n")}


def hidden(state) -> Tensor:
    """The hidden part of a state: the tensor itself, or a structured state's first field."""
    return state_fields(state)[0]


def gradient_flow(model: nn.Module, loss: Callable[[], Tensor]) -> dict[str, list[float]]:
    """{layer name: [‖∂L/∂h_t‖ averaged over the batch, t = 1..T]} for the scalar ``loss()``
    that runs ``model`` (e.g. ``lambda: task.loss(model, batch)[0]``)."""
    model.zero_grad(set_to_none=True)
    with tracing(model) as traces:
        loss().backward()
    norms = {}
    for trace in traces:
        curve = []
        for _, _, after in trace.by_time():
            squares = [t.grad.pow(2).flatten(1).sum(1) for t in state_fields(after)
                       if t.grad is not None]
            curve.append(float(torch.stack(squares).sum(0).sqrt().mean()) if squares else 0.0)
        norms[_unique(norms, trace.name)] = curve
    model.zero_grad(set_to_none=True)
    return norms


def _unique(existing: dict, name: str) -> str:
    key, k = name, 1
    while key in existing:
        k += 1
        key = f"{name}#{k}"
    return key


def jacobian_flow(trace: LayerTrace, max_steps: int = 100) -> dict[str, list[float]]:
    """Along the first sequence of ``trace``: per step the spectral radius and the largest
    singular value of J_t = ∂s_t/∂s_{t-1}, and ‖∂s_T/∂s_t‖₂ for t = T..0 (index 0 = s_T)."""
    cell, rates = trace.layer.cell, trace.layer.zoneout
    steps = trace.by_time()[:max_steps]
    if trace.layer.reverse:
        steps = steps[::-1]
    radius, sigma, jacobians = [], [], []
    for t, before, _ in steps:
        fields = [f[:1].detach() for f in state_fields(before)]
        sizes = [f.shape[1] for f in fields]
        x = trace.xs[t, :1]

        def step(flat, sizes=sizes, x=x, like=before):
            parts = [p.unsqueeze(0) for p in flat.split(sizes)]
            state = type(like)(*parts) if isinstance(like, tuple) else parts[0]
            new = state_fields(cell(state, x)[0])
            if any(rates):                            # zoneout at evaluation: its expectation
                new = [torch.lerp(n, s, z) for n, s, z in zip(new, state_fields(state), rates)]
            return torch.cat([f[0] for f in new])

        flat = torch.cat([f[0] for f in fields])
        with torch.enable_grad():
            J = torch.autograd.functional.jacobian(step, flat, vectorize=True)
        J = J.double()
        jacobians.append(J)
        radius.append(float(torch.linalg.eigvals(J).abs().max()))
        sigma.append(float(torch.linalg.matrix_norm(J, 2)))
    product, P = [1.0], torch.eye(jacobians[0].shape[0], dtype=torch.float64)
    for J in reversed(jacobians):                      # ∂s_T/∂s_{t-1} = (∂s_T/∂s_t) J_t
        P = P @ J
        product.append(float(torch.linalg.matrix_norm(P, 2)))
    return {"spectral_radius": radius, "sigma_max": sigma, "product_norm": product}


def _unwrap(cell):
    while isinstance(cell, LeakyCell):
        cell = cell.cell
    return cell


def weight_spectra(model: nn.Module) -> list[dict]:
    """Per recurrent layer and H x H block of W_hh: eigenvalues, spectral radius, σ_max."""
    out = []
    for name, layer in model.named_modules():
        if not isinstance(layer, Recurrent):
            continue
        cell = _unwrap(layer.cell)
        W = getattr(cell, "W_hh", None)
        if W is None:
            continue
        W = W.detach().double().cpu()
        cols = W.shape[1]
        n_blocks = W.shape[0] // cols if W.shape[0] % cols == 0 else 1
        names = GATES.get(type(cell), ("W_hh",))
        if len(names) != n_blocks:
            names = tuple(f"block {k}" for k in range(n_blocks))
        for gate, block in zip(names, W.chunk(n_blocks, dim=0)):
            entry = {"layer": name or "rnn", "block": gate,
                     "sigma_max": float(torch.linalg.matrix_norm(block, 2))}
            if block.shape[0] == block.shape[1]:
                eig = torch.linalg.eigvals(block)
                entry["spectral_radius"] = float(eig.abs().max())
                entry["eigenvalues"] = torch.stack([eig.real, eig.imag], 1).tolist()
            out.append(entry)
    return out


def gate_values(cell, state, x: Tensor) -> dict[str, Tensor]:
    """The gate activations in (0, 1) of one step, by gate name ({} for gateless cells)."""
    cell = _unwrap(cell)
    h = hidden(state)
    if isinstance(cell, LSTMCell):
        gates = nn.functional.linear(x, cell.W_xh, cell.b_xh) + \
            nn.functional.linear(h, cell.W_hh, cell.b_hh)
        i, f, _, o = gates.chunk(4, dim=-1)
        return {"input i": i.sigmoid(), "forget f": f.sigmoid(), "output o": o.sigmoid()}
    if isinstance(cell, GRUCell):
        H = cell.hidden_size
        gx = nn.functional.linear(x, cell.W_xh, cell.b_xh)[..., :2 * H]
        gh = nn.functional.linear(h, cell.W_hh[:2 * H],
                                  None if cell.b_hh is None else cell.b_hh[:2 * H])
        r, z = (gx + gh).chunk(2, dim=-1)
        return {"reset r": r.sigmoid(), "update z": z.sigmoid()}
    if isinstance(cell, MGUCell):
        H = cell.hidden_size
        gx = nn.functional.linear(x, cell.W_xh[:H], None if cell.b_xh is None else cell.b_xh[:H])
        gh = nn.functional.linear(h, cell.W_hh[:H], None if cell.b_hh is None else cell.b_hh[:H])
        return {"forget f": (gx + gh).sigmoid()}
    return {}


@torch.no_grad()
def saturation(trace: LayerTrace, threshold: float = 0.05) -> dict:
    """Gate activations (or, without gates, hidden units) over the traced batch: their
    values and the fraction within ``threshold`` of the saturating ends."""
    values: dict[str, list[Tensor]] = {}
    for t, before, after in trace.by_time():
        gates = gate_values(trace.layer.cell, before, trace.xs[t])
        if not gates:
            gates = {"hidden |h|": hidden(after).abs()}
        for name, v in gates.items():
            values.setdefault(name, []).append(v.detach().flatten().cpu())
    out = {}
    for name, chunks in values.items():
        v = torch.cat(chunks)
        low = 0.0 if not name.startswith("hidden") else None
        saturated = (v > 1 - threshold) if low is None else ((v < threshold) | (v > 1 - threshold))
        out[name] = {"values": v, "saturated": float(saturated.float().mean())}
    return out


