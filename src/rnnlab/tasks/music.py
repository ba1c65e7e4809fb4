"""Polyphonic music modelling on piano rolls (Boulanger-Lewandowski, Bengio & Vincent 2012,
"Modeling Temporal Dependencies in High-Dimensional Sequences", ICML; book section 10.2.3:
an RNN whose outputs are the parameters of a distribution over the next input).

A piece is a binary piano roll ``v(1..T)``, ``v(t) in {0, 1}^P`` over the pitches
``data.low..data.high`` (default 21..108, the 88 piano keys, as in the paper). The model reads
the previous step and gives every pitch of the next one an independent Bernoulli probability:

    x(t) = v(t-1)   (x(1) = 0, silence: teacher forcing on the true previous step)
    h(t) = f(h(t-1), x(t); θ)                          Stack(cell) (T, B, H)
    p(t) = sigmoid(W h(t) + b)                         (T, B, P)
    NLL  = (1 / Σ T_n) Σ_n Σ_t Σ_k -[v_k log p_k + (1 - v_k) log(1 - p_k)]

The metric ``nll`` is the paper's: the Bernoulli negative log-likelihood summed over the
pitches, averaged over all time steps of the split (nats per time step; ``loss`` is the same
number). ``accuracy`` is the frame-level accuracy of Bay, Ehmann & Downie (2009) that the
paper also reports, ``TP / (TP + FP + FN)`` summed over the split, for the prediction
``p_k > 1/2`` of each step given the true past.

Batches are ragged: pieces are padded to the longest, the stack gets their ``lengths``
(outputs past a piece's end are zero, its state frozen) and the loss is masked, so padding
never changes the NLL. Training draws ``batch_size`` pieces with probability proportional to
their length and cuts each to a random window of ``data.seq_len`` steps (0 = whole pieces);
a window starting inside a piece reads the true previous step as its first input but starts
from the zero state. Evaluation runs over whole pieces (sorted by length, ``eval_batch`` at a
time), from the zero state.

Data: ``--data FILE.json``, ``{"train": [...], "valid": [...], "test": [...]}``, a piece a list
of time steps, a step a list of MIDI pitch numbers (:mod:`rnnlab.data.pianoroll`, which also
converts the Nottingham MIDI files). A pitch outside ``data.low..data.high`` is an error
naming split, piece and step, or, with ``data.out_of_range=drop``, is dropped.

Sampling (``generate``): the prompt (JSON steps, e.g. ``'[[60, 64, 67], [], [62]]'``, default
none) is read with teacher forcing, then each step's pitches are drawn as independent
Bernoulli variables with probabilities ``sigmoid(logits / temperature)`` (temperature 0:
``p > 1/2``) and fed back. ``--out tune.mid`` writes prompt + sample as MIDI (a step is a
``1/data.step_note`` note at ``data.tempo`` quarter notes a minute; consecutive steps of a
pitch are one held note); without ``--out`` nothing is written. The returned text is a short
summary (steps, notes, pitch range).

    python -m rnnlab.data.pianoroll nottingham data/nottingham nottingham.json
    rnnlab train music --data nottingham.json
    rnnlab evaluate runs/music
    rnnlab generate runs/music --length 200 --out tune.mid

Measured figures: docs/results.md (music).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.pianoroll import SPLITS, Roll, count_notes, read_pianoroll, roll_to_midi
from ..data.text import DataError
from ..models.music import MusicRNN, sample_roll
from .base import Task, TaskError

__all__ = ["Music", "MusicModel", "MusicData", "frame_nll", "pad_rolls", "pitch_name"]


@dataclass
class MusicModel:
    cell: str = "lstm"
    hidden: int = 256
    num_layers: int = 1
    dropout: float = 0.0


@dataclass
class MusicData:
    path: str | None = None    # piano-roll JSON (--data FILE.json); there is no default
    low: int = 21              # lowest modelled MIDI pitch (A0)
    high: int = 108            # highest modelled MIDI pitch (C8)
    out_of_range: Literal["error", "drop"] = "error"   # a pitch outside low..high
    seq_len: int = 100         # training window in steps (BPTT length); 0 = whole pieces
    eval_batch: int = 64       # pieces per evaluation batch
    step_note: Literal[4, 8, 16] = 8    # generated MIDI: a step is a 1/step_note note
    tempo: float = 120.0       # generated MIDI: quarter notes per minute


def pad_rolls(rolls: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher-forcing batch of whole rolls, each ``(L_n, P)``:
    inputs (T, B, P) = the previous steps (zero first), targets (T, B, P), lengths (B,)."""
    lengths = torch.tensor([len(r) for r in rolls], dtype=torch.long)
    T, B, P = int(lengths.max()), len(rolls), rolls[0].shape[1]
    targets = torch.zeros(T, B, P)
    for b, r in enumerate(rolls):
        targets[:len(r), b] = r.float()
    inputs = torch.cat([torch.zeros(1, B, P), targets[:-1]])    # x(t) = v(t-1), x(1) = 0
    return inputs, targets, lengths


