"""Recursive neural networks (book section 10.6): a shared composition function applied over
a tree, children before parents, instead of along a chain.

    TreeBatch.build(trees, vocab)      many trees flattened into one node table, grouped by
                                       height (level 0 = leaves), so that every level is one
                                       batched step over all the trees at once (no DGL)
    TreeRNN(embed, hidden)             h_j = tanh(W x_j + U Σ_k h_k + b)        (Socher et al.
                                       2011, with the children summed: any arity)
    ChildSumTreeLSTM(embed, hidden)    Tai, Socher & Manning 2015, eqs. 2-8
    NaryTreeLSTM(embed, hidden, N=2)   Tai et al. 2015, eqs. 9-14 (ordered children, at most N)
    TreeClassifier(...)                embedding -> tree cell -> dropout -> linear, a label
                                       distribution at every node (SST labels every phrase)

Child-Sum Tree-LSTM, for node j with children C(j) (x_j is the word embedding at a leaf and
zero at an inner node, as in SST where only leaves carry words):

    h̃_j  = Σ_{k∈C(j)} h_k
    i_j  = σ(W_i x_j + U_i h̃_j + b_i)        o_j = σ(W_o x_j + U_o h̃_j + b_o)
    u_j  = tanh(W_u x_j + U_u h̃_j + b_u)
    f_jk = σ(W_f x_j + U_f h_k + b_f)        one forget gate per child
    c_j  = i_j ⊙ u_j + Σ_k f_jk ⊙ c_k        h_j = o_j ⊙ tanh(c_j)

N-ary Tree-LSTM: the same with a separate U^(l) per child position l, and forget gate
f_jk = σ(W_f x_j + Σ_l U_f^(kl) h_jl + b_f).

Shapes: a level holds M nodes with at most A children: child states (M, A, H) gathered from
the node table, a mask (M, A) for missing children (zero state). Output: h for every node
(num_nodes, H), in the batch's node order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.trees import Tree

__all__ = ["TreeBatch", "TreeRNN", "ChildSumTreeLSTM", "NaryTreeLSTM", "TreeClassifier",
           "TREE_CELLS"]


@dataclass
class TreeBatch:
    """Trees flattened into a node table, nodes ordered by level (height).

    ``words`` (N,) word ids (-1 at inner nodes); ``labels`` (N,) node labels (-100 where
    the caller ignores a node); ``roots`` (number of trees,) the root of each tree;
    ``levels`` a list of ``(start, end, children)``: nodes ``start:end`` are one level and
    ``children`` (end - start, A) their children's node indices, -1 where absent.
    """

    words: Tensor
    labels: Tensor
    roots: Tensor
    levels: list[tuple[int, int, Tensor]]

    @property
    def num_nodes(self) -> int:
        return self.words.shape[0]

    @classmethod
    def build(cls, trees: list[Tree], word_id, label_of=lambda label: label) -> TreeBatch:
        """``word_id(word) -> int``; ``label_of(label) -> int or None`` (None: ignored)."""
        entries = []                                 # (height, tree, node)
        for k, tree in enumerate(trees):
            height: dict[int, int] = {}
            for node in tree.nodes():                # post-order: children first
                h = 0 if node.is_leaf else 1 + max(height[id(c)] for c in node.children)
                height[id(node)] = h
                entries.append((h, k, node))
        entries.sort(key=lambda e: e[0])             # stable: tree and post-order kept
        index = {id(node): i for i, (_, _, node) in enumerate(entries)}
        words = torch.tensor([word_id(n.word) if n.is_leaf else -1 for _, _, n in entries])
        labels = torch.tensor([_or_ignore(label_of(n.label)) for _, _, n in entries])
        roots = torch.tensor([index[id(tree)] for tree in trees])
        levels, start = [], 0
        while start < len(entries):
            h = entries[start][0]
            end = start
            while end < len(entries) and entries[end][0] == h:
                end += 1
            arity = max((len(n.children) for _, _, n in entries[start:end]), default=0)
            children = torch.full((end - start, max(arity, 1)), -1, dtype=torch.long)
            for row, (_, _, node) in enumerate(entries[start:end]):
                for col, child in enumerate(node.children):
                    children[row, col] = index[id(child)]
            levels.append((start, end, children))
            start = end
        return cls(words, labels, roots, levels)

    def to(self, device) -> TreeBatch:
        return TreeBatch(self.words.to(device), self.labels.to(device), self.roots.to(device),
                         [(s, e, c.to(device)) for s, e, c in self.levels])


def _or_ignore(label) -> int:
    return -100 if label is None else int(label)


class _TreeCell(nn.Module):
    """Runs a composition level by level over a :class:`TreeBatch`."""

    state_fields = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size

    def forward(self, x: Tensor, batch: TreeBatch) -> Tensor:
        """x (N, I) per-node inputs -> h (N, H) per node."""
        N, H = batch.num_nodes, self.hidden_size
        # the node table of states, with one zero row at the end for absent children
        table = [x.new_zeros(N + 1, H) for _ in range(self.state_fields)]
        for start, end, children in batch.levels:
            mask = (children >= 0).unsqueeze(-1).to(x.dtype)          # (M, A, 1)
            gather = children % (N + 1)                               # -1 -> the zero row
            kids = [t[gather] for t in table]                         # each (M, A, H)
            new = self.compose(x[start:end], kids, mask)
            rows = torch.arange(start, end, device=x.device)
            table = [t.index_copy(0, rows, n) for t, n in zip(table, new)]
        return table[0][:N]

    def compose(self, x: Tensor, kids: list[Tensor], mask: Tensor) -> list[Tensor]:
        raise NotImplementedError


class TreeRNN(_TreeCell):
    """h_j = tanh(W x_j + U Σ_k h_k + b): the recursive net of book Fig. 10.14 with the
    children's states summed (any number of children)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.W = nn.Linear(input_size, hidden_size)
        self.U = nn.Linear(hidden_size, hidden_size, bias=False)

    def compose(self, x, kids, mask):
        return [torch.tanh(self.W(x) + self.U((kids[0] * mask).sum(1)))]


