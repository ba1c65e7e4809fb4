"""The encoder-decoder of rnnlab.models.seq2seq: shapes, attention, the fast path against the
step-by-step path, scheduled sampling, greedy and beam search, and a tiny model that learns
to reverse sequences."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from cases import flag, product
from tolerances import F32, F64

from rnnlab.models import Decoder, Encoder, Seq2Seq, teacher_forcing_ratio

V, E, H, C, M = 11, 5, 7, 6, 4
BOS, EOS = 1, 2


def _inputs(B=3, T=5, S=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (T, B), generator=g)
    context = torch.randn(B, C, generator=g, dtype=dtype)
    memory = torch.randn(S, B, M, generator=g, dtype=dtype)
    lengths = torch.tensor([S, 2, 1][:B])
    return tokens, context, memory, lengths


def _decoder(condition="init", attention=False, cell="lstm", num_layers=2, seed=0, **kw):
    torch.manual_seed(seed)
    return Decoder(V, E, H, C, cell=cell, num_layers=num_layers, condition=condition,
                   attention=attention, memory_size=M, **kw).eval()


@pytest.mark.parametrize("condition,attention",
                         product({c: c for c in ("init", "input", "both")}, flag("attention")))
def test_decoder_shapes(condition, attention):
    tokens, context, memory, lengths = _inputs()
    dec = _decoder(condition, attention)
    logits, alpha = dec(tokens, context, memory, lengths, return_attention=True)
    assert logits.shape == (5, 3, V)
    assert (alpha is None) == (not attention)
    if attention:
        assert alpha.shape == (5, 3, 4)
    for ids in (dec.greedy(context, memory, lengths, BOS, EOS, 6),
                dec.beam_search(context, memory, lengths, BOS, EOS, 6, beam=3)):
        assert len(ids) == 3 and all(len(s) <= 6 and EOS not in s for s in ids)
    # the context really conditions the output, whichever way it enters
    other = dec(tokens, context + 1.0, memory, lengths)
    assert not torch.allclose(logits, other)


def test_condition_init_sets_every_layer_state_and_input_widens_the_input():
    dec = _decoder("init", cell="lstm")
    state = dec.initial_state(torch.randn(3, C))
    assert len(state) == 2 and all(s.h.shape == (3, H) and s.c.shape == (3, H) for s in state)
    assert all(s.h.abs().max() > 0 for s in state)
    assert _decoder("input").rnn.input_size == E + C
    assert _decoder("both", attention=True).rnn.input_size == E + C + M
    assert all(float(s.abs().max()) == 0 for s in _decoder("input").initial_state(
        torch.randn(3, C))[0])
    gru = _decoder("both", cell="gru").initial_state(torch.randn(3, C))
    assert gru[0].shape == (3, H)


def test_attention_weights_sum_to_one_and_ignore_padded_memory():
    tokens, context, memory, lengths = _inputs()
    dec = _decoder("init", attention=True)
    logits, alpha = dec(tokens, context, memory, lengths, return_attention=True)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5, 3), **F32)
    pad = torch.arange(4)[None, :] >= lengths[:, None]                  # (B, S)
    assert (alpha[:, pad] == 0).all() and (alpha[:, ~pad] > 0).all()
    garbage = memory.clone()
    garbage[pad.t()] = 1e3                                              # change the padding
    torch.testing.assert_close(dec(tokens, context, garbage, lengths), logits, **F32)
    assert dec.greedy(context, garbage, lengths, BOS, EOS, 6) == \
        dec.greedy(context, memory, lengths, BOS, EOS, 6)


@pytest.mark.parametrize("condition", ("init", "input", "both"))
@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_fast_path_equals_stepwise_values_and_gradients(condition, cell):
    tokens, context, memory, lengths = _inputs(dtype=torch.float64)
    dec = _decoder(condition, cell=cell).double()
    fast = dec(tokens, context.requires_grad_(), teacher_forcing=1.0)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), context)
    slow = dec(tokens, context, teacher_forcing=1.0, stepwise=True)
    (g_slow,) = torch.autograd.grad(slow.square().sum(), context)
    torch.testing.assert_close(fast, slow, **F64)
    torch.testing.assert_close(g_fast, g_slow, **F64)


@pytest.mark.parametrize("attention", (False, True), ids=["plain", "attention"])
def test_no_teacher_forcing_feeds_back_the_argmax(attention):
    """teacher_forcing=0 with argmax feeding is greedy decoding: the logits' argmax at each
    step is the greedy output (EOS disabled, so it runs all T steps)."""
    tokens, context, memory, lengths = _inputs(T=6)
    tokens[0] = BOS
    dec = _decoder("both", attention)
    logits = dec(tokens, context, memory, lengths, teacher_forcing=0.0, sample=False)
    greedy = dec.greedy(context, memory, lengths, BOS, eos=-1, max_len=6)
    assert logits.argmax(-1).t().tolist() == greedy


def test_scheduled_sampling_mixes_truth_and_samples():
    tokens, context, memory, lengths = _inputs(B=3, T=8)
    dec = _decoder("init")
    truth = dec(tokens, context)
    g = torch.Generator().manual_seed(0)
    mixed = dec(tokens, context, teacher_forcing=0.5, generator=g)
    # step 0 always reads BOS/truth; the mixed run (step by step) and the teacher-forced one
    # (the fused path) round differently in float32
    torch.testing.assert_close(mixed[0], truth[0], **F32)
    assert not torch.allclose(mixed, truth, **F32)
    again = dec(tokens, context, teacher_forcing=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again)                          # reproducible with a generator
    # ratio 1 through the step-by-step path gives the teacher-forced logits exactly
    torch.testing.assert_close(dec(tokens, context, stepwise=True), truth, **F32)


def test_teacher_forcing_ratio_formulas():
    assert teacher_forcing_ratio("constant", 123, k=0.75) == 0.75
    assert teacher_forcing_ratio("linear", 10, k=1.0, c=0.01) == pytest.approx(0.9)
    assert teacher_forcing_ratio("linear", 1000, k=1.0, c=0.01, minimum=0.1) == 0.1
    assert teacher_forcing_ratio("exponential", 5, k=0.9) == pytest.approx(0.9 ** 5)
    assert teacher_forcing_ratio("exponential", 5, k=0.9, minimum=0.7) == 0.7
    k = 100.0
    for i in (0, 50, 460, 1000):
        assert teacher_forcing_ratio("inverse-sigmoid", i, k=k) == \
            pytest.approx(k / (k + math.exp(i / k)))
    assert teacher_forcing_ratio("inverse-sigmoid", k * math.log(k), k=k) == pytest.approx(0.5)
    assert teacher_forcing_ratio("inverse-sigmoid", 10 ** 7, k=k) < 1e-300     # no overflow
    with pytest.raises(ValueError, match="0 < k < 1"):
        teacher_forcing_ratio("exponential", 1, k=2.0)
    with pytest.raises(ValueError, match="k >= 1"):
        teacher_forcing_ratio("inverse-sigmoid", 1, k=0.5)
    with pytest.raises(ValueError, match="valid:"):
        teacher_forcing_ratio("cosine", 1)


@pytest.mark.parametrize("attention", (False, True), ids=["plain", "attention"])
@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed{s}")
def test_beam_of_one_is_greedy(attention, seed):
    _, context, memory, lengths = _inputs(seed=seed)
    dec = _decoder("both", attention, seed=seed)
    for eos in (EOS, 4, 7):
        greedy = dec.greedy(context, memory, lengths, BOS, eos, 8)
        assert dec.beam_search(context, memory, lengths, BOS, eos, 8, beam=1) == greedy


def _log_prob(dec, context, seq, eos):
    """log P(seq [+ EOS]) under teacher forcing, for one row."""
    tokens = torch.tensor([BOS] + seq).view(-1, 1)
    logp = torch.log_softmax(dec(tokens, context), dim=-1)[:, 0]       # (T, V)
    targets = seq + [eos]
    return sum(logp[t, y].item() for t, y in enumerate(targets[:len(tokens)]))


def test_wide_beam_finds_the_exhaustive_best():
    """With a beam as wide as the whole search space, beam search returns the most probable
    of all sequences (length penalty 0): every EOS-terminated sequence up to max_len and the
    unfinished ones of length max_len."""
    torch.manual_seed(3)
    vocab, eos, max_len = 4, 1, 3
    dec = Decoder(vocab, 4, 8, 3, condition="init").eval()
    context = torch.randn(2, 3)
    best = dec.beam_search(context, bos=0, eos=eos, max_len=max_len, beam=27,
                           length_penalty=0.0)
    for b in range(2):
        ctx = context[b:b + 1]
        scores = {}
        for n in range(max_len + 1):
            for seq in itertools.product(range(vocab), repeat=n):
                if eos in seq:
                    continue
                s = list(seq)
                if n < max_len:
                    scores[tuple(s)] = _log_prob(dec, ctx, s, eos)
                else:   # unfinished at max_len: only its tokens are scored
                    tokens = torch.tensor([0] + s[:-1]).view(-1, 1)
                    logp = torch.log_softmax(dec(tokens, ctx), dim=-1)[:, 0]
                    scores[tuple(s)] = sum(logp[t, y].item() for t, y in enumerate(s))
        assert tuple(best[b]) == max(scores, key=scores.get)


def test_encoder_memory_and_context_respect_lengths():
    torch.manual_seed(0)
    enc = Encoder(V, E, 4).eval()
    src = torch.randint(3, V, (5, 2))
    lengths = torch.tensor([5, 3])
    memory, context = enc(src, lengths)
    assert memory.shape == (5, 2, 8) and context.shape == (2, 8)
    assert (memory[3:, 1] == 0).all()
    alone, ctx_alone = enc(src[:3, 1:], torch.tensor([3]))            # no padding at all
    torch.testing.assert_close(memory[:3, 1:], alone, **F32)
    torch.testing.assert_close(context[1:], ctx_alone, **F32)


def _reverse_batch(g, B, n_symbols=6, max_len=5):
    """Sources of 2..max_len symbols (ids 3..) and their reversal, as padded tensors."""
    lengths = torch.randint(2, max_len + 1, (B,), generator=g)
    S = int(lengths.max())
    src = torch.zeros(S, B, dtype=torch.long)
    tgt_in = torch.zeros(S + 1, B, dtype=torch.long)
    tgt_out = torch.zeros(S + 1, B, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        seq = torch.randint(3, 3 + n_symbols, (n,), generator=g)
        src[:n, b] = seq
        tgt_in[0, b], tgt_in[1:n + 1, b] = BOS, seq.flip(0)
        tgt_out[:n, b], tgt_out[n, b] = seq.flip(0), EOS
    return src, lengths, tgt_in, tgt_out


def test_tiny_seq2seq_learns_to_reverse():
    """A few seconds of training: exact-match accuracy of greedy reversal far above chance
    (chance is 6^-n for n symbols)."""
    torch.manual_seed(0)
    vocab = 9
    enc = Encoder(vocab, 16, 32)
    dec = Decoder(vocab, 16, 64, enc.context_size, memory_size=enc.output_size,
                  condition="init", attention=True)
    model = Seq2Seq(enc, dec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        src, lengths, tgt_in, tgt_out = _reverse_batch(g, 32)
        logits = model(src, lengths, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                                 ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src, lengths, _, _ = _reverse_batch(torch.Generator().manual_seed(99), 200)
    want = [src[:n, b].flip(0).tolist() for b, n in enumerate(lengths.tolist())]
    greedy = model.greedy(src, lengths, BOS, EOS, 8)
    beam = model.beam_search(src, lengths, BOS, EOS, 8, beam=3)
    exact = sum(g == w for g, w in zip(greedy, want)) / len(want)
    assert exact > 0.8, exact
    assert sum(b == w for b, w in zip(beam, want)) / len(want) > 0.8


def test_decoder_argument_errors():
    with pytest.raises(ValueError, match="condition"):
        Decoder(V, E, H, C, condition="hidden")
    dec = _decoder("init", attention=True)
    tokens, context, memory, lengths = _inputs()
    with pytest.raises(ValueError, match="pass memory"):
        dec(tokens, context)
    with pytest.raises(ValueError, match=r"memory_lengths must lie in \[1, S\]"):
        dec(tokens, context, memory, torch.tensor([4, 0, 1]))
    with pytest.raises(ValueError, match="teacher_forcing"):
        dec(tokens, context, memory, lengths, teacher_forcing=1.5)
    with pytest.raises(ValueError, match="context must have shape"):
        dec(tokens, torch.randn(3, C + 1), memory, lengths)
