"""Encoder-decoder (sequence-to-sequence) networks, book section 10.4 (Cho et al. 2014;
Sutskever et al. 2014), with the additive attention of Bahdanau et al. 2015 (book 12.4.5.1)
and scheduled sampling (Bengio et al. 2015).

The decoder is a conditional RNN language model (book 10.2.4): it models
P(y(1..τ) | x) = Π_t P(y(t) | y(1..t-1), C) where C is what the encoder read. C reaches it in
one or both of the two ways of book figure 10.9 / 10.4, chosen by ``condition``:

    "init"    h_l(0) = tanh(W_l C + b_l) for each layer l (and c_l(0) likewise for an LSTM)
    "input"   x(t)   = [E y(t-1) ; C]                  C concatenated to every step's input
    "both"    both of the above

With ``attention=True`` the decoder also reads ``memory`` m_1..m_S (the encoder's outputs,
one per source position) through additive attention, computed from the previous top-layer
output s(t-1) (Bahdanau et al. 2015, appendix A.1.2):

    e_tj = vᵀ tanh(W_q s(t-1) + W_m m_j + b)          (positions j >= memory_lengths: -inf)
    α_tj = softmax_j(e_tj),     a(t) = Σ_j α_tj m_j
    x(t) = [E y(t-1) ; (C) ; a(t)]                      a(t) joins the step input ...
    logits(t) = W_o [s(t) ; a(t)] + b_o                 ... and the output layer

With ``readout=R`` > 0 a tanh layer of R units sits before the output layer (a "deep
output", Pascanu et al. 2014; Bahdanau et al. use a maxout readout):
logits(t) = W_o tanh(W_r [s(t) ; a(t)] + b_r) + b_o. With a large vocabulary this is also
much cheaper than the full-width output layer.

Shapes (time-major, as everywhere in rnnlab): tokens (T, B) int64; context C (B, C);
memory (S, B, M); memory_lengths (B,); logits (T, B, V).

Running the decoder. With plain teacher forcing (every input is the ground truth) and no
attention, the input sequence is known in advance, so the whole of it goes through the
fused :class:`rnnlab.Stack` at once (the fast path). Attention and scheduled sampling need
the previous step's output before the next step's input exists, so those run the cells one
step at a time (``_step``); ``stepwise=True`` forces that path, and the tests check both
give the same logits. Scheduled sampling (``teacher_forcing`` < 1) feeds, at each step
t > 0 and for each sequence independently, the ground truth with that probability and
otherwise a token sampled from the model's own distribution at t-1 (``sample=False``: its
argmax). No gradient flows through the sampled tokens, as in the paper.

Decoding: :meth:`Decoder.greedy` (argmax at each step) and :meth:`Decoder.beam_search`
(batched beam search; a finished hypothesis Y of log-probability log P is ranked by
log P / lp(Y), lp = ((5 + |Y|) / 6)^α, Wu et al. 2016, α = ``length_penalty``, 0 = none;
with ``beam=1`` it returns exactly the greedy output). Both return token ids without BOS
and EOS.

    enc = Encoder(vocab_size=1000, embed=64, hidden=128)
    dec = Decoder(1200, 64, 256, context_size=enc.context_size, memory_size=enc.output_size,
                  condition="init", attention=True)
    memory, context = enc(src, src_lengths)           # (S, B, 256), (B, 256)
    logits = dec(tgt_in, context, memory, src_lengths)  # (T, B, 1200)
    dec.beam_search(context, memory, src_lengths, bos=2, eos=3, max_len=20, beam=5)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..layers import Stack
from ..unroll import map_state

__all__ = ["Decoder", "Encoder", "Seq2Seq", "AdditiveAttention", "teacher_forcing_ratio",
           "SCHEDULES"]

Condition = Literal["init", "input", "both"]
SCHEDULES = ("constant", "linear", "exponential", "inverse-sigmoid")


def teacher_forcing_ratio(schedule: str, step: int, k: float = 1.0, c: float = 0.0,
                          minimum: float = 0.0) -> float:
    """The probability ε_i of feeding the ground truth at training step i, Bengio et al.
    2015, section 2.4:

        constant         ε_i = k
        linear           ε_i = max(minimum, k - c i)
        exponential      ε_i = k^i                 (k < 1)
        inverse-sigmoid  ε_i = k / (k + exp(i / k))  (k >= 1)

    every value clipped to [minimum, 1].
    """
    if schedule == "constant":
        eps = k
    elif schedule == "linear":
        eps = k - c * step
    elif schedule == "exponential":
        if not 0 < k < 1:
            raise ValueError(f"the exponential schedule needs 0 < k < 1, got k={k}")
        eps = k ** step
    elif schedule == "inverse-sigmoid":
        if k < 1:
            raise ValueError(f"the inverse-sigmoid schedule needs k >= 1, got k={k}")
        eps = k / (k + math.exp(min(step / k, 700.0)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    return float(min(1.0, max(minimum, eps)))


def _output_of(state) -> Tensor:
    """The hidden part of a cell state: the tensor itself, or the first field (LSTM h)."""
    return state[0] if isinstance(state, tuple) else state


def _memory_mask(memory: Tensor, lengths: Tensor | None) -> Tensor | None:
    """(S, B) bool, True at the valid memory positions; None when all are valid."""
    if lengths is None:
        return None
    S, B = memory.shape[:2]
    lengths = torch.as_tensor(lengths, device=memory.device)
    if lengths.shape != (B,):
        raise ValueError(f"memory_lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if int(lengths.min()) < 1 or int(lengths.max()) > S:
        raise ValueError(f"memory_lengths must lie in [1, S] = [1, {S}] (attention needs at "
                         f"least one position), got {lengths.tolist()}")
    return torch.arange(S, device=memory.device)[:, None] < lengths[None, :]


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2015: e_j = vᵀ tanh(W_q q + W_m m_j + b), α = softmax(e), a = Σ α_j m_j.

    ``keys(memory)`` precomputes W_m m_j + b once per source; ``forward`` is one query.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        self.W_q = nn.Linear(query_size, attention_size, bias=False)
        self.W_m = nn.Linear(memory_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.W_m(memory)                                      # (S, B, A)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor | None):
        """query (B, Q), keys (S, B, A), memory (S, B, M), mask (S, B) or None ->
        (a (B, M), α (B, S))."""
        e = self.v(torch.tanh(keys + self.W_q(query)[None])).squeeze(-1)   # (S, B)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, dim=0)                                      # (S, B)
        a = (alpha.unsqueeze(-1) * memory).sum(0)                            # (B, M)
        return a, alpha.t()


class Decoder(nn.Module):
    """Conditional RNN language model over a target vocabulary (see the module docstring).

    **Arguments:** ``vocab_size`` V; ``embed`` E (token embedding size); ``hidden`` H;
    ``context_size`` C (features of the context vector); ``cell`` any
    :func:`rnnlab.make_cell` name; ``num_layers``; ``condition`` "init" | "input" | "both";
    ``attention`` (additive attention over ``memory``); ``dropout`` (on the embeddings,
    between layers and before the output layer); ``memory_size`` M (features of each memory
    position; default C); ``attention_size`` A (default H); ``readout`` R (a tanh layer of
    R units before the output layer; 0 = none).
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, context_size: int,
                 cell: str = "lstm", num_layers: int = 1, condition: Condition = "init",
                 attention: bool = False, dropout: float = 0.0, memory_size: int | None = None,
                 attention_size: int | None = None, readout: int = 0):
        super().__init__()
        if condition not in ("init", "input", "both"):
            raise ValueError(f"condition must be 'init', 'input' or 'both', got {condition!r}")
        self.vocab_size, self.context_size = vocab_size, context_size
        self.condition, self.use_attention = condition, bool(attention)
        self.memory_size = context_size if memory_size is None else memory_size
        self.embedding = nn.Embedding(vocab_size, embed)
        self.drop = nn.Dropout(dropout)
        self.feeds_context = condition in ("input", "both")
        self.inits_state = condition in ("init", "both")
        input_size = (embed + (context_size if self.feeds_context else 0)
                      + (self.memory_size if self.use_attention else 0))
        self.rnn = Stack.build(cell, input_size, hidden, num_layers, dropout)
        self.output_size = self.rnn.output_size
        # the fields of each layer's state, e.g. [(h, c)] sizes for an LSTM layer
        self._field_sizes = []
        for layer in self.rnn.layers:
            s = layer.cell.init_state(1)
            self._field_sizes.append([t.shape[-1] for t in s] if isinstance(s, tuple)
                                     else [s.shape[-1]])
        if self.inits_state:     # one linear map to every field of every layer, then tanh
            self.init = nn.Linear(context_size, sum(map(sum, self._field_sizes)))
        self.attention = (AdditiveAttention(self.output_size, self.memory_size,
                                            attention_size or hidden)
                          if self.use_attention else None)
        features = self.output_size + (self.memory_size if self.use_attention else 0)
        self.readout = nn.Linear(features, readout) if readout > 0 else None
        self.out = nn.Linear(readout if readout > 0 else features, vocab_size)

    # --- the initial state and one step ---

    def initial_state(self, context: Tensor) -> list:
        """One state per layer: tanh(W C + b) split into the fields ("init"/"both"), else
        zeros."""
        B = context.shape[0]
        zeros = [layer.cell.init_state(B, context.device, context.dtype)
                 for layer in self.rnn.layers]
        if not self.inits_state:
            return zeros
        flat = torch.tanh(self.init(context)).split(
            [n for sizes in self._field_sizes for n in sizes], dim=-1)
        states, i = [], 0
        for template, sizes in zip(zeros, self._field_sizes):
            fields = flat[i:i + len(sizes)]
            i += len(sizes)
            states.append(type(template)(*fields) if isinstance(template, tuple) else fields[0])
        return states

    def _prepare(self, context, memory, memory_lengths):
        if context.dim() != 2 or context.shape[1] != self.context_size:
            raise ValueError(f"context must have shape (B, {self.context_size}), got "
                             f"{tuple(context.shape)}")
        if not self.use_attention:
            return None
        if memory is None:
            raise ValueError("this decoder attends: pass memory (S, B, M)")
        if memory.dim() != 3 or memory.shape[1:] != (context.shape[0], self.memory_size):
            raise ValueError(f"memory must have shape (S, {context.shape[0]}, "
                             f"{self.memory_size}), got {tuple(memory.shape)}")
        return self.attention.keys(memory), memory, _memory_mask(memory, memory_lengths)

    def _logits(self, features: Tensor) -> Tensor:
        """(..., H [+ M]) -> (..., V): the (optional readout and) output layer."""
        features = self.drop(features)
        if self.readout is not None:
            features = torch.tanh(self.readout(features))
        return self.out(features)

    def _step(self, state: list, s_prev: Tensor, tokens: Tensor, context: Tensor, att):
        """One decoder step: tokens (B,) = y(t-1), s_prev (B, H) the top output at t-1 ->
        (state, s (B, H), features [s ; a] (B, H [+ M]), α (B, S) or None)."""
        parts = [self.drop(self.embedding(tokens))]                 # (B, E)
        if self.feeds_context:
            parts.append(context)                                   # (B, C)
        alpha = None
        if att is not None:
            keys, memory, mask = att
            a, alpha = self.attention(s_prev, keys, memory, mask)   # (B, M), (B, S)
            parts.append(a)
        x = torch.cat(parts, dim=-1)
        new_state, x = self.rnn.step(state, x)
        features = torch.cat([x, a], dim=-1) if att is not None else x
        return new_state, x, features, alpha

    # --- training / scoring ---

    def forward(self, tokens_in: Tensor, context: Tensor, memory: Tensor | None = None,
                memory_lengths: Tensor | None = None, teacher_forcing: float = 1.0,
                generator: torch.Generator | None = None, sample: bool = True,
                stepwise: bool = False, return_attention: bool = False):
        """tokens_in (T, B) (BOS, y1, ..., y_{T-1}) -> logits (T, B, V) for y1..y_T.

        ``teacher_forcing`` < 1: scheduled sampling (module docstring), with ``generator``
        for the coin flips and samples. ``return_attention``: also return α (T, B, S).
        """
        if tokens_in.dim() != 2:
            raise ValueError(f"tokens_in must have shape (T, B), got {tuple(tokens_in.shape)}")
        T, B = tokens_in.shape
        if context.shape[0] != B:
            raise ValueError(f"context has {context.shape[0]} rows for a batch of {B}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must lie in [0, 1], got {teacher_forcing}")
        att = self._prepare(context, memory, memory_lengths)
        state = self.initial_state(context)
        if att is None and teacher_forcing >= 1.0 and not stepwise:
            # fast path: the whole ground-truth input through the fused Stack
            xs = self.drop(self.embedding(tokens_in))                       # (T, B, E)
            if self.feeds_context:
                xs = torch.cat([xs, context.unsqueeze(0).expand(T, -1, -1)], dim=-1)
            ys, _ = self.rnn(xs, state)                                     # (T, B, H)
            logits = self._logits(ys)                                       # (T, B, V)
            return (logits, None) if return_attention else logits
        s = _output_of(state[-1])
        inputs, features, logits, alphas = tokens_in[0], [], [], []
        for t in range(T):
            if t > 0:
                inputs = tokens_in[t]
                if teacher_forcing < 1.0:
                    inputs = self._scheduled_input(inputs, logits[-1], teacher_forcing,
                                                   generator, sample)
            state, s, step_features, alpha = self._step(state, s, inputs, context, att)
            if teacher_forcing < 1.0:       # the next input may need this step's output
                logits.append(self._logits(step_features))
            else:
                features.append(step_features)
            alphas.append(alpha)
        # with pure teacher forcing, the output layer is one GEMM over all steps
        logits = torch.stack(logits) if logits else self._logits(torch.stack(features))
        if return_attention:
            return logits, (torch.stack(alphas) if att is not None else None)
        return logits

    @staticmethod
    def _scheduled_input(truth: Tensor, logits: Tensor, ratio: float, generator, sample: bool):
        """Ground truth with probability ``ratio``, else the model's token from ``logits``."""
        dev = generator.device if generator is not None else truth.device
        coin = torch.rand(truth.shape[0], generator=generator, device=dev).to(truth.device)
        if sample:
            probs = torch.softmax(logits.detach().float(), dim=-1).to(dev)
            own = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(truth.device)
        else:
            own = logits.detach().argmax(-1)
        return torch.where(coin < ratio, truth, own)

    # --- decoding ---

    @torch.no_grad()
    def greedy(self, context: Tensor, memory: Tensor | None = None,
               memory_lengths: Tensor | None = None, bos: int = 1, eos: int = 2,
               max_len: int = 50) -> list[list[int]]:
        """The argmax token at each step until EOS or ``max_len`` tokens; ids without
        BOS/EOS, one list per row of ``context``."""
        att = self._prepare(context, memory, memory_lengths)
        B = context.shape[0]
        state = self.initial_state(context)
        s = _output_of(state[-1])
        tokens = torch.full((B,), bos, dtype=torch.long, device=context.device)
        out: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        for _ in range(max_len):
            state, s, features, _ = self._step(state, s, tokens, context, att)
            tokens = self._logits(features).argmax(-1)                  # (B,)
            for b, tok in enumerate(tokens.tolist()):
                if not done[b]:
                    if tok == eos:
                        done[b] = True
                    else:
                        out[b].append(tok)
            if all(done):
                break
        return out

    @torch.no_grad()
    def beam_search(self, context: Tensor, memory: Tensor | None = None,
                    memory_lengths: Tensor | None = None, bos: int = 1, eos: int = 2,
                    max_len: int = 50, beam: int = 5,
                    length_penalty: float = 0.6) -> list[list[int]]:
        """Batched beam search of width ``beam``; the best finished hypothesis per row by
        log P / ((5 + |Y|) / 6)^length_penalty (|Y| counts EOS). Ids without BOS/EOS.

        At each step the 2K best extensions of the K live hypotheses are ranked; an EOS among
        the first K finishes that hypothesis, and the K best non-EOS extensions live on. A row
        stops once it has K finished hypotheses; live ones left at ``max_len`` count as
        finished. With K = 1 this is exactly :meth:`greedy`.
        """
        if beam < 1:
            raise ValueError(f"beam must be at least 1, got {beam}")
        B, K, dev = context.shape[0], beam, context.device
        rows = torch.arange(B, device=dev).repeat_interleave(K)             # (B K,)
        context = context[rows]
        if memory is not None:
            memory = memory[:, rows]
            if memory_lengths is not None:
                memory_lengths = torch.as_tensor(memory_lengths, device=dev)[rows]
        att = self._prepare(context, memory, memory_lengths)
        state = self.initial_state(context)
        s = _output_of(state[-1])
        tokens = torch.full((B * K,), bos, dtype=torch.long, device=dev)
        scores = torch.full((B, K), float("-inf"), device=dev)
        scores[:, 0] = 0.0                             # only one live hypothesis at first
        history = torch.empty(B, K, 0, dtype=torch.long, device=dev)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

        def penalty(n: int) -> float:
            return ((5.0 + n) / 6.0) ** length_penalty

        for t in range(max_len):
            state, s, features, _ = self._step(state, s, tokens, context, att)
            logp = torch.log_softmax(self._logits(features).float(), dim=-1)  # (B K, V)
            V = logp.shape[-1]
            cand = (scores.unsqueeze(-1) + logp.view(B, K, V)).view(B, K * V)
            top, idx = cand.topk(min(2 * K, K * V), dim=-1)                 # (B, 2K)
            src_beam, tok = idx // V, idx % V
            is_eos = tok == eos
            for b in range(B):
                if len(finished[b]) >= K:
                    continue
                for r in range(K):
                    if is_eos[b, r] and top[b, r] > float("-inf"):
                        finished[b].append((top[b, r].item() / penalty(t + 1),
                                            history[b, src_beam[b, r]].tolist()))
            live = top.masked_fill(is_eos, float("-inf"))
            scores, pick = live.topk(K, dim=-1)                             # (B, K)
            src_beam, tok = src_beam.gather(1, pick), tok.gather(1, pick)
            history = torch.cat([history.gather(1, src_beam.unsqueeze(-1).expand(
                -1, -1, history.shape[-1])), tok.unsqueeze(-1)], dim=-1)   # (B, K, t+1)
            if all(len(f) >= K for f in finished):
                break
            flat = (torch.arange(B, device=dev)[:, None] * K + src_beam).view(-1)  # (B K,)
            state = [map_state(lambda x, flat=flat: x[flat], ls) for ls in state]
            s, tokens = s[flat], tok.view(-1)
        for b in range(B):
            if len(finished[b]) < K:            # max_len reached: live hypotheses count too
                for k in range(K):
                    if scores[b, k] > float("-inf"):
                        finished[b].append((scores[b, k].item() / penalty(history.shape[-1]),
                                            history[b, k].tolist()))
        return [max(f, key=lambda pair: pair[0])[1] for f in finished]