class ChildSumTreeLSTM(_TreeCell):
    """Child-Sum Tree-LSTM (Tai et al. 2015, eqs. 2-8); see the module docstring."""

    state_fields = 2                                   # h, c

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.W_iou = nn.Linear(input_size, 3 * H)
        self.U_iou = nn.Linear(H, 3 * H, bias=False)
        self.W_f = nn.Linear(input_size, H)
        self.U_f = nn.Linear(H, H, bias=False)
        with torch.no_grad():
            self.W_f.bias.fill_(1.0)                   # forget-gate bias 1, as for the LSTM

    def compose(self, x, kids, mask):
        h_k, c_k = kids                                              # (M, A, H)
        h_sum = (h_k * mask).sum(1)                                  # h̃_j
        i, o, u = (self.W_iou(x) + self.U_iou(h_sum)).chunk(3, dim=-1)
        f = torch.sigmoid(self.W_f(x).unsqueeze(1) + self.U_f(h_k))  # (M, A, H) f_jk
        c = torch.sigmoid(i) * torch.tanh(u) + (f * c_k * mask).sum(1)
        h = torch.sigmoid(o) * torch.tanh(c)
        return [h, c]


class NaryTreeLSTM(_TreeCell):
    """N-ary Tree-LSTM (Tai et al. 2015, eqs. 9-14): children in order, at most N, each
    position with its own U^(l); forget gate of child k reads every child."""

    state_fields = 2

    def __init__(self, input_size: int, hidden_size: int, n: int = 2):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.n = n
        self.W_iou = nn.Linear(input_size, 3 * H)
        self.U_iou = nn.Linear(n * H, 3 * H, bias=False)     # [U^(1) ... U^(N)]
        self.W_f = nn.Linear(input_size, H)
        self.U_f = nn.Linear(n * H, n * H, bias=False)       # U_f^(kl) blocks
        with torch.no_grad():
            self.W_f.bias.fill_(1.0)

    def compose(self, x, kids, mask):
        h_k, c_k = kids
        M, A, H = h_k.shape
        if A > self.n:
            raise ValueError(f"an N-ary Tree-LSTM with N = {self.n} got a node with {A} "
                             f"children; binarise the trees or use the child-sum form")
        if A < self.n:                                 # pad the positions to N
            pad = h_k.new_zeros(M, self.n - A, H)
            h_k, c_k = torch.cat([h_k, pad], 1), torch.cat([c_k, pad], 1)
            mask = torch.cat([mask, mask.new_zeros(M, self.n - A, 1)], 1)
        h_cat = (h_k * mask).reshape(M, self.n * H)
        i, o, u = (self.W_iou(x) + self.U_iou(h_cat)).chunk(3, dim=-1)
        f = torch.sigmoid(self.W_f(x).unsqueeze(1) + self.U_f(h_cat).view(M, self.n, H))
        c = torch.sigmoid(i) * torch.tanh(u) + (f * c_k * mask).sum(1)
        return [torch.sigmoid(o) * torch.tanh(c), c]


TREE_CELLS = {"childsum": ChildSumTreeLSTM, "nary": NaryTreeLSTM, "rnn": TreeRNN}


class TreeClassifier(nn.Module):
    """Embedding -> tree cell -> dropout -> linear: logits at every node (N, C)."""

    def __init__(self, vocab_size: int, num_classes: int, cell: str = "childsum",
                 embed: int = 100, hidden: int = 150, dropout: float = 0.0):
        super().__init__()
        if cell not in TREE_CELLS:
            raise ValueError(f"unknown tree cell {cell!r}; valid: {', '.join(TREE_CELLS)}")
        self.embed = nn.Embedding(vocab_size, embed)
        self.tree = TREE_CELLS[cell](embed, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, batch: TreeBatch) -> Tensor:
        leaf = batch.words >= 0
        x = self.embed(batch.words.clamp(min=0)) * leaf.unsqueeze(-1)  # zero at inner nodes
        h = self.tree(self.drop(x), batch)                               # (N, H)
        return self.out(self.drop(h))                                    # (N, C)
