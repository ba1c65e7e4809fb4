"""PTB-style bracketed trees: the Stanford Sentiment Treebank format (Socher et al. 2013).

One tree per line; every node is ``(label child child ...)`` and a leaf is ``(label word)``:

    (3 (2 It) (4 (2 's) (3 good)))        root label 3; leaves It/'s/good labelled 2, 2, 3

Grammar (tokens are ``(``, ``)`` and runs of other characters than ASCII white space)::

    tree  := "(" LABEL word ")"            a leaf: exactly one word
           | "(" LABEL tree tree* ")"      an inner node: one or more subtrees

Labels are ints by default (SST: 0 = very negative ... 4 = very positive);
``int_labels=False`` keeps them as strings (PTB categories such as ``NP``) and the caller
converts them. Words are kept verbatim (SST's escapes ``\\/``, ``-LRB-`` stay as they are).

:meth:`Tree.nodes` lists the nodes in post-order -- every child before its parent -- which
is the order a batched recursive net (Tree-LSTM, book section 10.6) computes them in:

    for node in tree.nodes():               # leaves first, root last
        h[node] = f(x[node.word]) if node.is_leaf else g([h[c] for c in node.children])

Errors are :class:`~rnnlab.data.text.DataError` naming the place: ``read_trees`` gives
``file:line:column: what`` (1-based), ``parse_tree`` gives ``line L, column C: what``;
unbalanced brackets, a missing or non-integer label, a node without word or subtrees, a leaf
with two words, empty input and trailing text after the tree are all reported.
Blank lines in a file are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .text import DataError, read_text

__all__ = ["Tree", "parse_tree", "read_trees", "iter_trees"]

# ASCII white space separates tokens; other spaces belong to the word (SST train.txt has
# "8\u00a01\/2", eight and a half, with a no-break space, as one leaf)
_TOKEN = re.compile(r"\(|\)|[^ \t\n\r\f\v()]+")


@dataclass
class Tree:
    """A node: its ``label``, and either ``children`` (inner node) or a ``word`` (leaf)."""

    label: int | str
    children: list[Tree] = field(default_factory=list)
    word: str | None = None

    @property
    def is_leaf(self) -> bool:
        return self.word is not None

    def nodes(self) -> list[Tree]:
        """Every node in post-order: children (left to right) before their parent."""
        order, stack = [], [(self, False)]
        while stack:                       # iterative: deep trees do not hit the recursion limit
            node, expanded = stack.pop()
            if expanded or node.is_leaf:
                order.append(node)
            else:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children))
        return order

    def leaves(self) -> list[Tree]:
        """The leaf nodes, left to right."""
        return [node for node in self.nodes() if node.is_leaf]

    def words(self) -> list[str]:
        """The sentence: the leaves' words, left to right."""
        return [node.word for node in self.nodes() if node.is_leaf]

    def __str__(self) -> str:
        """The bracketed form; ``parse_tree(str(t)) == t`` (single spaces, one line)."""
        text: dict[int, str] = {}
        for node in self.nodes():
            inner = node.word if node.is_leaf else " ".join(text.pop(id(c))
                                                              for c in node.children)
            text[id(node)] = f"({node.label} {inner})"
        return text[id(self)]


class _SyntaxError(Exception):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset, self.message = offset, message


def _parse(text: str, int_labels: bool) -> Tree:
    """One tree from ``text``; raises :class:`_SyntaxError` with the character offset."""
    stack: list[tuple[Tree, int]] = []          # open nodes and the offset of their '('
    root: Tree | None = None
    tokens = _TOKEN.finditer(text)
    for match in tokens:
        tok, at = match.group(), match.start()
        if root is not None:
            raise _SyntaxError(at, f"trailing text {tok!r} after the end of the tree")
        if tok == "(":
            label_match = next(tokens, None)
            if label_match is None or label_match.group() in ("(", ")"):
                where = label_match.start() if label_match is not None else len(text)
                raise _SyntaxError(where, "missing label after '(' (expected '(LABEL ...')")
            label: int | str = label_match.group()
            if int_labels:
                try:
                    label = int(label)
                except ValueError:
                    raise _SyntaxError(label_match.start(),
                                       f"label {label!r} is not an integer") from None
            node = Tree(label)
            if stack:
                parent = stack[-1][0]
                if parent.is_leaf:
                    raise _SyntaxError(at, f"node {parent.label!r} has both a word "
                                       f"({parent.word!r}) and a subtree")
                parent.children.append(node)
            stack.append((node, at))
        elif tok == ")":
            if not stack:
                raise _SyntaxError(at, "unbalanced ')': no '(' is open")
            node, _ = stack.pop()
            if not node.is_leaf and not node.children:
                raise _SyntaxError(at, f"node {node.label!r} has neither a word nor subtrees")
            if not stack:
                root = node
        else:                                    # a word
            if not stack:
                raise _SyntaxError(at, f"text {tok!r} outside a tree (expected '(')")
            node = stack[-1][0]
            if node.children:
                raise _SyntaxError(at, f"word {tok!r} among the subtrees of node "
                                   f"{node.label!r} (a leaf is '(LABEL word)')")
            if node.is_leaf:
                raise _SyntaxError(at, f"leaf {node.label!r} has a second word {tok!r} "
                                   f"after {node.word!r}")
            node.word = tok
    if stack:
        raise _SyntaxError(stack[-1][1], f"unbalanced brackets: this '(' is never closed "
                           f"({len(stack)} missing ')')")
    if root is None:
        raise _SyntaxError(0, "empty input: no tree")
    return root


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_tree(text: str, int_labels: bool = True) -> Tree:
    """The one tree in ``text``. :class:`DataError` ``line L, column C: ...`` if malformed.

    >>> t = parse_tree("(3 (2 It) (4 (2 's) (3 good)))")
    >>> t.label, t.words(), [n.label for n in t.nodes()]
    (3, ['It', "'s", 'good'], [2, 2, 3, 4, 3])
    """
    try:
        return _parse(text, int_labels)
    except _SyntaxError as e:
        line, col = _line_col(text, e.offset)
        raise DataError(f"line {line}, column {col}: {e.message}") from None


def iter_trees(path: str | Path, int_labels: bool = True) -> Iterator[tuple[int, Tree]]:
    """``(line number, tree)`` for each non-blank line of the UTF-8 file ``path``."""
    found = False
    # split on "\n" only: str.splitlines() would also break at U+0085 and friends
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            tree = _parse(line, int_labels)
        except _SyntaxError as e:
            raise DataError(f"{path}:{lineno}:{e.offset + 1}: {e.message}") from None
        found = True
        yield lineno, tree
    if not found:
        raise DataError(f"{path}: empty input: no trees (only blank lines)")


def read_trees(path: str | Path, int_labels: bool = True) -> list[Tree]:
    """Every tree of ``path``, one per non-blank line. :class:`DataError` names
    ``file:line:column`` for a malformed tree, and an empty or unreadable file."""
    return [tree for _, tree in iter_trees(path, int_labels)]
