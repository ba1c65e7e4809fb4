"""Why a recurrent net learns or fails: gradient flow through time, spectra, saturation.

Book section 10.7 (the challenge of long-term dependencies) and Pascanu, Mikolov & Bengio
2013 ("On the difficulty of training recurrent neural networks"). For a saved run,

    rnnlab diagnose RUN [--batch 32] [--seed 0] [--json]

loads the weights kept at each checkpoint (``RUN/checkpoints/``, the untrained model
included) and, on one batch of the task's training data, measures

- **gradient norm through time**: ‖∂L/∂h_t‖ for every step t of every recurrent layer,
  averaged over the batch (for an LSTM, h_t is the whole state (h, c)). The total derivative
  of the loss with respect to the state, the quantity BPTT carries backwards (eq. 10.18 ff.):
  when it decays geometrically from t = T back to t = 1 the early inputs cannot be learned
  (vanishing gradient); when it grows, it explodes;
- **the state-to-state Jacobian** J_t = ∂h_t/∂h_{t-1} along the trajectory of the first
  sequence, its spectral radius and largest singular value per step, and the norm of the
  product ‖∂h_T/∂h_t‖ = ‖J_T ⋯ J_{t+1}‖₂ (eq. 10.36-10.37: the product of Jacobians is what
  vanishes or explodes);
- **the recurrent weights' spectra**: eigenvalues of each H×H block of W_hh (one per gate
  for gated cells) against the unit circle, with spectral radius and largest singular value;
- **saturation**: histograms of gate activations (LSTM i, f, o; GRU r, z; MGU f) or, for
  cells without gates, of the hidden units (|h| near 1 means a saturated tanh);
- **a hidden-state heatmap** over the first sequence.

It writes PNGs to ``RUN/diagnose/`` and one self-contained ``RUN/report.html`` (summary,
final metrics, loss curve, the diagnostics, a sample where the task generates text) with
every figure embedded, so it opens offline.

The measurements run the reference time loop (:func:`rnnlab.unroll` with ``trace``) in place
of the fused kernels, because BPTT through a kernel never materialises the per-step state
gradients; the model's weights and outputs are the same. Every recurrent layer built from
rnnlab's :class:`~rnnlab.layers.Recurrent` is covered (Stack, Bidirectional, task models).
"""

from __future__ import annotations

import base64
import html
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from . import rundir
from .cells import GRUCell, LeakyCell, LSTMCell, MGUCell
from .layers import Recurrent
from .tasks.base import TaskError
from .unroll import state_fields as _fields
from .unroll import unroll

__all__ = ["DiagnoseError", "LayerTrace", "tracing", "gradient_flow", "jacobian_flow",
           "weight_spectra", "saturation", "diagnose_run"]

#: gate names of the H x H blocks of W_hh, in the cells' row order
GATES = {LSTMCell: ("input i", "forget f", "cell g", "output o"),
         GRUCell: ("reset r", "update z", "new n"),
         MGUCell: ("forget f", "new n")}


class DiagnoseError(ValueError):
    """A run that cannot be diagnosed (no rnnlab recurrent layer in its model)."""


@dataclass
class LayerTrace:
    """One recurrent layer's pass: its steps ``(t, state_before, state_after)``, its input."""

    name: str
    layer: Recurrent
    xs: Tensor                                        # (T, B, I)
    steps: list = field(default_factory=list)
    lengths: Tensor | None = None                     # (B,), None = all T steps valid

    def by_time(self) -> list:
        """The steps sorted by t (a reverse layer runs them backwards)."""
        return sorted(self.steps, key=lambda step: step[0])



def _hidden(state) -> Tensor:
    return _fields(state)[0]


@contextmanager
def tracing(model: nn.Module):
    """Run every :class:`Recurrent` of ``model`` through the reference loop, recording each
    step's states (with ``retain_grad``) into the yielded list of :class:`LayerTrace`."""
    traces: list[LayerTrace] = []
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, Recurrent)]
    if not layers:
        raise DiagnoseError(f"the model ({type(model).__name__}) has no rnnlab Recurrent "
                            f"layer; diagnose covers models built from rnnlab.layers")

    def traced(name, layer):
        def forward(xs, state=None, lengths=None):
            trace = LayerTrace(name, layer, xs.detach(),
                               lengths=None if lengths is None else torch.as_tensor(lengths))
            drop = zone = None
            if layer.recurrent_dropout or any(layer.zoneout):     # the layer's own masks
                if state is None:
                    state = layer.cell.init_state(xs.shape[1], xs.device, xs.dtype)
                drop, zone = layer.masks(xs.shape[0], xs.shape[1], state, xs)
            ys, state = unroll(layer.cell, xs, state, lengths, layer.reverse, trace.steps,
                               drop=drop, zone=zone)
            for _, _, after in trace.steps:
                for tensor in _fields(after):
                    if tensor.requires_grad:
                        tensor.retain_grad()
            traces.append(trace)
            return ys, state
        return forward

    for name, layer in layers:
        layer.forward = traced(name or "rnn", layer)
    try:
        yield traces
    finally:
        for _, layer in layers:
            del layer.forward


