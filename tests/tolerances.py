"""The tolerances of every comparison of two code paths (fused kernel vs reference loop,
rnnlab vs torch.nn, fast vs step-by-step decoder, one scan method vs another).

Two paths that compute the same function in floating point round differently: a GEMM's
reduction order depends on its blocking, which depends on the shapes *and* on the CPU's
vector width (ATen picks AVX-512, AVX2 or scalar kernels at run time; see
``ATEN_CPU_CAPABILITY``), and fused kernels reorder sums on purpose (one GEMM over all
T·B rows, tanh(x) = 2σ(2x) - 1 on large blocks). So no float32 comparison may rest on
``allclose``'s or ``assert_close``'s defaults, which were tuned on nobody's kernels:
``allclose``'s ``atol=1e-8`` fails a value near zero on a 6e-8 difference that only one
CPU's vector kernels produce.

``F32``: a few hundred float32 ulps relative, 2e-5 absolute. The error of a length-n
reduction grows like sqrt(n)·eps; through a recurrence it compounds over T steps, and a
layer norm over a row of nearly equal values amplifies it by 1/σ. A real bug in a
hand-derived gradient is off by O(1e-1) relative, three orders above this.

``F64``: the same comparison in float64, where the paths agree to rounding: ~1e7 ulps
relative (gradients summed over T·B rows of a recurrence), 1e-11 absolute.

Usage: ``torch.testing.assert_close(a, b, **F32)``.
"""

F32 = {"rtol": 2e-4, "atol": 2e-5}
F64 = {"rtol": 1e-9, "atol": 1e-11}
