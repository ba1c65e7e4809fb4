"""Echo state networks (book section 10.8): a fixed random reservoir, a learned linear readout.

Jaeger (2001), "The 'echo state' approach to analysing and training recurrent neural
networks", GMD Report 148; Jaeger & Haas (2004), "Harnessing nonlinearity", Science 304:78;
Lukoševičius (2012), "A practical guide to applying echo state networks" (the notation here).

The recurrent weights are drawn at random and never trained; only the readout is learned, and
because the readout is linear in the states that is a convex problem (least squares) with a
closed-form solution — the point of section 10.8. With u (K inputs), x (N units), y (L outputs):

    x~(t) = tanh(W_in [1; u(t)] + W x(t-1) + W_fb y(t-1))      reservoir update
    x(t)  = (1 - a) x(t-1) + a x~(t)                            leaky integration, a in (0, 1]
    y(t)  = W_out z(t),   z(t) = [1; u(t); x(t)]                linear readout, F = 1 + K + N

The bias is the first column of W_in (the "1" of [1; u]), drawn from U(-bias_scaling,
bias_scaling); the other columns of W_in from U(-input_scaling, input_scaling); W_fb (only
with output feedback) from U(-feedback_scaling, feedback_scaling). W has exactly
round(sparsity * N^2) zeros and U(-1, 1) non-zeros, rescaled so that its spectral radius
max |eig(W)| (``torch.linalg.eigvals``, float64, on the CPU) equals ``spectral_radius``.
Everything is drawn on the CPU from one ``torch.Generator`` seeded with ``seed``, so a
reservoir is the same on every device. With a leak rate a < 1 the linearised update is
(1 - a) I + a W, whose spectral radius is at most 1 - a + a * rho.

Readout by ridge regression (Tikhonov; Lukoševičius 2012, eq. 9), from sufficient statistics:

    (Z^T Z + lambda I) W_out^T = Z^T Y         Z (rows z(t) after the washout), Y (targets)

Z^T Z (F, F) and Z^T Y (F, L) are sums over rows, so :class:`ReadoutStats` accumulates them
over batches and sequences, and statistics of disjoint data add: ``a + b`` (or, across
processes, ``torch.distributed.all_reduce`` of the two tensors — :meth:`ReadoutStats.all_reduce`)
followed by ``solve`` gives exactly the readout of one pass over all the data. lambda applies
to every weight, the bias included. The first ``washout`` states of each sequence (the
transient from the arbitrary initial state) are dropped.

Online readout: recursive least squares (:class:`RLSReadout`) with forgetting factor
0 < f <= 1; with f = 1 and P(0) = I / delta it reproduces the ridge solution with
lambda = delta after the same rows. FORCE learning (Sussillo & Abbott 2009) is RLS applied
while the network runs on its own fed-back output: :meth:`ESN.generate` with ``rls=``.

Closed loop (:meth:`ESN.generate`): after training, the prediction y(t) is fed back — through
W_fb (``feedback=True``, Jaeger's generative setup) or as the next input u(t + 1) (one-step
predictor, K = L) — and the network runs free for any number of steps.

Diagnostics: :func:`echo_state_distance` (two initial states, one input: the distance must
vanish — the echo state property) and :func:`memory_capacity` (Jaeger 2002, "Short term memory
in echo state networks", GMD Report 152: MC = sum_k r^2(u(t-k), y_k(t)) <= N for i.i.d. input).

Shapes (time-major, like the rest of rnnlab): us (T, B, K), xs (T, B, N), ys (T, B, L),
z (T, B, F). Everything runs through torch on the device of the module's buffers.

    esn = ESN(1, 1, 500, feedback=True, spectral_radius=0.8, sparsity=0.99, seed=0,
              dtype=torch.float64)
    esn.fit(us, targets, feedback=teacher, washout=1000, ridge=1e-8)   # closed form
    ys, x = esn.generate(84, x, y)                                     # free-running

    rnnlab train mackey-glass --json      # Jaeger's 84-step Mackey-Glass prediction
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["Reservoir", "ESN", "ReadoutStats", "RLSReadout", "spectral_radius",
           "echo_state_distance", "memory_capacity"]

_ACTIVATIONS = {"tanh": torch.tanh, "linear": lambda a: a}


def spectral_radius(W: Tensor) -> float:
    """max |eigenvalue| of the square matrix ``W`` (``torch.linalg.eigvals``, in float64)."""
    return _max_abs_eig(W)


def _max_abs_eig(W: Tensor) -> float:
    return float(torch.linalg.eigvals(W.detach().to(torch.float64)).abs().max())


def _uniform(generator: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    """U(-scale, scale) in float64 on the CPU."""
    return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale


class Reservoir(nn.Module):
    """The fixed random recurrent part of an echo state network (all weights are buffers).

    **Arguments:** ``input_size`` K, ``size`` N; ``spectral_radius`` rho of W; ``sparsity``
    the fraction of zero entries of W, in [0, 1); ``input_scaling``, ``bias_scaling``,
    ``feedback_scaling`` the half-widths of the uniform W_in / bias / W_fb entries;
    ``leak_rate`` a in (0, 1]; ``feedback_size`` L of the fed-back output (0: none);
    ``activation`` "tanh" or "linear" (a linear reservoir, for memory-capacity theory);
    ``seed`` of the CPU generator that draws every weight.

    Buffers: ``W_in`` (N, 1 + K), ``W`` (N, N), ``W_fb`` (N, L).
    """

    def __init__(self, input_size: int, size: int, *, spectral_radius: float = 0.9,
                 sparsity: float = 0.9, input_scaling: float = 1.0, bias_scaling: float = 0.0,
                 leak_rate: float = 1.0, feedback_size: int = 0, feedback_scaling: float = 1.0,
                 activation: Literal["tanh", "linear"] = "tanh", seed: int = 0,
                 device=None, dtype=None):
        super().__init__()
        if size < 1 or input_size < 0 or feedback_size < 0:
            raise ValueError(f"need size >= 1, input_size >= 0, feedback_size >= 0; got "
                             f"{size}, {input_size}, {feedback_size}")
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity (fraction of zero recurrent weights) must be in "
                             f"[0, 1), got {sparsity}")
        if not 0 < leak_rate <= 1:
            raise ValueError(f"leak_rate must be in (0, 1], got {leak_rate}")
        if spectral_radius < 0:
            raise ValueError(f"spectral_radius must not be negative, got {spectral_radius}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.input_size, self.size, self.feedback_size = input_size, size, feedback_size
        self.leak_rate, self.activation, self.seed = leak_rate, activation, seed
        g = torch.Generator().manual_seed(seed)
        W_in = _uniform(g, size, 1 + input_size)
        W_in[:, 0] *= bias_scaling
        W_in[:, 1:] *= input_scaling
        # exactly round(sparsity * N^2) zeros, at positions drawn without replacement
        nonzero = torch.randperm(size * size, generator=g)[:size * size
                                                           - round(sparsity * size * size)]
        W = torch.zeros(size * size, dtype=torch.float64)
        W[nonzero] = _uniform(g, len(nonzero))
        W = W.view(size, size)
        if spectral_radius > 0:
            rho = _max_abs_eig(W)
            if rho == 0:
                raise ValueError(f"the random W (size {size}, sparsity {sparsity}) has "
                                 f"spectral radius 0 and cannot be rescaled; lower sparsity "
                                 f"or change the seed")
            W *= spectral_radius / rho
        else:
            W.zero_()
        W_fb = _uniform(g, size, feedback_size, scale=feedback_scaling)
        kw = {"device": device, "dtype": dtype if dtype is not None else torch.get_default_dtype()}
        self.register_buffer("W_in", W_in.to(**kw))
        self.register_buffer("W", W.to(**kw))
        self.register_buffer("W_fb", W_fb.to(**kw))

    def init_state(self, batch_size: int) -> Tensor:
        """Zero state x(0) (B, N) on the buffers' device and dtype."""
        return self.W.new_zeros(batch_size, self.size)

    def drive(self, us: Tensor, feedback: Tensor | None = None) -> Tensor:
        """The non-recurrent part W_in [1; u(t)] + W_fb y(t-1) for every step at once.

        ``us`` (..., K), ``feedback`` (..., L) (required iff the reservoir has feedback)
        -> (..., N).
        """
        d = us @ self.W_in[:, 1:].T + self.W_in[:, 0]
        if self.feedback_size:
            if feedback is None:
                raise ValueError(f"this reservoir feeds back {self.feedback_size} output(s): "
                                 f"pass feedback (the outputs y(t-1), shape (T, B, "
                                 f"{self.feedback_size}))")
            d = d + feedback @ self.W_fb.T
        elif feedback is not None:
            raise ValueError("feedback given to a reservoir built with feedback_size=0")
        return d

    def step(self, x: Tensor, drive: Tensor) -> Tensor:
        """One update: x (B, N), drive (B, N) from :meth:`drive` -> x(t) (B, N)."""
        x_new = _ACTIVATIONS[self.activation](drive + x @ self.W.T)
        return x_new if self.leak_rate == 1 else (1 - self.leak_rate) * x + self.leak_rate * x_new

    def forward(self, us: Tensor, x0: Tensor | None = None, feedback: Tensor | None = None,
                noise: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Run the reservoir driven by ``us`` (T, B, K) (and the fed-back outputs
        ``feedback`` (T, B, L), y(t-1) at step t: the teacher, under teacher forcing) from
        ``x0`` (B, N) (zeros by default). Returns the states xs (T, B, N).

        ``noise`` > 0 adds U(-noise, noise) inside the tanh at every step, drawn on the CPU
        from ``generator`` (Jaeger 2001/2004: training with state noise makes the readout
        robust to its own errors once they are fed back in the closed loop).
        """
        if us.dim() != 3 or us.shape[-1] != self.input_size:
            raise ValueError(f"us must have shape (T, B, {self.input_size}), "
                             f"got {tuple(us.shape)}")
        drive = self.drive(us, feedback)                          # (T, B, N), one GEMM
        x = self.init_state(us.shape[1]) if x0 is None else x0
        xs = []
        for d in drive:                                           # the driven time loop
            if noise:
                d = d + _uniform(generator, *d.shape, scale=noise).to(d)
            x = self.step(x, d)
            xs.append(x)
        return torch.stack(xs)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.size}, leak_rate={self.leak_rate}, "
                f"feedback_size={self.feedback_size}, activation={self.activation!r}, "
                f"seed={self.seed}")


class ReadoutStats:
    """Sufficient statistics of the ridge readout: Z^T Z (F, F), Z^T Y (F, L), row count.

    ``update`` adds rows; ``a + b`` (``merge``) adds statistics of disjoint data;
    :meth:`all_reduce` sums them over the processes of a ``torch.distributed`` group;
    ``solve(ridge)`` returns W_out (L, F) = ((Z^T Z + ridge I)^-1 Z^T Y)^T. Accumulated in
    float64 by default (Z^T Z of tanh states is badly conditioned).
    """

    def __init__(self, features: int, outputs: int, *, device=None,
                 dtype: torch.dtype = torch.float64):
        self.ZtZ = torch.zeros(features, features, device=device, dtype=dtype)
        self.ZtY = torch.zeros(features, outputs, device=device, dtype=dtype)
        self.count = 0

    def update(self, z: Tensor, y: Tensor) -> ReadoutStats:
        """Add the rows of ``z`` (..., F) with their targets ``y`` (..., L); returns self."""
        F, L = self.ZtY.shape
        if z.shape[-1] != F or y.shape[-1] != L or z.shape[:-1] != y.shape[:-1]:
            raise ValueError(f"expected z (..., {F}) and y (..., {L}) with the same leading "
                             f"shape, got {tuple(z.shape)} and {tuple(y.shape)}")
        z = z.reshape(-1, F).to(self.ZtZ)
        y = y.reshape(-1, L).to(self.ZtZ)
        self.ZtZ += z.T @ z
        self.ZtY += z.T @ y
        self.count += z.shape[0]
        return self

    def merge(self, other: ReadoutStats) -> ReadoutStats:
        """The statistics of both data sets (a new object)."""
        if self.ZtY.shape != other.ZtY.shape:
            raise ValueError(f"cannot merge statistics of shapes {tuple(self.ZtY.shape)} and "
                             f"{tuple(other.ZtY.shape)}")
        out = ReadoutStats(*self.ZtY.shape, device=self.ZtZ.device, dtype=self.ZtZ.dtype)
        out.ZtZ = self.ZtZ + other.ZtZ.to(self.ZtZ)
        out.ZtY = self.ZtY + other.ZtY.to(self.ZtY)
        out.count = self.count + other.count
        return out

    __add__ = merge

    def all_reduce(self, group=None) -> ReadoutStats:
        """Sum the statistics over the processes of ``group`` in place (data parallel
        readout: each process updates with its shard, all_reduce, then every process
        solves for the same W_out). Needs an initialised ``torch.distributed``."""
        import torch.distributed as dist

        count = torch.tensor([float(self.count)], device=self.ZtZ.device, dtype=self.ZtZ.dtype)
        for t in (self.ZtZ, self.ZtY, count):
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        self.count = int(count.item())
        return self

    def solve(self, ridge: float) -> Tensor:
        """W_out (L, F) solving (Z^T Z + ridge I) W_out^T = Z^T Y (Cholesky; LU if ridge = 0
        leaves the system indefinite in rounding). ValueError if singular."""
        if ridge < 0:
            raise ValueError(f"ridge must not be negative, got {ridge}")
        if self.count == 0:
            raise ValueError("no rows: update the statistics before solving")
        A = self.ZtZ + ridge * torch.eye(self.ZtZ.shape[0], device=self.ZtZ.device,
                                         dtype=self.ZtZ.dtype)
        # Jacobi scaling: solve (D A D) (D^-1 W^T) = D Z^T Y with D = diag(A)^-1/2, the same
        # system with unit diagonal; a bias column next to small states no longer costs digits
        d = A.diagonal().clamp_min(torch.finfo(A.dtype).tiny).rsqrt()            # (F,)
        A = A * d[:, None] * d[None, :]
        b = self.ZtY * d[:, None]
        chol, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            return (torch.cholesky_solve(b, chol) * d[:, None]).T
        try:
            return (torch.linalg.solve(A, b) * d[:, None]).T
        except RuntimeError:
            raise ValueError(f"Z^T Z + {ridge} I is singular ({self.count} rows, "
                             f"{A.shape[0]} features); use a positive ridge") from None


class RLSReadout:
    """Online readout by recursive least squares with forgetting factor ``forgetting`` f:

        k = P z / (f + z^T P z)          gain (F,)
        e = y - W z                      a-priori error (L,)
        W = W + e k^T                    (L, F)
        P = (P - k z^T P) / f            inverse of the (discounted) correlation matrix

    with W(0) = 0, P(0) = I / delta. For f = 1 this minimises sum_t |y(t) - W z(t)|^2 +
    delta |W|^2 exactly, so after the same rows W equals ``ReadoutStats.solve(delta)``;
    f < 1 weights a row k steps old by f^k (tracking a changing target). As FORCE
    (Sussillo & Abbott 2009) P(0) = I / alpha, with alpha the learning rate.
    """

    def __init__(self, features: int, outputs: int, *, delta: float = 1.0,
                 forgetting: float = 1.0, device=None, dtype: torch.dtype = torch.float64):
        if delta <= 0:
            raise ValueError(f"delta must be positive, got {delta}")
        if not 0 < forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting}")
        self.forgetting = forgetting
        self.W = torch.zeros(outputs, features, device=device, dtype=dtype)
        self.P = torch.eye(features, device=device, dtype=dtype) / delta

    def update(self, z: Tensor, y: Tensor) -> Tensor:
        """Take the rows of ``z`` (..., F), ``y`` (..., L) one at a time; return the
        a-priori errors (n, L)."""
        z = z.reshape(-1, self.W.shape[1]).to(self.W)
        y = y.reshape(-1, self.W.shape[0]).to(self.W)
        errors = []
        for z_t, y_t in zip(z, y):
            Pz = self.P @ z_t                                    # (F,)
            k = Pz / (self.forgetting + z_t @ Pz)                # gain (F,)
            e = y_t - self.W @ z_t                               # a-priori error (L,)
            self.W += torch.outer(e, k)
            self.P -= torch.outer(k, Pz)                         # P symmetric: z^T P = Pz^T
            if self.forgetting != 1:
                self.P /= self.forgetting
            errors.append(e)
        return torch.stack(errors)


class ESN(nn.Module):
    """An echo state network: a :class:`Reservoir` and a linear readout ``W_out`` (L, F).

    **Arguments:** ``input_size`` K, ``output_size`` L, ``size`` N; ``feedback`` — feed the
    output y(t-1) back into the reservoir through W_fb (Jaeger's generative setup); without
    it the closed loop feeds y(t) back as the next input (needs K = L). The other keyword
    arguments go to :class:`Reservoir`.

    ``W_out`` is an ``nn.Parameter`` (the one trainable part: it can also be trained by
    gradient descent), initialised to zero; the reservoir weights are buffers. All are in
    the state dict.
    """

    def __init__(self, input_size: int, output_size: int, size: int, *, feedback: bool = False,
                 device=None, dtype=None, **reservoir):
        super().__init__()
        if output_size < 1:
            raise ValueError(f"output_size must be at least 1, got {output_size}")
        self.feedback = feedback
        # free-running needs a way back in: W_fb, or the output as the next input (K = L)
        self.closed_loop = feedback or input_size == output_size
        self.input_size, self.output_size = input_size, output_size
        self.reservoir = Reservoir(input_size, size, feedback_size=output_size if feedback else 0,
                                   device=device, dtype=dtype, **reservoir)
        self.W_out = nn.Parameter(torch.zeros(output_size, self.features, device=device,
                                              dtype=self.reservoir.W.dtype))

    @property
    def features(self) -> int:
        """F = 1 + K + N, the size of the extended state z = [1; u; x]."""
        return 1 + self.input_size + self.reservoir.size

    def extended(self, us: Tensor, xs: Tensor) -> Tensor:
        """z = [1; u; x]: us (..., K), xs (..., N) -> (..., F)."""
        return torch.cat([xs.new_ones(*xs.shape[:-1], 1), us, xs], dim=-1)

    def forward(self, us: Tensor, x0: Tensor | None = None,
                feedback: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Driven (teacher-forced) run: ys (T, B, L) and the states xs (T, B, N).

        ``us`` (T, B, K); ``feedback`` (T, B, L) the outputs y(t-1) fed back at step t (the
        teacher signal shifted by one step), with ``feedback=True`` only."""
        xs = self.reservoir(us, x0, feedback)
        return self.extended(us, xs) @ self.W_out.T, xs

    @torch.no_grad()
    def statistics(self, us: Tensor, targets: Tensor, *, washout: int = 0,
                   x0: Tensor | None = None, feedback: Tensor | None = None,
                   stats: ReadoutStats | None = None, noise: float = 0.0,
                   generator: torch.Generator | None = None) -> tuple[ReadoutStats, Tensor]:
        """Drive the reservoir (with state ``noise``, see :meth:`Reservoir.forward`) and add
        the rows after ``washout`` to ``stats`` (new float64 statistics if None).
        ``targets`` (T, B, L). Returns (stats, last state (B, N))."""
        T = us.shape[0]
        if targets.shape[:2] != us.shape[:2] or targets.shape[-1] != self.output_size:
            raise ValueError(f"targets must have shape ({T}, {us.shape[1]}, "
                             f"{self.output_size}), got {tuple(targets.shape)}")
        if not 0 <= washout < T:
            raise ValueError(f"washout must be in [0, T={T}), got {washout}")
        xs = self.reservoir(us, x0, feedback, noise, generator)
        if stats is None:
            stats = ReadoutStats(self.features, self.output_size, device=xs.device)
        stats.update(self.extended(us[washout:], xs[washout:]), targets[washout:])
        return stats, xs[-1]

    @torch.no_grad()
    def fit(self, us: Tensor, targets: Tensor, *, ridge: float, washout: int = 0,
            x0: Tensor | None = None, feedback: Tensor | None = None) -> ReadoutStats:
        """Ridge readout from one driven run (see :meth:`statistics`); sets and returns the
        statistics (merge several and :meth:`set_readout` for more data)."""
        stats, _ = self.statistics(us, targets, washout=washout, x0=x0, feedback=feedback)
        self.set_readout(stats.solve(ridge))
        return stats

    @torch.no_grad()
    def set_readout(self, W_out: Tensor) -> None:
        """Copy a solved readout (L, F) into ``W_out``."""
        self.W_out.copy_(W_out.to(self.W_out))

    @torch.no_grad()
    def generate(self, steps: int, x: Tensor, y: Tensor, inputs: Tensor | None = None, *,
                 rls: RLSReadout | None = None,
                 targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run free for ``steps`` steps, the prediction fed back (closed loop).

        **Arguments:** ``x`` (B, N) the state reached by the driven run; ``y`` (B, L) the
        last output (under teacher forcing: the last teacher value), fed back at the first
        step; ``inputs`` (steps, B, K) external inputs of a feedback ESN with K > 0.
        ``rls`` with ``targets`` (steps, B, L): FORCE learning — after each step the readout
        takes one RLS update towards the target, while its own output is fed back.
        **Returns:** ys (steps, B, L) and the last state (B, N).
        """
        if not self.closed_loop:
            raise ValueError(f"closed loop needs feedback=True or input_size == output_size "
                             f"(the output becomes the next input); this ESN has "
                             f"{self.input_size} input(s) and {self.output_size} output(s)")
        if rls is not None and (targets is None or targets.shape[0] < steps):
            raise ValueError("FORCE learning (rls=...) needs targets of shape (steps, B, L)")
        B = x.shape[0]
        no_inputs = x.new_zeros(B, 0)
        W_out = self.W_out if rls is None else rls.W
        ys = []
        for t in range(steps):                                   # the closed time loop
            if self.feedback:
                u = inputs[t] if inputs is not None else no_inputs
                d = self.reservoir.drive(u, y)
            else:
                u = y                                            # prediction -> next input
                d = self.reservoir.drive(u)
            x = self.reservoir.step(x, d)
            z = self.extended(u, x)                              # (B, F)
            y = z @ W_out.T.to(z)                                # (B, L)
            if rls is not None:
                rls.update(z, targets[t])
            ys.append(y)
        if rls is not None:
            self.set_readout(rls.W)
        return torch.stack(ys), x


@torch.no_grad()
def echo_state_distance(reservoir: Reservoir, us: Tensor, *, feedback: Tensor | None = None,
                        seed: int = 0) -> Tensor:
    """The echo state property check: run ``reservoir`` twice on the same input ``us``
    (T, B, K) (and ``feedback``), from two initial states drawn from U(-1, 1) with ``seed``,
    and return the RMS distance per unit, sqrt(mean_(b,i) (x_a - x_b)^2), at every step (T,).

    With the echo state property the distance after a washout of W steps, ``d[W - 1]``,
    vanishes (geometrically, for rho < 1 and a contracting tanh). Caveat: rho < 1 is
    neither necessary nor sufficient in general (sufficient: largest singular value of W
    < 1); a large rho with no input (input_scaling = bias_scaling = 0) leaves the
    autonomous net with several attractors or chaos, and the distance stays finite.
    """
    g = torch.Generator().manual_seed(seed)
    B, N = us.shape[1], reservoir.size
    x_a, x_b = (_uniform(g, B, N).to(reservoir.W) for _ in range(2))
    xs_a = reservoir(us, x_a, feedback)
    xs_b = reservoir(us, x_b, feedback)
    return (xs_a - xs_b).pow(2).mean(dim=(1, 2)).sqrt()


@torch.no_grad()
def memory_capacity(reservoir: Reservoir, *, max_delay: int | None = None, length: int = 4000,
                    washout: int = 200, ridge: float = 1e-9,
                    seed: int = 0) -> tuple[float, Tensor]:
    """Short-term memory capacity (Jaeger 2002, GMD Report 152), MC = sum_k MC_k with

        MC_k = r^2(u(t - k), y_k(t)),   k = 1 .. max_delay (default 2N)

    the squared correlation between the input k steps back and a ridge readout of z = [1; x(t)]
    trained to reproduce it. Input: i.i.d. U(-0.5, 0.5), ``length`` steps (one scalar input:
    the reservoir needs input_size 1). Readouts are fitted on the first half of the rows after
    ``washout + max_delay`` and scored on the second half (in-sample r^2 is biased upward).
    Theory: MC <= N for i.i.d. input, with equality for a generic linear reservoir
    (Jaeger 2002, propositions 2 and 3). Returns (MC, MC_k (max_delay,)).
    """
    if reservoir.input_size != 1 or reservoir.feedback_size:
        raise ValueError("memory_capacity needs a reservoir with one input and no feedback")
    K = max_delay if max_delay is not None else 2 * reservoir.size
    start = washout + K
    if length - start < 4:
        raise ValueError(f"length {length} leaves too few rows after washout + max_delay "
                         f"= {start}")
    g = torch.Generator().manual_seed(seed)
    u = (torch.rand(length, generator=g, dtype=torch.float64) - 0.5).to(reservoir.W)  # (T,)
    xs = reservoir(u.view(length, 1, 1))[:, 0]                                        # (T, N)
    z = torch.cat([xs.new_ones(length, 1), xs], dim=1)[start:]                        # (R, F)
    t = torch.arange(start, length, device=u.device)
    delays = torch.arange(1, K + 1, device=u.device)
    y = u[t[:, None] - delays[None, :]]                                               # (R, K)
    half = z.shape[0] // 2
    W = ReadoutStats(z.shape[1], K, device=z.device).update(z[:half], y[:half]).solve(ridge)
    pred = z[half:].to(W) @ W.T                                                       # (R/2, K)
    target = y[half:].to(W)
    pc, tc = pred - pred.mean(0), target - target.mean(0)
    r2 = (pc * tc).sum(0) ** 2 / ((pc * pc).sum(0) * (tc * tc).sum(0)).clamp_min(1e-300)
    return float(r2.sum()), r2
