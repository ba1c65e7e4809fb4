"""10.7 and 10.10: the adding problem at T = 100 (Hochreiter & Schmidhuber 1997) for a tanh
RNN, an LSTM and a GRU of the same size and budget: validation MSE against step
(``adding.png``), and the gradient that reaches each step, ‖∂L/∂h_t‖ against t, from
``rnnlab diagnose`` (:func:`rnnlab.diagnose.diagnose_run`) on the trained tanh RNN and LSTM
(``adding_gradient_flow.png``).

    python -m docs.figures --measure adding      # three runs + two diagnoses, ~10-20 min
"""

from __future__ import annotations

from . import curve, figure, load, machine, read_run, save_json, savefig, train

NAME = "adding"
CELLS = ["rnn", "lstm", "gru"]
MEAN_PREDICTOR = 1 / 6          # the target's variance: MSE of always answering its mean


def argv(cell: str) -> list[str]:
    return ["adding", "--set", f"model.cell={cell}", "train.eval_every=100"]


def flows(run) -> dict[str, list[float]]:
    """‖∂L/∂h_t‖ (t = 1..T) at each kept checkpoint of ``run``, on the batch that
    ``rnnlab diagnose`` uses (32 sequences, seed 0), as :func:`rnnlab.diagnose.diagnose_run`
    measures it."""
    import torch

    from rnnlab.diagnose import gradient_flow
    from rnnlab.tasks import load_run
    from rnnlab.training import rundir

    task, _, model = load_run(run)
    model.eval()
    batch = task.batch(torch.Generator().manual_seed(0), 32, "cpu")
    out = {}
    for step, weights in rundir.list_checkpoints(run):
        rundir.load_weights(weights, model)
        norms = next(iter(gradient_flow(model, lambda: task.loss(model, batch)[0]).values()))
        out[str(step)] = [float(f"{n:.4g}") for n in norms]
    return out


def measure(existing: dict | None = None) -> None:
    """Train the three cells (or read ``existing`` {cell: run directory} made by the same
    commands) and write the results."""
    runs, flow = {}, {}
    for cell in CELLS:
        if existing:
            run = existing[cell]
            final, rows = read_run(run)
        else:
            final, rows, run = train(argv(cell))
        runs[cell] = {"command": "rnnlab train " + " ".join(argv(cell)), "final": final,
                      "valid_mse": curve(rows, "mse")}
        if cell in ("rnn", "lstm"):
            flow[cell] = flows(run)
    save_json(NAME, {"machine": machine(1), "runs": runs, "gradient_flow": flow,
                     "diagnose": "rnnlab diagnose RUN: batch 32, seed 0, every checkpoint"})


def main() -> None:
    r = load(NAME)
    fig, ax = figure()
    for cell, run in r["runs"].items():
        ax.plot(*zip(*run["valid_mse"]), "o-", ms=3,
                label=f"{cell}: test MSE {run['final']['test_mse']:.3g}")
    ax.axhline(MEAN_PREDICTOR, color="gray", ls=":", label="mean predictor (1/6)")
    ax.set_yscale("log")
    ax.set_xlabel("training step (64 sequences of T = 100)")
    ax.set_ylabel("validation MSE")
    ax.set_title("adding problem, T = 100, 128 units")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, NAME, f"rnnlab train adding --set model.cell=CELL train.eval_every=100 -- "
                       f"{r['machine']}")

    fig, axes = figure(8, 3.4, ncols=len(r["gradient_flow"]), sharey=True)
    for ax, (cell, per_step) in zip(axes, r["gradient_flow"].items()):
        for step, norms in per_step.items():
            ax.semilogy(range(1, len(norms) + 1), norms, label=f"step {step}")
        ax.set_title(f"{cell}")
        ax.set_xlabel("t (the loss is at t = 100)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("‖∂L/∂h_t‖")
    axes[-1].legend(fontsize=7)
    savefig(fig, f"{NAME}_gradient_flow", f"rnnlab diagnose RUN (checkpoints of the runs "
                                          f"above) -- {r['machine']}")
