"""PyTorch's own RNN tests, run with rnnlab swapped in for torch.nn.

    python benchmarks/torch_suite.py [PATH/TO/pytorch/test/test_nn.py] [--variants ...]
    python benchmarks/torch_suite.py --module-db

The first form runs the RNN, LSTM, GRU and PackedSequence tests of PyTorch's
``test/test_nn.py`` (tests whose names mention rnn, lstm, gru, pack or variable_sequence,
an LSTM over packed sequences; CUDA-only ones skip on a CPU machine) three times: with
torch.nn's own classes, and with ``torch.nn.RNN``,
``LSTM``, ``GRU``, ``RNNCell``, ``LSTMCell`` and ``GRUCell`` replaced by rnnlab's (the
naive swap ``torch.nn.LSTM = rnnlab.LSTM``, before the test file is imported) on the
default path and on the fused one. It prints the pass / fail / skip counts of each and
the names of the tests that do not pass. Nothing of PyTorch's is copied into rnnlab: give
the path of a PyTorch checkout's ``test/test_nn.py`` (v2.13.0 matches the pinned torch),
or, with network access, the script downloads that file into a temporary folder.
PyTorch's test files need ``pytest``, ``expecttest`` and ``hypothesis``.

``--module-db`` runs rnnlab's own ``tests/test_compat_module_db.py`` in full (slow cases
included): torch's ``module_db`` samples for the same classes, shipped in the torch wheel,
and prints the pass counts per check and path.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = "https://raw.githubusercontent.com/pytorch/pytorch/v{version}/test/test_nn.py"
SELECT = "rnn or RNN or lstm or LSTM or gru or GRU or pack or Pack or variable_sequence"
VARIANTS = {"torch.nn": "", "rnnlab default": "auto", "rnnlab fused": "fused"}

# the plugin that swaps torch.nn's classes for rnnlab's, loaded by pytest (``-p``) before
# the test file is imported; the variant's path comes through RNNLAB_SWAP_PATH
PLUGIN = '''
import os
path = os.environ.get("RNNLAB_SWAP_PATH", "")
if path:
    import torch
    import rnnlab

    for name in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"):
        cls = getattr(rnnlab, name)
        if path != "auto" and not name.endswith("Cell"):     # cells have no paths
            def __init__(self, *args, _cls=cls, **kwargs):
                kwargs.setdefault("path", path)
                _cls.__init__(self, *args, **kwargs)
            # a module-level class of this plugin, so that pickling finds it
            cls = type(name, (cls,), {"__init__": __init__, "__module__": __name__})
            globals()[name] = cls
        setattr(torch.nn, name, cls)
'''


def fetch(version: str, folder: Path) -> Path:
    target = folder / "test_nn.py"
    url = URL.format(version=version)
    print(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=60) as response:
        target.write_bytes(response.read())
    return target


def run_variant(test_file: Path, folder: Path, path: str, select: str,
                timeout: int) -> tuple[Counter, list[str]]:
    """pytest on a copy of the test file in ``folder``; outcome counts and non-passes."""
    env = dict(os.environ, RNNLAB_SWAP_PATH=path,
               PYTHONPATH=os.pathsep.join([str(folder), str(ROOT / "src"),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", str(folder / test_file.name), "-q", "-rA",
           "-p", "rnnlab_swap", "-p", "no:cacheprovider", "-c", os.devnull,
           "--rootdir", str(folder), "-k", select]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)
    counts, bad = Counter(), []
    for line in done.stdout.splitlines():
        skipped = re.match(r"^SKIPPED \[(\d+)\]", line)     # -rA groups skips, counted
        m = re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", line)
        if skipped:
            counts["SKIPPED"] += int(skipped.group(1))
        elif m:
            counts[m.group(1)] += 1
            if m.group(1) in ("FAILED", "ERROR", "XPASS"):
                bad.append(m.group(2).split("::")[-1])
    if not counts:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"pytest ran nothing (exit {done.returncode})")
    return counts, bad


def main_test_nn(args) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = Path(args.test_nn) if args.test_nn else fetch(args.version, folder)
        if source != folder / "test_nn.py":
            shutil.copy(source, folder / "test_nn.py")
        (folder / "rnnlab_swap.py").write_text(PLUGIN)
        print(f"PyTorch's {source.name}, tests selected by -k '{args.select}'")
        print(f"{'variant':<16} {'passed':>7} {'failed':>7} {'skipped':>8}")
        failures = {}
        for name in args.variants:
            counts, bad = run_variant(Path("test_nn.py"), folder, VARIANTS[name],
                                      args.select, args.timeout)
            failed = counts["FAILED"] + counts["ERROR"] + counts["XPASS"]
            print(f"{name:<16} {counts['PASSED'] + counts['XFAIL']:>7} {failed:>7} "
                  f"{counts['SKIPPED']:>8}", flush=True)
            failures[name] = bad
        for name, bad in failures.items():
            if bad:
                print(f"\nnot passing with {name}: {', '.join(sorted(bad))}")
    return 0


def main_module_db(args) -> int:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_compat_module_db.py"),
           "-q", "-rA", "-p", "no:cacheprovider", "-m", "slow or not slow"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=args.timeout)
    table: dict[tuple[str, str], Counter] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) \S+::(\w+)\[(.*?)\]", line)
        if m:
            outcome, test, ident = m.groups()
            path = ident.split("-")[-1]
            table.setdefault((test, path), Counter())[outcome] += 1
    # xfail: gradgradcheck through the fused kernels, until their backward is differentiable
    print(f"{'check':<32} {'path':<6} {'passed':>7} {'failed':>7} {'xfail':>6} {'skipped':>8}")
    for (test, path), c in sorted(table.items()):
        print(f"{test:<32} {path:<6} {c['PASSED'] + c['XPASS']:>7} "
              f"{c['FAILED'] + c['ERROR']:>7} {c['XFAIL']:>6} {c['SKIPPED']:>8}")
    return 0 if done.returncode in (0, 1) else done.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_nn", nargs="?", help="a PyTorch checkout's test/test_nn.py "
                        "(downloaded when omitted)")
    parser.add_argument("--version", default="2.13.0", help="PyTorch tag to download")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=list(VARIANTS))
    parser.add_argument("--select", default=SELECT, help="pytest -k expression")
    parser.add_argument("--module-db", action="store_true",
                        help="run tests/test_compat_module_db.py in full and tabulate it")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per pytest run")
    args = parser.parse_args(argv)
    return main_module_db(args) if args.module_db else main_test_nn(args)


if __name__ == "__main__":
    sys.exit(main())
