"""Why a recurrent net learns or fails (book 10.7; Pascanu, Mikolov & Bengio 2013).

    measure     any model: gradient norm through time, state-to-state Jacobians, weight
                spectra, gate saturation (on :func:`rnnlab.trace.tracing`)
    report      a run directory -> diagnose/*.png, diagnose.json and report.html
"""

from .measure import (
    gate_values,
    gradient_flow,
    jacobian_flow,
    saturation,
    weight_spectra,
)
from .report import diagnose_run

__all__ = ["gradient_flow", "jacobian_flow", "weight_spectra", "gate_values", "saturation",
           "diagnose_run"]
