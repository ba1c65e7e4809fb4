"""Task ``seq-length``: the three ways of ending a generated sequence of
:mod:`rnnlab.models.length` (EOS symbol, halting output, predicted length) on one problem —
reverse a digit sequence of random length 1..12 with an encoder-decoder:

    rnnlab train seq-length --set model.length=eos         (or halt, predict)

Metrics: ``exact_match`` (the whole output right, its length included), ``length_accuracy``
and ``token_accuracy`` over held-out sequences, decoded greedily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from ..config import ConfigError
from ..models.length import HaltHead, LengthHead, LengthModel
from .base import Task

__all__ = ["SeqLength", "SeqLengthModel", "SeqLengthData"]


@dataclass
class SeqLengthModel:
    length: Literal["eos", "halt", "predict"] = "eos"
    embed: int = 32
    hidden: int = 128


@dataclass
class SeqLengthData:
    digits: int = 10                # symbols 0..digits-1
    min_len: int = 1
    max_len: int = 12
    valid_size: int = 500
    test_size: int = 1000
    seed: int = 1234


class SeqLength(Task):
    name = "seq-length"
    description = ("reverse a digit sequence of random length with an encoder-decoder that "
                   "ends its output by an EOS symbol, a halting output, or a predicted length")
    ModelConfig, DataConfig = SeqLengthModel, SeqLengthData
    main_metric = "exact_match"
    train_defaults = dict(steps=2000, batch_size=64, lr=3e-3, clip_norm=1.0,
                          eval_every=500, checkpoint_every=500, threads=1)

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        if d.digits < 2 or not 1 <= d.min_len <= d.max_len:
            raise ConfigError("seq-length needs data.digits >= 2 and "
                              "1 <= data.min_len <= data.max_len")
        # tokens: digits 0..D-1, then BOS = D, EOS = D + 1 (EOS used by "eos" only)
        self.bos, self.eos = d.digits, d.digits + 1
        self.splits = {"valid": self._draw(torch.Generator().manual_seed(d.seed),
                                           d.valid_size),
                       "test": self._draw(torch.Generator().manual_seed(d.seed + 1),
                                          d.test_size)}

    def _draw(self, generator, n):
        d = self.cfg.data
        lengths = torch.randint(d.min_len, d.max_len + 1, (n,), generator=generator)
        src = torch.randint(0, d.digits, (d.max_len, n), generator=generator)
        valid = torch.arange(d.max_len)[:, None] < lengths[None, :]
        src = torch.where(valid, src, torch.zeros_like(src))
        return src, lengths

    def build_model(self):
        m, d = self.cfg.model, self.cfg.data
        return LengthModel(d.digits + 2, m.embed, m.hidden, m.length, d.max_len)

    def batch(self, generator, batch_size, device):
        src, lengths = self._draw(generator, batch_size)
        return src.to(device), lengths.to(device)

    def _targets(self, src: Tensor, lengths: Tensor) -> Tensor:
        """The reversed sequences (T, B), then EOS (for "eos"), padded with EOS."""
        T, B = src.shape
        t = torch.arange(T + 1, device=src.device)[:, None]
        index = (lengths[None, :] - 1 - t).clamp(min=0)
        rev = src.gather(0, index[:T].clamp(max=T - 1))
        rev = torch.cat([rev, rev[:1]])
        return torch.where(t < lengths[None, :], rev, torch.full_like(rev, self.eos))

    def loss(self, model, batch):
        src, lengths = batch
        context = model.context(src, lengths)
        targets = self._targets(src, lengths)                          # (T + 1, B)
        out_len = lengths + 1 if model.strategy == "eos" else lengths
        steps = int(out_len.max())
        targets = targets[:steps]
        tokens_in = torch.cat([torch.full_like(targets[:1], self.bos), targets[:-1]])
        states, _ = model.decode(tokens_in, model.start(context))       # (T, B, H)
        valid = torch.arange(steps, device=src.device)[:, None] < out_len[None, :]
        logits = model.out(states)
        loss = F.cross_entropy(logits[valid], targets[valid])
        if model.strategy == "halt":
            loss = loss + HaltHead.loss(model.halt(states), lengths)
        elif model.strategy == "predict":
            loss = loss + LengthHead.loss(model.tau(context), lengths)
        return loss, {}

    @torch.no_grad()
    def generate(self, model, src, lengths):
        """Greedy outputs (lists of digits) by the model's length strategy."""
        d = self.cfg.data
        context = model.context(src, lengths)
        B = src.shape[1]
        limit = d.max_len + 1
        target_len = model.tau(context).argmax(-1) + 1 if model.strategy == "predict" else None
        state = model.start(context)
        token = torch.full((1, B), self.bos, dtype=torch.long, device=src.device)
        outputs = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for t in range(limit):
            states, state = model.decode(token, state)                 # (1, B, H)
            logits = model.out(states[0])
            if model.strategy == "eos":
                token_ids = logits.argmax(-1)
                stop_now = token_ids == self.eos
            else:
                token_ids = logits[:, :d.digits].argmax(-1)
                stop_now = torch.zeros_like(done)
            for b in range(B):
                if not done[b] and not stop_now[b]:
                    outputs[b].append(int(token_ids[b]))
            if model.strategy == "halt":
                stop_now = torch.sigmoid(model.halt(states)[0]) > 0.5
            elif model.strategy == "predict":
                stop_now = target_len <= t + 1
            done = done | stop_now
            if bool(done.all()):
                break
            token = token_ids.unsqueeze(0)
        return outputs

    def evaluate(self, model, split, device):
        src, lengths = (t.to(device) for t in self.splits[split])
        with torch.no_grad():
            loss, _ = self.loss(model, (src, lengths))
        outputs = self.generate(model, src, lengths)
        exact = length_ok = tokens_ok = tokens = 0
        for b, out in enumerate(outputs):
            L = int(lengths[b])
            truth = src[:L, b].flip(0).tolist()
            exact += out == truth
            length_ok += len(out) == L
            tokens_ok += sum(a == c for a, c in zip(out, truth))
            tokens += L
        n = len(outputs)
        return {"loss": loss.item(), "exact_match": exact / n, "length_accuracy": length_ok / n,
                "token_accuracy": tokens_ok / tokens}
