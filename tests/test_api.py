"""The public API: ``rnnlab.__all__`` lists exactly the public names the package defines."""

from __future__ import annotations

import inspect

import rnnlab


def public_top_level_names() -> set[str]:
    """Public classes and functions bound in ``rnnlab`` that rnnlab itself defines."""
    names = set()
    for name, obj in vars(rnnlab).items():
        if name.startswith("_") or inspect.ismodule(obj) or not callable(obj):
            continue
        if getattr(obj, "__module__", "").split(".")[0] == "rnnlab":
            names.add(name)
    return names


def test_every_name_in_all_exists():
    missing = [name for name in rnnlab.__all__ if not hasattr(rnnlab, name)]
    assert not missing, f"rnnlab.__all__ names undefined attributes: {missing}"


def test_all_has_no_duplicates():
    assert len(rnnlab.__all__) == len(set(rnnlab.__all__))


def test_no_public_callable_missing_from_all():
    missing = sorted(public_top_level_names() - set(rnnlab.__all__))
    assert not missing, f"public names missing from rnnlab.__all__: {missing}"


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from rnnlab import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(rnnlab.__all__)


def test_version():
    assert isinstance(rnnlab.__version__, str) and rnnlab.__version__.count(".") >= 1
