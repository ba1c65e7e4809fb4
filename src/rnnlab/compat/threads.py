"""One weightless rnnlab module per thread, for the drop-ins.

A drop-in binds its weights into rnnlab's weightless layers (or cell) for one call and
unbinds them after it. Two threads running the same module at once would see each other's
binding, or none (torch.nn's modules can be run from several threads at once, e.g. by an
inference server). :class:`PerThread` gives the thread that built the module the layers it
built, and every other thread layers of its own, made on first use; a compiled or traced
graph binds nothing at run time and traces the first set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["PerThread"]


class PerThread:
    """``main``, the module built with the drop-in, for its own thread (``claimed=False``:
    for the first thread that asks, e.g. the worker thread of a DataParallel replica);
    another thread's first :meth:`get` builds one with ``build()``. ``main`` None (nothing
    to bind): None for every thread."""

    def __init__(self, main: nn.Module | None, claimed: bool = True):
        self.main = main
        self._owner = threading.get_ident() if claimed else None
        self._local = threading.local()
        self._lock = threading.Lock()

    def get(self, build: Callable[[], nn.Module]) -> nn.Module | None:
        """The calling thread's module: ``main`` in the thread it belongs to (and while
        dynamo or the jit tracer records), else this thread's own, built once."""
        if self.main is None or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self.main
        me = threading.get_ident()
        if self._owner is None:
            with self._lock:
                if self._owner is None:
                    self._owner = me
        if me == self._owner:
            return self.main
        module = getattr(self._local, "module", None)
        if module is None:
            module = self._local.module = build()
        return module
