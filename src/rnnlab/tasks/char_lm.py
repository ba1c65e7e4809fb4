"""Character-level language model (book section 10.2; Karpathy's char-rnn; Graves 2013).

    tokens (T, B) -> embedding (T, B, E) -> Stack(cell) (T, B, H) -> linear (T, B, V)

trained to predict character t+1 from characters 1..t on random windows of the training
text (plain BPTT over each window of ``data.seq_len``). Scored in bits per character,
bpc = mean cross-entropy in nats / ln 2, over the whole valid or test split read as
parallel streams with the state carried from one window to the next.

Data: ``data.path`` (any UTF-8 text; ``--data FILE`` on the command line) or, when None, the
English corpus that ships with Python (:func:`rnnlab.data.default_corpus`). The text is
split 90/5/5 into contiguous train/valid/test parts. The vocabulary is every character of
the text, sorted; it is saved with the run (``task_state.json``).

``model.cell=feedback`` is the output-to-hidden recurrence of book Fig. 10.4
(:class:`rnnlab.models.language.FeedbackLM`, one layer, ``model.hidden`` tanh units, its
softmax output fed back): trained by teacher forcing, every step of a window at once
(:meth:`rnnlab.Recurrent.teacher_forced`), and scored free-running, its own predicted
distribution fed back; ``evaluate`` also gives ``tf_bpc``, the split scored with the true
previous character fed back.

Sampling (``generate``) feeds the prompt, then draws one character at a time from
softmax(logits / temperature), carrying the state; temperature 0 takes the argmax. A prompt
character outside the vocabulary is an error that lists the unknown characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.text import DataError, default_corpus, read_text
from ..data.vocab import Vocab
from ..models.language import CharRNN, FeedbackLM
from .base import Task, TaskError, check_regularizers

__all__ = ["CharLM", "CharLMModel", "CharLMData"]


@dataclass
class CharLMModel:
    cell: str = "lstm"         # any cell name, or "feedback" (output-to-hidden, Fig. 10.4)
    embed: int = 64            # embedding size; 0 = one-hot input
    hidden: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    recurrent_dropout: float = 0.0   # Gal & Ghahramani 2016: one mask per sequence on h(t-1)
    zoneout: float = 0.0             # Krueger et al. 2017: units keep h(t-1) with this rate


@dataclass
class CharLMData:
    path: str | None = None    # UTF-8 text file; None = Python's pydoc_data corpus
    seq_len: int = 100         # characters per training window (BPTT length)
    eval_streams: int = 32     # parallel streams when scoring a split


def _detach(state):
    return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach()
            for s in state]


class CharLM(Task):
    name = "char-lm"
    description = ("character-level language model on a UTF-8 text (default: Python's "
                   "bundled docs); bits per character, and sampling")
    ModelConfig, DataConfig = CharLMModel, CharLMData
    main_metric = "bpc"
    samples_after_training = True
    uses_data_file = True
    # threads=1: on a shared 2-core machine a second intra-op thread stalled training
    # (no eval after 150 s, against 20 s per 100 steps with one thread)
    train_defaults = dict(steps=1000, batch_size=32, lr=3e-3, clip_norm=5.0,
                          eval_every=100, checkpoint_every=400, threads=1)

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        if cfg.data.seq_len < 1:
            raise ConfigError(f"data.seq_len must be at least 1, got {cfg.data.seq_len}")
        if cfg.data.eval_streams < 1:
            raise ConfigError("data.eval_streams must be at least 1")
        self.splits: dict[str, Tensor] | None = None
        if state is None:
            text = self._read()
            self.chars = Vocab(sorted(set(text)))
        else:
            if not isinstance(state.get("vocab"), str) or not state["vocab"]:
                raise TaskError("task state has no vocabulary ('vocab')")
            self.chars = Vocab(state["vocab"])
        # saved as one string of the characters in id order (task_state.json "vocab")
        self.vocab = "".join(self.chars.to_list())
        self.index = self.chars.index
        if state is None:
            self._split(text)

    # --- data ---

    def _read(self) -> str:
        return default_corpus() if self.cfg.data.path is None else read_text(self.cfg.data.path)

    def _source(self) -> str:
        return "the default corpus" if self.cfg.data.path is None else repr(self.cfg.data.path)

    def _split(self, text: str) -> None:
        """Contiguous 90/5/5 split of the text into int64 id tensors."""
        n, seq_len = len(text), self.cfg.data.seq_len
        n_valid = n_test = n // 20
        n_train = n - n_valid - n_test
        if n_valid < 2 or n_train < seq_len + 1:
            raise DataError(f"text of {self._source()} is too short: {n} characters; the "
                            f"90/5/5 split needs at least 40, with a training part (90%) "
                            f"longer than data.seq_len={seq_len}")
        try:
            ids = self.encode(text)
        except DataError as e:
            raise DataError(f"{self._source()}: {e}") from None
        self.splits = {
            "train": ids[:n_train],
            "valid": ids[n_train:n_train + n_valid],
            "test": ids[n_train + n_valid:],
        }

    def _ensure_data(self) -> dict[str, Tensor]:
        if self.splits is None:       # a reloaded run: read the text again, keep the vocab
            self._split(self._read())
        return self.splits

    def encode(self, text: str) -> Tensor:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            shown = "".join(unknown[:20])
            raise DataError(f"{len(unknown)} character(s) not in the model's vocabulary: "
                            f"{shown!r}{' ...' if len(unknown) > 20 else ''}")
        return torch.tensor([self.index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] for i in ids)

    def state_dict(self) -> dict:
        return {"vocab": self.vocab}

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        if m.cell == "feedback":
            extras = {k: getattr(m, k) for k in ("dropout", "recurrent_dropout", "zoneout")
                      if getattr(m, k)}
            if m.num_layers != 1 or extras:
                raise ConfigError(f"model.cell=feedback is one output-feedback layer without "
                                  f"dropout: it needs model.num_layers=1 (got {m.num_layers})"
                                  f" and model.dropout, model.recurrent_dropout, model.zoneout"
                                  f" = 0 (got {extras or 'all 0'})")
            return FeedbackLM(len(self.vocab), m.embed, m.hidden)
        check_regularizers(m)
        return CharRNN(len(self.vocab), m.cell, m.embed, m.hidden, m.num_layers, m.dropout,
                       m.recurrent_dropout, m.zoneout)

    def batch(self, generator, batch_size, device):
        """Random windows: inputs (T, B) and next-character targets (T, B)."""
        train, T = self._ensure_data()["train"], self.cfg.data.seq_len
        starts = torch.randint(0, len(train) - T, (batch_size,), generator=generator)
        windows = torch.stack([train[s:s + T + 1] for s in starts.tolist()], dim=1)  # (T+1, B)
        return windows[:-1].to(device), windows[1:].to(device)

    def loss(self, model, batch):
        inputs, targets = batch
        if isinstance(model, FeedbackLM):                           # teacher forcing
            logits = model.teacher_forced(inputs, targets)          # (T, B, V)
        else:
            logits, _ = model(inputs)                               # (T, B, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss, {"bpc": loss.item() / math.log(2)}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        """Mean cross-entropy over the split, read as ``eval_streams`` parallel streams in
        windows of ``seq_len`` with the state carried across windows; for the feedback
        model free-running, and teacher-forced as ``tf_bpc``."""
        ids = self._ensure_data()[split]
        streams = min(self.cfg.data.eval_streams, len(ids) - 1)
        L = (len(ids) - 1) // streams
        inputs = ids[:streams * L].view(streams, L).t()             # (L, streams)
        targets = ids[1:streams * L + 1].view(streams, L).t()       # (L, streams)
        state, total, forced = None, 0.0, 0.0
        for i in range(0, L, self.cfg.data.seq_len):
            x = inputs[i:i + self.cfg.data.seq_len].to(device)
            y = targets[i:i + self.cfg.data.seq_len].to(device)
            logits, state = model(x, state)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            state = _detach(state)
            if isinstance(model, FeedbackLM):
                logits = model.teacher_forced(x, y)
                forced += F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                          reduction="sum").item()
        nats = total / (streams * L)
        out = {"loss": nats, "bpc": nats / math.log(2)}
        if isinstance(model, FeedbackLM):
            out["tf_bpc"] = forced / (streams * L) / math.log(2)
        return out

    # --- sampling ---

    @torch.no_grad()
    def generate(self, model, prompt, length, temperature, generator, device, out=None) -> str:
        """``prompt`` followed by ``length`` sampled characters (also written to ``out``)."""
        if length < 0:
            raise TaskError(f"length must not be negative, got {length}")
        if temperature < 0:
            raise TaskError(f"temperature must not be negative, got {temperature}")
        if prompt is None or prompt == "":
            prompt = "\n" if "\n" in self.index else self.vocab[0]
        unknown = sorted(set(prompt) - set(self.index))
        if unknown:
            raise TaskError(f"prompt has characters not in the model's vocabulary: "
                            f"{''.join(unknown)!r}")
        model.eval()
        ids = [self.index[ch] for ch in prompt]
        logits, state = model(torch.tensor(ids, device=device).view(-1, 1))  # (T, 1, V)
        sampled = []
        for _ in range(length):
            last = logits[-1, 0].float().cpu()                               # (V,)
            if temperature == 0:
                nxt = int(last.argmax())
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            sampled.append(nxt)
            logits, state = model(torch.tensor([[nxt]], device=device), state)
        text = prompt + self.decode(sampled)
        if out is not None:
            from ..training.rundir import write_text
            write_text(Path(out), text)
        return text
