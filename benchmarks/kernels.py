"""Speed and memory of every rnnlab cell family (fused kernel or reference path) against
torch.nn and the autograd loop; a thin wrapper over ``rnnlab bench`` (the logic lives in
:mod:`rnnlab.bench`, protocol in benchmarks/README.md).

    .venv/bin/python benchmarks/kernels.py [--threads 1 2] [--configs small medium long stream]
        [--cells rnn relu lstm gru gru-before mgu leaky-rnn lstm-proj] [--repeats N] [--json]
        [--out benchmarks/RESULTS.md]
"""

import sys

from rnnlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