class Encoder(nn.Module):
    """Token embedding -> bidirectional recurrent :class:`rnnlab.Stack` over the source
    (book 10.3), ragged lengths respected.

    ``forward(tokens (S, B), lengths (B,)) -> memory (S, B, 2H), context (B, 2H)``: memory is
    the top layer's outputs [h→_j ; h←_j] (zero past each length), context the top layer's
    final forward and backward hidden states [h→_len ; h←_1]. The decoder maps context to
    its initial state with its own linear + tanh (``condition="init"``).
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, cell: str = "lstm",
                 num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.drop = nn.Dropout(dropout)
        self.rnn = Stack.build(cell, embed, hidden, num_layers, dropout, bidirectional=True)
        self.output_size = self.context_size = self.rnn.output_size

    def forward(self, tokens: Tensor, lengths: Tensor | None = None):
        xs = self.drop(self.embedding(tokens))                              # (S, B, E)
        memory, states = self.rnn(xs, lengths=lengths)                      # (S, B, 2H)
        forward_state, backward_state = states[-1]
        context = torch.cat([_output_of(forward_state), _output_of(backward_state)], dim=-1)
        return memory, context                                              # (B, 2H)


class Seq2Seq(nn.Module):
    """:class:`Encoder` + :class:`Decoder`; the decoder attends to the encoder's outputs
    when built with ``attention=True``."""

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, src: Tensor, src_lengths: Tensor, tokens_in: Tensor,
                teacher_forcing: float = 1.0, generator: torch.Generator | None = None,
                **kwargs):
        """src (S, B), src_lengths (B,), tokens_in (T, B) -> logits (T, B, V)."""
        memory, context = self.encoder(src, src_lengths)
        return self.decoder(tokens_in, context, memory, src_lengths, teacher_forcing,
                            generator, **kwargs)

    @torch.no_grad()
    def greedy(self, src, src_lengths, bos: int, eos: int, max_len: int) -> list[list[int]]:
        memory, context = self.encoder(src, src_lengths)
        return self.decoder.greedy(context, memory, src_lengths, bos, eos, max_len)

    @torch.no_grad()
    def beam_search(self, src, src_lengths, bos: int, eos: int, max_len: int, beam: int = 5,
                    length_penalty: float = 0.6) -> list[list[int]]:
        memory, context = self.encoder(src, src_lengths)
        return self.decoder.beam_search(context, memory, src_lengths, bos, eos, max_len, beam,
                                        length_penalty)
