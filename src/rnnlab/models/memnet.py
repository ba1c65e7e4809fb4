"""End-to-end memory network (Sukhbaatar, Szlam, Weston & Fergus 2015; book 10.12), with
adjacent weight tying, position encoding and temporal encoding: each sentence x_i is
embedded twice, m_i = Σ_j l_j ⊙ A x_ij + T_A(i) and c_i = Σ_j l_j ⊙ C x_ij + T_C(i), the
question u¹ = Σ_j l_j ⊙ B q_j; then for hops k = 1..K

    p = softmax(uᵏ · m_i)        o = Σ_i p_i c_i        u^{k+1} = uᵏ + oᵏ

with A^{k+1} = Cᵏ and B = A¹; the answer is softmax(W u^{K+1}), W = C^K ᵀ. The task is
:mod:`rnnlab.tasks.memnet`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MemN2N", "position_encoding"]


def position_encoding(J: int, d: int) -> Tensor:
    """l_kj = (1 − j/J) − (k/d)(1 − 2j/J), j = 1..J, k = 1..d: (J, d)."""
    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(0)
    return (1 - j / J) - (k / d) * (1 - 2 * j / J)


class MemN2N(nn.Module):
    """stories (B, S, J), questions (B, J) -> answer logits (B, V); also the attention of
    every hop (K, B, S) in ``self.last_attention``."""

    def __init__(self, vocab_size: int, embed: int, hops: int, max_sentences: int,
                 max_words: int):
        super().__init__()
        # adjacent tying: K + 1 embedding matrices; A^1 = B = E[0], C^k = A^{k+1} = E[k]
        self.E = nn.ModuleList(nn.Embedding(vocab_size, embed, padding_idx=0)
                               for _ in range(hops + 1))
        self.T = nn.ParameterList(nn.Parameter(torch.randn(max_sentences, embed) * 0.1)
                                  for _ in range(hops + 1))
        for emb in self.E:
            nn.init.normal_(emb.weight, std=0.1)
            with torch.no_grad():
                emb.weight[0].zero_()
        self.register_buffer("l", position_encoding(max_words, embed))
        self.hops = hops
        self.last_attention = None

    def _encode(self, k: int, words: Tensor) -> Tensor:
        return (self.E[k](words) * self.l).sum(-2)            # (..., J, d) -> (..., d)

    def forward(self, stories: Tensor, questions: Tensor) -> Tensor:
        S = stories.shape[1]
        present = (stories != 0).any(-1, keepdim=True)                   # (B, S, 1)
        u = self._encode(0, questions)                                    # (B, d)
        attention = []
        for k in range(self.hops):
            m = self._encode(k, stories) + self.T[k][:S]                  # (B, S, d)
            c = self._encode(k + 1, stories) + self.T[k + 1][:S]
            scores = (m @ u.unsqueeze(-1)).squeeze(-1)                    # (B, S)
            p = torch.softmax(scores.masked_fill(~present.squeeze(-1), -1e9), dim=-1)
            attention.append(p)
            u = u + (p.unsqueeze(-1) * c).sum(1)                          # u^{k+1}
        self.last_attention = torch.stack(attention)
        return u @ self.E[self.hops].weight.T                             # W = C^K ᵀ
