"""A griffe extension for the API reference: rnnlab's docstrings cross-reference with Sphinx
roles (``:class:`Cell```, ``:func:`~rnnlab.unroll.unroll```, ``:meth:`Task.fit```); this turns
each into a mkdocs-autorefs link to the path where the object is defined, resolved in the
scope of the docstring that names it (names outside rnnlab, such as ``ValueError``, become
plain code). A role whose target is not documented anywhere in the reference is
an unresolved link, which `mkdocs build --strict` reports as an error: a stale reference in
a docstring fails the docs test.
"""

from __future__ import annotations

import builtins
import importlib.util
import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)(\(\))?`")


def resolve(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj``: relative to its package when it starts
    with a dot (``.scan``), else in its own, its parents' and its module's scope; the name
    itself when it is already a full path or cannot be found."""
    if name.startswith("."):
        package = obj.module if obj.module.is_init_module else obj.module.parent
        return f"{package.path}{name}"
    head, _, rest = name.partition(".")
    try:
        path = obj.resolve(head)
    except (griffe.NameResolutionError, ValueError, AttributeError):
        return name
    return f"{path}.{rest}" if rest else path


def external(path: str) -> bool:
    """Whether ``path`` names something outside rnnlab that Python can find: a builtin
    (``ValueError``) or a name in an importable module (``collections.Counter``)."""
    head = path.split(".", 1)[0]
    if hasattr(builtins, head):
        return True
    try:
        return head != "rnnlab" and importlib.util.find_spec(head) is not None
    except (ImportError, ValueError):
        return False


def canonical(pkg: griffe.Module, path: str) -> str | None:
    """Where the object at ``path`` is defined (``rnnlab.Recurrent`` ->
    ``rnnlab.layers.Recurrent``); None for Python's or another package's names. A name
    found nowhere is returned as it is, so the strict build reports it."""
    if path == pkg.path:
        return path
    if not path.startswith(pkg.path + "."):
        return None if external(path) else path
    try:
        return pkg[path[len(pkg.path) + 1:]].canonical_path
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path


def link(pkg: griffe.Module, obj: griffe.Object, match: re.Match) -> str:
    tilde, name, call = match.groups()
    text = (name.rsplit(".", 1)[-1] if tilde else name.lstrip(".")) + (call or "")
    target = canonical(pkg, resolve(obj, name))
    return f"[`{text}`][{target}]" if target else f"`{text}`"


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring in the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda m: link(pkg, obj, m), obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
