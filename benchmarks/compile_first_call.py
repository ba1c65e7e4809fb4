"""The first call of a ``torch.compile``-d recurrent module: torch.nn's against rnnlab's.

    python benchmarks/compile_first_call.py [--kinds GRU LSTM RNN] [--backend inductor]

Each measurement runs in a fresh process with an empty inductor cache, at 1 thread: the
first call (forward and backward, 2 layers, bidirectional, T 10, B 4, I 8, H 16) and the
second. Four ways:

- ``torch.nn eager``: ``torch.compile(nn.X)``; dynamo refuses nn.RNN/LSTM/GRU, so the call
  breaks the graph and runs eagerly (what a torch.nn user gets by default);
- ``rnnlab eager``: ``torch.compile(rnnlab.X)``, the same default: rnnlab's modules are
  torch.nn's classes, so dynamo refuses them alike and the call runs eagerly;
- ``torch.nn fullgraph``: ``torch.compile(nn.X, fullgraph=True)`` under
  ``torch._dynamo.config.allow_rnn = True`` (dynamo traces into torch's op; minutes);
- ``rnnlab fullgraph``: ``torch.compile(rnnlab.X, fullgraph=True)`` under ``allow_rnn``
  (each layer and direction one rnnlab operator).

The ratios compare like with like: rnnlab's default against torch.nn's default, and
rnnlab's fullgraph against torch.nn's fullgraph.

``--skip-torch-fullgraph`` leaves out the slow third one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

WAYS = ("torch.nn eager", "rnnlab eager", "torch.nn fullgraph", "rnnlab fullgraph")


def measure(kind: str, way: str, backend: str) -> dict:
    """In this process: the first and second compiled call of ``way`` for ``kind``."""
    import warnings

    import torch

    import rnnlab

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cls = getattr(rnnlab if way.startswith("rnnlab") else torch.nn, kind)
    model = cls(8, 16, num_layers=2, bidirectional=True)
    x = torch.randn(10, 4, 8)
    fullgraph = way.endswith("fullgraph")
    times = []
    with torch._dynamo.config.patch(allow_rnn=fullgraph):
        compiled = torch.compile(model, fullgraph=fullgraph, backend=backend)
        for _ in range(2):
            start = time.perf_counter()
            compiled(x)[0].sum().backward()
            times.append(time.perf_counter() - start)
    return {"kind": kind, "way": way, "first_s": times[0], "second_s": times[1]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["GRU", "LSTM", "RNN"])
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--skip-torch-fullgraph", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(*args.worker)))
        return
    ways = [w for w in WAYS if not (args.skip_torch_fullgraph and w == "torch.nn fullgraph")]
    pairs = [(f"rnnlab ÷ torch.nn {mode}", f"rnnlab {mode}", f"torch.nn {mode}")
             for mode in ("eager", "fullgraph") if f"torch.nn {mode}" in ways]
    print(f"| kind | {' | '.join(f'{w} first call' for w in ways)} | "
          f"{' | '.join(p[0] for p in pairs)} |")
    print("|---" * (len(ways) + len(pairs) + 1) + "|")
    for kind in args.kinds:
        first = {}
        for way in ways:
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
                out = subprocess.run([sys.executable, __file__, "--worker", kind, way,
                                      args.backend], env=env, capture_output=True, text=True)
            if out.returncode:
                first[way] = None
                print(f"{kind} {way}: failed: {out.stderr.strip().splitlines()[-1:]}",
                      file=sys.stderr)
            else:
                first[way] = json.loads(out.stdout.strip().splitlines()[-1])["first_s"]
        cells = [f"{first[w]:.2f} s" if first[w] is not None else "failed" for w in ways]
        ratios = [f"{first[a] / first[b]:.2f}×" if first[a] and first[b] else "—"
                  for _, a, b in pairs]
        print(f"| {kind} | {' | '.join(cells + ratios)} |")

if __name__ == "__main__":
    main()