def gradient_flow(task, model: nn.Module, batch) -> dict[str, list[float]]:
    """{layer name: [‖∂L/∂h_t‖ averaged over the batch, t = 1..T]} for the task's loss."""
    model.zero_grad(set_to_none=True)
    with tracing(model) as traces:
        loss, _ = task.loss(model, batch)
        loss.backward()
    norms = {}
    for trace in traces:
        curve = []
        for _, _, after in trace.by_time():
            squares = [t.grad.pow(2).flatten(1).sum(1) for t in _fields(after)
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
        fields = [f[:1].detach() for f in _fields(before)]
        sizes = [f.shape[1] for f in fields]
        x = trace.xs[t, :1]

        def step(flat, sizes=sizes, x=x, like=before):
            parts = [p.unsqueeze(0) for p in flat.split(sizes)]
            state = type(like)(*parts) if isinstance(like, tuple) else parts[0]
            new = _fields(cell(state, x)[0])
            if any(rates):                            # zoneout at evaluation: its expectation
                new = [torch.lerp(n, s, z) for n, s, z in zip(new, _fields(state), rates)]
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
    h = _hidden(state)
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
            gates = {"hidden |h|": _hidden(after).abs()}
        for name, v in gates.items():
            values.setdefault(name, []).append(v.detach().flatten().cpu())
    out = {}
    for name, chunks in values.items():
        v = torch.cat(chunks)
        low = 0.0 if not name.startswith("hidden") else None
        saturated = (v > 1 - threshold) if low is None else ((v < threshold) | (v > 1 - threshold))
        out[name] = {"values": v, "saturated": float(saturated.float().mean())}
    return out


# --- the run-level driver -----------------------------------------------------------------


def diagnose_run(path, batch_size: int = 32, seed: int = 0, max_steps: int = 100,
                 log=print) -> dict:
    """Diagnose the run directory ``path``: write ``diagnose/*.png`` and ``report.html``;
    return the figures as a JSON-able dict."""
    from .tasks import load_run
    from .train import resolve_device

    run = Path(path)
    task, cfg, model = load_run(run)
    device = resolve_device(cfg.train.device)
    model.to(device).eval()
    batch = task.batch(torch.Generator().manual_seed(seed), batch_size, device)
    checkpoints = rundir.list_checkpoints(run) or [(cfg.train.steps, run / rundir.WEIGHTS)]
    out_dir = run / "diagnose"
    out_dir.mkdir(exist_ok=True)

    flows, jacobians, spectra, saturations = {}, {}, {}, {}
    final_traces = None
    for step, weights in checkpoints:
        rundir.load_weights(weights, model)
        model.to(device).eval()
        flows[step] = gradient_flow(task, model, batch)
        with torch.no_grad(), tracing(model) as traces:
            task.loss(model, batch)
        jacobians[step] = jacobian_flow(traces[0], max_steps)
        spectra[step] = weight_spectra(model)
        saturations[step] = {tr.name: saturation(tr) for tr in traces[:2]}
        final_traces = traces
        log(f"step {step:>6} | grad norm first/last step "
            f"{_ratio(next(iter(flows[step].values()))):.3g} | "
            f"Jacobian product ‖∂h_T/∂h_1‖ {jacobians[step]['product_norm'][-1]:.3g}")

    figures = {
        "gradient_flow.png": _plot_flow(flows),
        "jacobian.png": _plot_jacobian(jacobians),
        "spectrum.png": _plot_spectra(spectra),
        "saturation.png": _plot_saturation(saturations),
        "hidden_heatmap.png": _plot_heatmap(final_traces[0]),
    }
    for name, png in figures.items():
        rundir._atomic_write(out_dir / name, lambda tmp, png=png: Path(tmp).write_bytes(png))

    summary = _summary(flows, jacobians, spectra, saturations)
    rundir.write_json(out_dir / "diagnose.json", summary)
    sample = None
    try:
        sample = task.generate(model, None, 300, 0.8, torch.Generator().manual_seed(seed),
                               device)
    except (TaskError, NotImplementedError):
        pass
    report = run / "report.html"
    rundir.write_text(report, _report_html(run, task, summary, figures, sample))
    return {"task": task.name, "run": str(run), "report": str(report), **summary}


def _ratio(curve: list[float]) -> float:
    """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (inf when the last is 0)."""
    return curve[0] / curve[-1] if curve and curve[-1] > 0 else math.inf


def _summary(flows, jacobians, spectra, saturations) -> dict:
    out = {"checkpoints": sorted(flows)}
    out["gradient_norm"] = {
        str(step): {layer: {"first": c[0], "last": c[-1], "first_over_last": _ratio(c)}
                    for layer, c in per_layer.items()}
        for step, per_layer in flows.items()}
    out["jacobian"] = {
        str(step): {"mean_spectral_radius": sum(j["spectral_radius"]) / len(j["spectral_radius"]),
                    "mean_sigma_max": sum(j["sigma_max"]) / len(j["sigma_max"]),
                    "product_norm_T_to_1": j["product_norm"][-1]}
        for step, j in jacobians.items()}
    out["recurrent_weights"] = {
        str(step): [{k: v for k, v in e.items() if k != "eigenvalues"} for e in entries]
        for step, entries in spectra.items()}
    out["saturation"] = {
        str(step): {layer: {gate: d["saturated"] for gate, d in per_gate.items()}
                    for layer, per_gate in per_layer.items()}
        for step, per_layer in saturations.items()}
    return out


# --- figures ------------------------------------------------------------------------------


def _figure(nrows=1, ncols=1, size=(6.4, 4.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(nrows, ncols, figsize=size, squeeze=False)


def _png(plt, fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _colors(n):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(k / max(1, n - 1)) for k in range(n)]


def _plot_flow(flows) -> bytes:
    plt, fig, axes = _figure()
    ax = axes[0][0]
    for color, (step, per_layer) in zip(_colors(len(flows)), sorted(flows.items())):
        for k, curve in enumerate(per_layer.values()):
            ax.semilogy(range(1, len(curve) + 1), [max(v, 1e-30) for v in curve],
                        color=color, linestyle="-" if k == 0 else ":",
                        label=f"step {step}" if k == 0 else None)
    ax.set_xlabel("time step t")
    ax.set_ylabel("‖∂L/∂h_t‖ (batch mean)")
    ax.set_title("gradient through time (solid: first layer)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _png(plt, fig)


def _plot_jacobian(jacobians) -> bytes:
    plt, fig, axes = _figure(1, 2, (10, 4))
    for color, (step, j) in zip(_colors(len(jacobians)), sorted(jacobians.items())):
        axes[0][0].plot(range(1, len(j["spectral_radius"]) + 1), j["spectral_radius"],
                        color=color, label=f"step {step}")
        prod = j["product_norm"]
        axes[0][1].semilogy(range(len(prod) - 1, -1, -1), [max(v, 1e-30) for v in prod],
                            color=color, label=f"step {step}")
    axes[0][0].axhline(1.0, color="grey", lw=0.8)
    axes[0][0].set_xlabel("t")
    axes[0][0].set_title("spectral radius of J_t = ∂h_t/∂h_{t-1}")
    axes[0][1].set_xlabel("t")
    axes[0][1].set_title("‖∂h_T/∂h_t‖₂ = ‖J_T ⋯ J_{t+1}‖")
    for ax in axes[0]:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _png(plt, fig)


def _plot_spectra(spectra) -> bytes:
    steps = sorted(spectra)
    first, last = steps[0], steps[-1]
    blocks = [e for e in spectra[last] if "eigenvalues" in e][:4]
    plt, fig, axes = _figure(1, max(1, len(blocks)), (3.4 * max(1, len(blocks)), 3.6))
    theta = torch.linspace(0, 2 * math.pi, 200)
    for ax, entry in zip(axes[0], blocks):
        ax.plot(theta.cos(), theta.sin(), color="grey", lw=0.8)
        before = next((e for e in spectra[first] if e["layer"] == entry["layer"]
                       and e["block"] == entry["block"] and "eigenvalues" in e), None)
        if before is not None and first != last:
            ev = torch.tensor(before["eigenvalues"])
            ax.scatter(ev[:, 0], ev[:, 1], s=6, alpha=0.5, label=f"step {first}")
        ev = torch.tensor(entry["eigenvalues"])
        ax.scatter(ev[:, 0], ev[:, 1], s=6, label=f"step {last}")
        ax.set_aspect("equal")
        ax.set_title(f"{entry['layer']} {entry['block']}\nρ = {entry['spectral_radius']:.2f}",
                     fontsize=8)
        ax.legend(fontsize=6)
    if not blocks:
        axes[0][0].text(0.5, 0.5, "no square recurrent matrix", ha="center")
    return _png(plt, fig)


def _plot_saturation(saturations) -> bytes:
    last = saturations[max(saturations)]
    gates = [(layer, gate, d) for layer, per in last.items() for gate, d in per.items()][:6]
    plt, fig, axes = _figure(1, len(gates), (3.0 * len(gates), 3.2))
    for ax, (layer, gate, d) in zip(axes[0], gates):
        ax.hist(d["values"].numpy(), bins=40, color="tab:blue")
        ax.set_title(f"{layer}: {gate}\nsaturated {100 * d['saturated']:.0f}%", fontsize=8)
        ax.set_yticks([])
    return _png(plt, fig)


def _plot_heatmap(trace: LayerTrace) -> bytes:
    hs = torch.stack([_hidden(after)[0].detach().float().cpu()
                      for _, _, after in trace.by_time()], 1)        # (H, T)
    plt, fig, axes = _figure(size=(7, 3.6))
    image = axes[0][0].imshow(hs[:64].numpy(), aspect="auto", cmap="RdBu_r",
                              vmin=-1, vmax=1, interpolation="nearest")
    axes[0][0].set_xlabel("t")
    axes[0][0].set_ylabel("hidden unit")
    axes[0][0].set_title(f"{trace.name}: h_t over the first sequence")
    fig.colorbar(image, ax=axes[0][0])
    return _png(plt, fig)


# --- the report ---------------------------------------------------------------------------


CAPTIONS = {
    "gradient_flow.png": "Gradient norm ‖∂L/∂h_t‖ against t, one curve per checkpoint. "
                         "A curve falling steeply towards t = 1 is the vanishing gradient.",
    "jacobian.png": "Left: spectral radius of the state-to-state Jacobian per step. Right: "
                    "norm of the Jacobian product from t to T (log scale).",
    "spectrum.png": "Eigenvalues of the recurrent weight blocks against the unit circle.",
    "saturation.png": "Gate activations (or |h|) over the batch; mass at 0 or 1 is "
                      "saturation, where the gradient through the gate vanishes.",
    "hidden_heatmap.png": "Hidden state over the first sequence of the batch.",
}


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _report_html(run: Path, task, summary: dict, figures: dict, sample: str | None) -> str:
    parts = [f"<h1>rnnlab report: {html.escape(task.name)}</h1>",
             f"<p>{html.escape(task.description)}</p>"]
    if (run / rundir.SUMMARY).is_file():
        text = (run / rundir.SUMMARY).read_text(encoding="utf-8")
        parts.append(f"<h2>Summary</h2><pre>{html.escape(text)}</pre>")
    records = rundir.read_metrics(run / rundir.METRICS)
    final = {}
    for r in records:
        if r.get("split") in ("valid", "test"):
            final[r["split"]] = r
    if final:
        rows = "".join(
            f"<tr><td>{html.escape(split)}</td><td>{r['step']}</td><td>"
            + ", ".join(f"{html.escape(k)} {v:.4g}" for k, v in r.items()
                        if k not in ("step", "split") and isinstance(v, (int, float)))
            + "</td></tr>" for split, r in final.items())
        parts.append("<h2>Final metrics</h2><table><tr><th>split</th><th>step</th>"
                     f"<th>metrics</th></tr>{rows}</table>")
    if (run / rundir.PLOT).is_file():
        parts.append("<h2>Training curves</h2>" + _img((run / rundir.PLOT).read_bytes(),
                                                          "loss curves"))
    parts.append("<h2>Diagnostics</h2>")
    for name, png in figures.items():
        parts.append(f"<figure>{_img(png, name)}<figcaption>{html.escape(CAPTIONS[name])}"
                     f"</figcaption></figure>")
    parts.append("<h2>Figures</h2><pre>" + html.escape(json.dumps(summary, indent=1)) + "</pre>")
    if sample is not None:
        parts.append(f"<h2>Sample</h2><pre>{html.escape(sample)}</pre>")
    # the offline check reads data-figures-shown (images that decoded) after load
    script = ("<script>window.addEventListener('load',function(){var i=document.images,n=0;"
              "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
              "document.body.setAttribute('data-figures-shown',n);});</script>")
    style = ("<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
             "img{max-width:100%}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}"
             "td,th{padding:2px 8px;text-align:left}</style>")
    n_figures = len(figures) + int((run / rundir.PLOT).is_file())
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>rnnlab report: {html.escape(task.name)}</title>{style}{script}</head>"
            f"<body data-figures-total='{n_figures}'>" + "\n".join(parts) + "</body></html>\n")