def frame_nll(logits: Tensor, targets: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """``(nll (B,), mask (T, B))``: each piece's Bernoulli NLL summed over pitches and its
    valid steps (padding masked out); ``logits, targets (T, B, P)``, ``lengths (B,)``."""
    T = logits.shape[0]
    mask = torch.arange(T, device=logits.device)[:, None] < lengths.to(logits.device)[None]
    nll = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
    return torch.where(mask, nll, torch.zeros_like(nll)).sum(0), mask   # (B,), (T, B)


_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI number: 60 -> 'C4', 21 -> 'A0'."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


class Music(Task):
    name = "music"
    description = ("polyphonic music (Boulanger-Lewandowski et al. 2012) on piano-roll JSON "
                   "(--data); NLL per time step, MIDI sampling")
    ModelConfig, DataConfig = MusicModel, MusicData
    main_metric = "nll"
    uses_data_file = True
    # threads=1: small per-step GEMMs (see char-lm); 1,800 steps with cosine decay fit in
    # 10 minutes on a shared 2-core machine at 1 thread
    train_defaults = dict(steps=1800, batch_size=32, lr=3e-3, lr_decay="cosine",
                          clip_norm=5.0, eval_every=300, checkpoint_every=600, threads=1)
    presets = {"full": ["model.dropout=0.3", "train.steps=4000", "train.eval_every=500",
                        "train.checkpoint_every=1000"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        if not 0 <= d.low <= d.high <= 127:
            raise ConfigError(f"data.low and data.high must satisfy 0 <= low <= high <= 127, "
                              f"got {d.low} and {d.high}")
        if d.seq_len < 0:
            raise ConfigError(f"data.seq_len must not be negative, got {d.seq_len}")
        if d.eval_batch < 1:
            raise ConfigError(f"data.eval_batch must be at least 1, got {d.eval_batch}")
        if d.tempo <= 0:
            raise ConfigError(f"data.tempo must be positive, got {d.tempo}")
        self.pitches = d.high - d.low + 1
        self.splits: dict[str, list[Tensor]] | None = None
        self.dropped = 0                     # pitches dropped with data.out_of_range=drop
        if state is None:                    # a new run reads (and checks) the data now;
            self._load()                     # a reloaded one only when it needs the data

    # --- data ---

    def _load(self) -> dict[str, list[Tensor]]:
        if self.splits is None:
            path = self.cfg.data.path
            if path is None:
                raise DataError("the music task needs a piano-roll JSON file: --data FILE.json "
                                "(convert the Nottingham MIDI files with `python -m "
                                "rnnlab.data.pianoroll nottingham SRC OUT.json`)")
            pieces = read_pianoroll(path)
            self.splits = {split: [self._to_tensor(p, path, split, i)
                                   for i, p in enumerate(pieces[split])] for split in SPLITS}
        return self.splits

    def _to_tensor(self, piece: Roll, path: str, split: str, i: int) -> Tensor:
        """A checked piece as a bool roll ``(L, P)`` over low..high."""
        d = self.cfg.data
        cells = [(t, p) for t, step in enumerate(piece) for p in step]      # (step, pitch)
        outside = [(t, p) for t, p in cells if not d.low <= p <= d.high]
        if outside and d.out_of_range == "error":
            t, p = outside[0]
            raise DataError(f"{path}: split {split!r}, piece {i}, step {t}: pitch {p} is "
                            f"outside the modelled range data.low..data.high = "
                            f"{d.low}..{d.high}; widen the range or set "
                            f"data.out_of_range=drop")
        self.dropped += len(outside)
        ts = np.array([t for t, p in cells if d.low <= p <= d.high], dtype=np.int64)
        ps = np.array([p for t, p in cells if d.low <= p <= d.high], dtype=np.int64)
        roll = np.zeros((len(piece), self.pitches), dtype=bool)
        roll[ts, ps - d.low] = True
        return torch.from_numpy(roll)

    def encode(self, steps: Roll) -> Tensor:
        """Steps of MIDI pitches -> binary roll ``(n, P)``; TaskError outside low..high."""
        d = self.cfg.data
        roll = torch.zeros(len(steps), self.pitches)
        for t, step in enumerate(steps):
            for pitch in step:
                if not d.low <= pitch <= d.high:
                    raise TaskError(f"step {t}: pitch {pitch} is outside the model's range "
                                    f"{d.low}..{d.high}")
                roll[t, pitch - d.low] = 1.0
        return roll

    def decode(self, roll: Tensor) -> Roll:
        """Binary roll ``(n, P)`` -> steps of MIDI pitches."""
        return [[self.cfg.data.low + k for k in row.nonzero().flatten().tolist()]
                for row in roll]

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return MusicRNN(self.pitches, m.cell, m.hidden, m.num_layers, m.dropout)

    def batch(self, generator, batch_size, device):
        """Length-weighted random pieces, each cut to a random window of ``seq_len`` steps:
        inputs (T, B, P), targets (T, B, P), lengths (B,)."""
        train, T = self._load()["train"], self.cfg.data.seq_len
        weights = torch.tensor([len(r) for r in train], dtype=torch.float)
        picks = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        starts = torch.rand(batch_size, generator=generator)
        inputs, targets = [], []
        for n, u in zip(picks.tolist(), starts.tolist()):
            roll = train[n].float()                                      # (L, P)
            shifted = torch.cat([torch.zeros(1, roll.shape[1]), roll[:-1]])  # x(t) = v(t-1)
            s = int(u * (len(roll) - T + 1)) if 0 < T < len(roll) else 0
            e = len(roll) if T == 0 else s + T
            inputs.append(shifted[s:e])
            targets.append(roll[s:e])
        lengths = torch.tensor([len(r) for r in targets], dtype=torch.long)
        pad = torch.nn.utils.rnn.pad_sequence
        return pad(inputs).to(device), pad(targets).to(device), lengths.to(device)

    def loss(self, model, batch):
        inputs, targets, lengths = batch
        logits, _ = model(inputs, lengths=lengths)                      # (T, B, P)
        nll, _ = frame_nll(logits, targets, lengths)                    # (B,)
        loss = nll.sum() / lengths.sum()
        return loss, {"nll": loss.item()}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        """NLL per time step and frame-level accuracy over the whole pieces of ``split``."""
        rolls = sorted(self._load()[split], key=len)
        nll_sum, steps, tp, fp, fn = 0.0, 0, 0, 0, 0
        for i in range(0, len(rolls), self.cfg.data.eval_batch):
            inputs, targets, lengths = (t.to(device) for t in
                                        pad_rolls(rolls[i:i + self.cfg.data.eval_batch]))
            logits, _ = model(inputs, lengths=lengths)                  # (T, B, P)
            nll, mask = frame_nll(logits, targets, lengths)
            nll_sum += nll.sum().item()
            steps += int(lengths.sum())
            on, want = (logits > 0) & mask[..., None], targets.bool()   # padding: never on
            tp += int((on & want).sum())
            fp += int((on & ~want).sum())
            fn += int((~on & want).sum())
        nll = nll_sum / steps
        accuracy = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        return {"loss": nll, "nll": nll, "accuracy": accuracy}

    # --- sampling ---

    def _prompt(self, prompt: str | None) -> Tensor:
        if prompt is None or not prompt.strip():
            return torch.zeros(0, self.pitches)
        try:
            steps = json.loads(prompt)
        except json.JSONDecodeError as e:
            raise TaskError(f"the music prompt must be JSON steps such as '[[60, 64], [], "
                            f"[62]]': {e.msg} at column {e.colno}") from None
        if not isinstance(steps, list) or not all(
                isinstance(s, list) and all(type(p) is int for p in s) for s in steps):
            raise TaskError("the music prompt must be a JSON list of steps, each a list of "
                            "MIDI pitch ints, e.g. '[[60, 64], [], [62]]'")
        return self.encode(steps)

    @torch.no_grad()
    def generate(self, model, prompt, length, temperature, generator, device, out=None) -> str:
        """Sample ``length`` steps after ``prompt`` (JSON steps); write MIDI to ``out`` if
        given; return a summary (steps, notes, pitch range)."""
        if length < 0:
            raise TaskError(f"length must not be negative, got {length}")
        if temperature < 0:
            raise TaskError(f"temperature must not be negative, got {temperature}")
        start = self._prompt(prompt)
        roll = self.decode(sample_roll(model, start, length, temperature, generator, device))
        d = self.cfg.data
        pitches = [p for step in roll for p in step]
        seconds = len(roll) * (4 / d.step_note) * 60 / d.tempo
        span = (f"pitches {pitch_name(min(pitches))} ({min(pitches)}) .. "
                f"{pitch_name(max(pitches))} ({max(pitches)})" if pitches else "no pitches")
        lines = [
            f"{len(roll)} steps ({len(start)} prompt + {length} sampled, temperature "
            f"{temperature:g}) of a 1/{d.step_note} note at {d.tempo:g} bpm = {seconds:.1f} s",
            f"{count_notes(roll)} notes, {span}, mean polyphony "
            f"{len(pitches) / max(len(roll), 1):.2f}, "
            f"{sum(not step for step in roll)} silent steps",
        ]
        if out is not None:
            try:
                roll_to_midi(roll, out, d.step_note, d.tempo)
            except OSError as e:
                raise TaskError(f"cannot write the MIDI file {str(out)!r}: "
                                f"{e.strerror or e}") from None
            lines.append(f"wrote {out}")
        return "\n".join(lines)
