"""10.8: an echo state network (500 units, readout by ridge regression in closed form) run
free on the Mackey-Glass series (tau 17) after 300 teacher-forced steps: its prediction fed
back as its next input for 300 steps, against the true series, with the error on a log scale
and Jaeger's 84-step mark.

    python -m docs.figures --measure esn      # one default run, ~15-30 s on one thread
"""

from __future__ import annotations

from . import figure, load, machine, read_run, save_json, savefig, train

NAME = "esn"
ARGV = ["mackey-glass"]
STEPS = 300


def measure(existing=None) -> None:
    from rnnlab.tasks import load_run

    if existing:
        final, _ = read_run(existing)
        run = existing
    else:
        final, _, run = train(ARGV)
    task, cfg, model = load_run(run)
    pred, truth = task.free_run(model, "cpu", 0, STEPS)
    save_json(NAME, {"command": "rnnlab train " + " ".join(ARGV) + f"; rnnlab generate RUN "
                                f"--length {STEPS}", "machine": machine(1), "final": final,
                     "size": cfg.model.size, "warmup": cfg.data.warmup,
                     "horizon": cfg.data.horizon,
                     "prediction": [round(float(v), 7) for v in pred],
                     "truth": [round(float(v), 7) for v in truth]})


def main() -> None:
    r = load(NAME)
    fig, (ax, ax_err) = figure(6.4, 4.2, nrows=2, sharex=True,
                               gridspec_kw={"height_ratios": [2, 1]})
    steps = range(1, len(r["truth"]) + 1)
    ax.plot(steps, r["truth"], lw=2.5, alpha=0.45, label="Mackey-Glass (truth)")
    ax.plot(steps, r["prediction"][:len(r["truth"])], "--", lw=1, label="ESN, free-running")
    ax.set_ylabel("tanh(x - 1)")
    ax.set_title(f"ESN (N = {r['size']}) free run; test NRMSE_84 = "
                 f"10^{r['final']['test_log10_nrmse']:.2f} (100 windows)")
    ax.legend(loc="lower left", fontsize=8)
    error = [max(abs(p - t), 1e-16) for p, t in zip(r["prediction"], r["truth"])]
    ax_err.semilogy(steps, error, lw=1)
    ax_err.set_ylabel("|error|")
    ax_err.set_xlabel(f"free-running steps after {r['warmup']} teacher-forced ones")
    for a in (ax, ax_err):
        a.axvline(r["horizon"], color="gray", lw=0.8, ls=":")
        a.grid(alpha=0.3)
    savefig(fig, NAME, f"{r['command']} -- {r['machine']}")
