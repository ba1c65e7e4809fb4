"""The report of a run directory: ``rnnlab diagnose RUN`` loads the weights kept at each
checkpoint (``RUN/checkpoints/``, the untrained model included), measures them on one
training batch with :mod:`rnnlab.diagnose.measure`, and writes ``RUN/diagnose/*.png``,
``RUN/diagnose/diagnose.json`` and one self-contained ``RUN/report.html`` (summary, final
metrics, loss curve, the diagnostics, a sample where the task generates text) with every
figure embedded, so it opens offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import torch

from ..config import resolve_device
from ..tasks import TaskError, load_run
from ..trace import LayerTrace, tracing
from ..training import rundir
from .measure import gradient_flow, hidden, jacobian_flow, saturation, weight_spectra

__all__ = ["diagnose_run"]


# --- the run-level driver -----------------------------------------------------------------


def diagnose_run(path, batch_size: int = 32, seed: int = 0, max_steps: int = 100,
                 log=print) -> dict:
    """Diagnose the run directory ``path``: write ``diagnose/*.png`` and ``report.html``;
    return the figures as a JSON-able dict."""
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
        flows[step] = gradient_flow(model, lambda: task.loss(model, batch)[0])
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
        rundir.atomic_write(out_dir / name, lambda tmp, png=png: Path(tmp).write_bytes(png))

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
    hs = torch.stack([hidden(after)[0].detach().float().cpu()
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
