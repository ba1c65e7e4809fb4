"""The Mackey-Glass series (Mackey & Glass 1977), the benchmark of the echo state network
(book section 10.8; Jaeger 2001, Jaeger & Haas 2004):

    dx/dt = beta x(t - tau) / (1 + x(t - tau)^n) - gamma x(t)

integrated from the constant history x(t) = x0, t <= 0, and sampled once per time unit.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["mackey_glass"]


def mackey_glass(length: int, *, tau: float = 17.0, beta: float = 0.2, gamma: float = 0.1,
                 n: float = 10.0, dt: float = 0.1, x0: float = 1.2, discard: int = 1000,
                 method: Literal["euler", "rk4"] = "euler", device=None,
                 dtype=torch.float64) -> Tensor:
    """``length`` samples (one per time unit) of the Mackey-Glass series, after dropping the
    first ``discard`` (the transient from the constant history x(t) = x0, t <= 0).

    Integrated with step ``dt`` (1 / dt and tau / dt must be whole numbers): ``euler``
    x(t + dt) = x(t) + dt f(x(t), x(t - tau)) (Jaeger 2001), or ``rk4`` with x(t + dt/2 - tau)
    the mean of its two grid neighbours (second order in the delayed term). The recurrence is
    scalar and sequential, so it runs on Python floats (a torch op per step would be ~100x
    slower); the result is a tensor (length,) on ``device``.
    """
    D, sub = round(tau / dt), round(1 / dt)
    if abs(D * dt - tau) > 1e-9 or abs(sub * dt - 1) > 1e-9 or D < 1:
        raise ValueError(f"tau / dt and 1 / dt must be whole numbers, got tau={tau}, dt={dt}")
    if length < 1 or discard < 0:
        raise ValueError(f"need length >= 1 and discard >= 0, got {length}, {discard}")
    if method not in ("euler", "rk4"):
        raise ValueError(f"method must be 'euler' or 'rk4', got {method!r}")
    total = (discard + length) * sub
    h = [float(x0)] * (D + 1 + total)          # h[k + D] = x(k dt); h[0..D] is the history
    x = float(x0)

    def f(x: float, xd: float) -> float:
        return beta * xd / (1.0 + xd ** n) - gamma * x

    if method == "euler":
        for k in range(total):
            xd = h[k]                                           # x(t - tau)
            x += dt * (beta * xd / (1.0 + xd ** n) - gamma * x)
            h[k + D + 1] = x
    else:
        for k in range(total):
            xd, xd1 = h[k], h[k + 1]                            # x(t - tau), x(t + dt - tau)
            xm = 0.5 * (xd + xd1)                               # x(t + dt/2 - tau)
            k1 = f(x, xd)
            k2 = f(x + 0.5 * dt * k1, xm)
            k3 = f(x + 0.5 * dt * k2, xm)
            k4 = f(x + dt * k3, xd1)
            x += dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            h[k + D + 1] = x
    samples = h[D + sub * (discard + 1)::sub]                  # x(t) at t = discard+1, ...
    return torch.tensor(samples[:length], dtype=dtype, device=device)
