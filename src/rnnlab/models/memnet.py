"""End-to-end memory network (Sukhbaatar, Szlam, Weston & Fergus 2015, "End-To-End Memory
Networks", NeurIPS; book 10.12), with adjacent weight tying, position encoding (PE) and
temporal encoding: each memory sentence x_i is embedded twice,
m_i = Σ_j l_j ⊙ A x_ij + T_A(i) and c_i = Σ_j l_j ⊙ C x_ij + T_C(i), the question
u¹ = Σ_j l_j ⊙ B q_j; then for hops k = 1..K

    p = softmax(uᵏ · m_i)        o = Σ_i p_i c_i        u^{k+1} = uᵏ + oᵏ

with A^{k+1} = Cᵏ and B = A¹ (adjacent tying, their section 2.2); the answer is
softmax(W u^{K+1}), W = C^K ᵀ. With ``linear=True`` the memory softmax is left out,
p = uᵏ · m_i (their "linear start", section 4.2). The task is :mod:`rnnlab.tasks.memnet`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MemN2N", "distinct_rows", "position_encoding"]


def position_encoding(J: int, d: int, form: str = "paper") -> Tensor:
    """(J, d), j = 1..J, k = 1..d: the paper's l_kj = (1 − j/J) − (k/d)(1 − 2j/J)
    (``form="paper"``, their section 4.1), or the authors' code's (MemN2N-babi-matlab)
    l_kj = 1 + 4 (k − (d+1)/2)(j − (J+1)/2) / (d J) (``form="code"``). Centred, the paper's is
    1/2 + 2 a b and the code's 1 + 4 a b (a, b: k/d and j/J less 1/2): the same shape at twice
    the scale, which on bAbI trains to a much lower error (docs/10.12-memory.md)."""
    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(0)
    if form == "paper":
        return (1 - j / J) - (k / d) * (1 - 2 * j / J)
    if form == "code":
        return 1 + 4 * (k - (d + 1) / 2) * (j - (J + 1) / 2) / (d * J)
    raise ValueError(f"position encoding form must be 'paper' or 'code', got {form!r}")


def distinct_rows(rows: Tensor, base: int) -> tuple[Tensor, Tensor]:
    """``(distinct, inverse)``: the distinct rows of ``rows`` (n, J) of ids in [0, base), and
    each row's index among them, as ``torch.unique(rows, dim=0, return_inverse=True)`` gives
    (its order aside) but from 1-d ``unique`` calls on exact int64 keys (the row as a number
    in base ``base``, renumbered whenever the next digit would overflow), which is far faster
    on CPU than ``unique`` over rows."""
    n, J = rows.shape
    key = rows.new_zeros(n)
    span = 1                                          # key < span
    for j in range(J):
        if span * base >= 2 ** 62:
            _, key = torch.unique(key, return_inverse=True)
            span = int(key.max()) + 1
        key = key * base + rows[:, j]
        span *= base
    _, inverse = torch.unique(key, return_inverse=True)
    first = torch.zeros(int(inverse.max()) + 1 if n else 0, dtype=torch.long, device=rows.device)
    first.scatter_(0, inverse, torch.arange(n, device=rows.device))      # a row of each
    return rows[first], inverse


class MemN2N(nn.Module):
    """stories (B, S, J), questions (B, J) -> answer logits (B, V); also the attention of
    every hop (K, B, S) in ``self.last_attention``.

    With ``runs=R`` the module is R independent networks trained at once (the paper's
    repeated runs): every weight, input and output gains a leading run dimension, stories
    (R, B, S, J), questions (R, B, J), times (R, B, S), linear (R,) -> logits (R, B, V).

    Word id 0 is the null (padding) word: its embeddings are zero and stay zero (its row is
    masked out of every lookup); a memory slot whose words are all 0 is empty: it gets no
    attention, or with ``attend_empty`` it takes part in the softmax with score 0 and value 0
    (no temporal term), as the empty slots of the authors' code do. Slot i of a story is
    matched with row ``times[..., i]`` of the temporal matrices T_A, T_C (default: row i;
    the task puts the most recent sentence in slot 0, as the authors' code does). Sentences
    are padded to J = ``max_words`` words and position-encoded with that J, as the authors'
    code does (the paper: J words of each sentence).

    **Weights**: ``A`` (K + 1, V, d): A^1 = B, C^k = A^{k+1} (adjacent tying), C^K = Wᵀ;
    ``T`` (K + 1, M, d): T_A^1, T_C^k = T_A^{k+1}; all drawn from N(0, 0.1²) (section 4.2).

    **Arguments**: ``vocab_size`` V, ``embed`` d, ``hops`` K, ``memory_size`` M (rows of T_A,
    T_C: the most memory slots), ``max_words`` J, ``runs`` R (None: one network),
    ``position``: the form of :func:`position_encoding` ("code", the authors' code's: default;
    or "paper").
    """

    def __init__(self, vocab_size: int, embed: int, hops: int, memory_size: int,
                 max_words: int, runs: int | None = None, position: str = "code",
                 attend_empty: bool = False):
        super().__init__()
        lead = () if runs is None else (runs,)
        self.A = nn.Parameter(torch.randn(*lead, hops + 1, vocab_size, embed) * 0.1)
        self.T = nn.Parameter(torch.randn(*lead, hops + 1, memory_size, embed) * 0.1)
        with torch.no_grad():
            self.A[..., 0, :] = 0.0
        keep = torch.ones(vocab_size, 1)
        keep[0] = 0.0
        self.register_buffer("keep", keep)                              # (V, 1)
        self.register_buffer("l", position_encoding(max_words, embed, position))  # (J, d)
        self.hops, self.runs, self.attend_empty = hops, runs, attend_empty
        self.last_attention = None

    def _encode(self, table: Tensor, words: Tensor) -> Tensor:
        """Σ_j l_j ⊙ E_k x_j for every k at once: ``table`` (R, K+1, J, V, d) position-scaled
        embeddings, ``words`` (R, n, J) -> (R, K+1, n, d). One ``index_select`` (whose
        backward is an ``index_add``: cheaper on CPU than embedding's sort-based backward)."""
        R, K1, J, V, d = table.shape
        dev = words.device
        offsets = ((torch.arange(R, device=dev).view(R, 1, 1, 1) * K1
                    + torch.arange(K1, device=dev).view(1, K1, 1, 1)) * J
                   + torch.arange(J, device=dev).view(1, 1, 1, J)) * V      # (R, K+1, 1, J)
        flat = (words.unsqueeze(1) + offsets).reshape(-1)                   # (R·(K+1)·n·J,)
        rows = table.reshape(-1, d).index_select(0, flat)
        return rows.view(R, K1, words.shape[1], J, d).sum(3)

    def forward(self, stories: Tensor, questions: Tensor, times: Tensor | None = None,
                linear: bool | Tensor = False) -> Tensor:
        """``times``: the T row of each slot (default: slot i -> row i); ``linear`` (a bool,
        or per run a (R,) bool tensor): leave the memory softmax out (linear start).

        The distinct sentences of the batch are embedded once; a slot's key and value then
        enter through its sentence's scores, p_i u·m_i = (u · M_A)[sentence(i)] + (u ·
        T_A)[time(i)], and the read o = Σ_i p_i c_i as the attention summed per sentence
        (and per time row) times C (and T_C): small matrix products, no (B, S, d) tensors."""
        single = self.runs is None
        A, T = (self.A, self.T) if not single else (self.A.unsqueeze(0), self.T.unsqueeze(0))
        if single:
            stories, questions = stories.unsqueeze(0), questions.unsqueeze(0)
            times = None if times is None else times.unsqueeze(0)
        R, B, S, J = stories.shape
        dev = stories.device
        if questions.shape[-1] < J:
            questions = F.pad(questions, (0, J - questions.shape[-1]))
        if times is None:
            times = torch.arange(S, device=dev).expand(R, B, S)
        sentences, which = distinct_rows(stories.reshape(-1, J), self.A.shape[-2])
        which = which.view(R, B, S)                                      # slot -> sentence
        U = sentences.shape[0]
        W = A * self.keep                                                # null word: zero
        table = self.l[:J, None, :] * W.unsqueeze(2)                     # (R, K+1, J, V, d)
        enc = self._encode(table, sentences.expand(R, U, J))             # (R, K+1, U, d)
        u = self._encode(table[:, :1], questions[..., :J]).squeeze(1)    # (R, B, d)
        present = (stories != 0).any(-1)                                 # (R, B, S)
        if isinstance(linear, bool):
            linear = torch.full((R,), linear, device=dev)
        linear = linear.view(R, 1, 1)
        attention = []
        for k in range(self.hops):
            scores = ((u @ enc[:, k].transpose(1, 2)).gather(2, which)   # u · A x_i
                      + (u @ T[:, k].transpose(1, 2)).gather(2, times)   # u · T_A(i)
                      * present)                                         # (R, B, S)
            if self.attend_empty:           # empty slots: score 0, value 0 (the authors' code)
                soft = torch.softmax(scores, dim=-1)
            else:
                soft = torch.softmax(scores.masked_fill(~present, -1e9), dim=-1)
            p = torch.where(linear, scores, soft)
            attention.append(p)
            per_sentence = p.new_zeros(R, B, U).scatter_add(2, which, p)
            per_time = p.new_zeros(R, B, T.shape[2]).scatter_add(2, times, p * present)
            u = u + per_sentence @ enc[:, k + 1] + per_time @ T[:, k + 1]  # u^{k+1} = u^k + o^k
        logits = u @ W[:, self.hops].transpose(1, 2)                     # W = C^K ᵀ: (R, B, V)
        att = torch.stack(attention, 1).detach()                         # (R, K, B, S)
        self.last_attention = att[0] if single else att
        return logits[0] if single else logits
