"""End-to-end memory network (Sukhbaatar, Szlam, Weston & Fergus 2015; book 10.12) on bAbI
question answering (Weston et al. 2015): the real 20 tasks from a folder, or generated
tasks 1 and 2 when no data is given.

    rnnlab train memnet --data data/babi_en_1k --set data.task=2
    rnnlab train memnet --data DIR --set data.task=2 data.runs=10   # best of 10, as the paper
    rnnlab train memnet                               generated task 1 (no data needed)
    rnnlab predict RUN "mary went to the kitchen . john moved to the garden . where is mary ?"

Model (:class:`rnnlab.models.memnet.MemN2N`, their section 2): K = 3 hops, d = 20, adjacent
weight tying, position encoding (PE) and temporal encoding; memory: the 50 most recent
statements of the story, the most recent in slot 0. PE (``model.position``) is the authors'
code's formula by default, which is the paper's at twice the scale: with the paper's formula
as printed, task 4 ended at 12.2 % test error (best of 5; median 18.9 %) and task 6 at 22.7 %
(31.6 %), against 2.3 % (4.7 %) for task 4 with the code's (paper: 2.8 % and 7.6 %; both
with empty slots masked). Empty
memory slots (stories shorter than the memory) take part in the softmax with score 0 and
value 0, as in the authors' code (``model.attend_empty``; False masks them out): masked,
the yes/no tasks 6, 9 and 10 stayed at 19.6, 16.0 and 30.2 % (best of 5; paper 7.6, 13.2,
15.1 %). These measurements: ``docs/10.12-memory.md``.

Training is the paper's protocol (their section 4.2), which the step loop of
:func:`rnnlab.training.train` does not express (epochs, a switch decided by the validation
loss, best of N runs), so this task trains itself (:meth:`MemNet.train`, :func:`train_runs`):

- 10 % of the training questions held out for validation (``data.valid_fraction``);
- SGD without momentum on the cross-entropy *summed* over a batch of 32 ("cost is not
  averaged over a batch"), gradients of ℓ2 norm above 40 scaled to 40, weights from
  N(0, 0.1²), the null word's embeddings fixed at zero;
- linear start (LS, ``data.linear_start``): the memory softmax is left out at lr 0.005 until
  the validation loss stops decreasing, then put back, and training starts again at lr 0.01
  halved every 25 epochs for 100 epochs (``train.lr``, ``data.anneal_every``,
  ``data.epochs``). "Stops decreasing" is ``data.ls_patience`` epochs without a new lowest
  validation loss, or ``data.ls_max_epochs``; the default (20 and 20) is the authors' code
  (MemN2N-babi-matlab: 20 linear epochs). On the 100 validation questions the loss is noisy:
  with patience 1 LS ended after 2 to 5 epochs and task 2 reached 13.5 % test error (best of
  10; median 13.5 %), with 20 epochs 10.4 % (median 10.8 %) (both measured with the paper's
  PE formula, noise of 0..⌈0.1 n⌉ − 1 blanks and empty slots masked);
- random noise (RN, ``data.random_noise``): in training, 10 % empty memories are inserted at
  random among a story's statements: each statement's temporal index skips them, so T_A and
  T_C learn time invariance (0..⌈0.1 n⌉ blanks per story of n statements, as the authors'
  code draws them);
- the paper repeats training 10 times from different random initialisations and keeps the
  run with the lowest training error: ``data.runs`` runs train together, vectorised over runs
  (one :class:`MemN2N` with ``runs=R``; each run its own initialisation, batch order and
  noise); the run with the lowest error on the training questions (ties: lower validation
  error) is saved.

Metric: answer accuracy (``accuracy``) and error (``error`` = 1 − accuracy) over the split;
``test`` is the task's test file (1000 questions). Vocabulary: the training split's words and
answers (others read as ``<unk>``), saved with the run. Generated data (no ``data.path``):
``data.train_size`` and ``data.test_size`` stories of ``data.max_sentences`` statements at
most, tasks 1 and 2 (:func:`rnnlab.data.babi.generate_story`). ``train.steps`` is not used
(the protocol counts epochs); a run records the SGD steps it took there.

Paper (Table 1, 1k training questions, PE LS RN, one model per task, test error %): task 1
0.0, task 2 8.3 (PE LS RN trained jointly on all tasks: 11.4). Measured:
``docs/10.12-memory.md`` (the 20 tasks, ``docs/results/memnet_babi.json``).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from ..config import ConfigError
from ..data.babi import QA, babi_task_files, generate_qa, read_babi, tokenize
from ..data.text import DataError
from ..models.memnet import MemN2N
from ..training.checkpoint import Checkpoints
from ..training.optim import make_optimizer, make_schedule
from ..training.session import Session
from .base import Task, TaskError

__all__ = ["MemNet", "MemNetModel", "MemNetData", "RunsResult", "best_run", "evaluate_runs",
           "noisy_times", "run_weights", "train_runs"]

PAD, UNK = "<pad>", "<unk>"


@dataclass
class MemNetModel:
    embed: int = 20             # d
    hops: int = 3               # K
    memory: int = 50            # the most recent statements kept (rows of T_A, T_C)
    position: Literal["code", "paper"] = "code"   # PE formula: the authors' code's or the
                                                  # paper's (half the scale; see the docstring)
    attend_empty: bool = True   # empty memory slots in the softmax with score 0, as in the
                                # authors' code (False: masked out)


@dataclass
class MemNetData:
    path: str | None = None     # bAbI folder (qa{N}_*_train/test.txt[.gz]); None = generated
    task: int = 1               # bAbI task 1..20 (generated: 1 or 2)
    valid_fraction: float = 0.1  # of the training questions, held out for validation
    max_sentences: int = 10     # generated stories: 2..max_sentences statements
    train_size: int = 1000      # generated questions (train + valid)
    test_size: int = 1000       # generated test questions
    seed: int = 1234            # the validation split and the generated stories
    # the paper's training protocol (section 4.2); TrainConfig is shared by every task
    epochs: int = 100           # epochs with the softmax (after linear start)
    anneal_every: int = 25      # epochs between halvings of train.lr
    linear_start: bool = True   # LS
    ls_lr: float = 0.005        # learning rate while linear
    ls_max_epochs: int = 20     # LS ends after ls_patience epochs without a lower valid
    ls_patience: int = 20       # loss, or after ls_max_epochs (default: 20 epochs, as the
                                # authors' code; 1 = the paper's words, see the docstring)
    random_noise: float = 0.1   # RN: fraction of empty memories inserted in training; 0 = off
    runs: int = 1               # runs trained at once; the lowest training error is kept


class Encoded(NamedTuple):
    """A split as tensors: N questions, S memory slots, J words."""

    stories: Tensor             # (N, S, J) word ids; slot 0 the most recent statement
    counts: Tensor              # (N,) statements in memory
    questions: Tensor           # (N, J)
    answers: Tensor             # (N,)


class RunsResult(NamedTuple):
    """What :func:`train_runs` returns; one entry per run in each (R,) tensor."""

    params: dict[str, Tensor]   # the stacked weights, (R, ...) each
    buffers: dict[str, Tensor]
    train_error: Tensor         # (R,) on the training split (without noise)
    valid_error: Tensor
    valid_loss: Tensor
    ls_epochs: Tensor           # (R,) epochs of linear start
    history: list[dict]         # per epoch: lr, train loss, valid loss and error, per run
    seconds: float
    sgd_steps: int


class MemNet(Task):
    name = "memnet"
    description = ("end-to-end memory network (Sukhbaatar et al. 2015), PE LS RN, on bAbI QA "
                   "(20 tasks, --data DIR) or generated tasks 1, 2; answer accuracy")
    ModelConfig, DataConfig = MemNetModel, MemNetData
    main_metric = "accuracy"
    uses_data_file = True
    train_defaults = dict(batch_size=32, lr=0.01, optimizer="sgd", momentum=0.0,
                          clip_norm=40.0, threads=1)
    #: a few seconds: generated task 1 with 3-statement stories, 8 epochs after LS
    presets = {"tiny": ["data.epochs=8", "data.anneal_every=4", "data.ls_max_epochs=3",
                        "data.test_size=200", "data.max_sentences=3"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        m, d, tc = cfg.model, cfg.data, cfg.train
        if d.path is None and d.task not in (1, 2):
            raise ConfigError(f"data.task must be 1 or 2 for generated stories (bAbI tasks "
                              f"1..20 need --data DIR), got {d.task}")
        if not 1 <= d.task <= 20:
            raise ConfigError(f"data.task must be a bAbI task 1..20, got {d.task}")
        if d.max_sentences < 2:
            raise ConfigError(f"data.max_sentences must be at least 2, got {d.max_sentences}")
        if not 0 < d.valid_fraction < 1:
            raise ConfigError(f"data.valid_fraction must lie in (0, 1), got {d.valid_fraction}")
        if not 0 <= d.random_noise <= 1:
            raise ConfigError(f"data.random_noise must lie in [0, 1], got {d.random_noise}")
        for key in ("train_size", "test_size", "epochs", "anneal_every", "runs",
                    "ls_max_epochs", "ls_patience"):
            if getattr(d, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(d, key)}")
        if d.ls_lr <= 0:
            raise ConfigError(f"data.ls_lr must be positive, got {d.ls_lr}")
        for key in ("hops", "embed", "memory"):
            if getattr(m, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(m, key)}")
        if tc.optimizer != "sgd" or tc.momentum != 0:
            raise ConfigError("memnet trains by plain SGD (the paper's protocol): "
                              "train.optimizer=sgd, train.momentum=0")
        self.splits: dict[str, Encoded] | None = None
        if state is None:
            qas = self._read()
            self.words = [PAD, UNK] + sorted({w for qa in qas["train"] for s in qa.story
                                              for w in s} | {w for qa in qas["train"]
                                                             for w in qa.question})
            known = set(self.words)
            self.words += sorted({qa.answer for qa in qas["train"]} - known)
            lengths = [len(s) for split in qas.values() for qa in split
                       for s in qa.story[-m.memory:] + (qa.question,)]
            self.max_words = max(lengths)
            self.slots = min(m.memory, max(len(qa.story) for split in qas.values()
                                           for qa in split))
        else:
            try:
                self.words, self.max_words = list(state["words"]), int(state["max_words"])
                self.slots = int(state["slots"])
            except (KeyError, TypeError, ValueError):
                raise TaskError("task state lacks the memnet vocabulary and sizes "
                                "(words, max_words, slots)") from None
            if (len(self.words) < 2 or self.words[:2] != [PAD, UNK] or self.max_words < 1
                    or not 1 <= self.slots <= m.memory):
                raise TaskError("task state has a malformed memnet vocabulary or sizes")
        self.index = {w: i for i, w in enumerate(self.words)}
        if state is None:
            self.splits = {name: self._encode(split) for name, split in qas.items()}

    # --- data ---

    def _read(self) -> dict[str, list[QA]]:
        """{"train", "valid", "test"} questions: the task's files, or generated stories."""
        d = self.cfg.data
        if d.path is None:
            rng = random.Random(d.seed)
            train = [generate_qa(rng, d.task, d.max_sentences) for _ in range(d.train_size)]
            test = [generate_qa(rng, d.task, d.max_sentences) for _ in range(d.test_size)]
        else:
            files = babi_task_files(d.path, d.task)
            train, test = read_babi(files["train"]), read_babi(files["test"])
        order = list(range(len(train)))
        random.Random(d.seed).shuffle(order)
        n_valid = max(1, round(d.valid_fraction * len(train)))
        if n_valid >= len(train):
            raise DataError(f"{d.path}: {len(train)} training questions are too few to hold "
                            f"out {d.valid_fraction:.0%} for validation")
        return {"train": [train[i] for i in sorted(order[n_valid:])],
                "valid": [train[i] for i in sorted(order[:n_valid])], "test": test}

    def _ids(self, words) -> list[int]:
        ids = [self.index.get(w, 1) for w in words][:self.max_words]
        return ids + [0] * (self.max_words - len(ids))

    def _encode(self, qas: list[QA]) -> Encoded:
        N, S, J = len(qas), self.slots, self.max_words
        stories = torch.zeros(N, S, J, dtype=torch.long)
        counts = torch.zeros(N, dtype=torch.long)
        for n, qa in enumerate(qas):
            recent = qa.story[::-1][:S]                      # the most recent first
            counts[n] = len(recent)
            if recent:
                stories[n, :len(recent)] = torch.tensor([self._ids(s) for s in recent])
        questions = torch.tensor([self._ids(qa.question) for qa in qas])
        answers = torch.tensor([self.index.get(qa.answer, 1) for qa in qas])
        return Encoded(stories, counts, questions, answers)

    def _data(self) -> dict[str, Encoded]:
        if self.splits is None:           # a reloaded run: read the data, keep the vocabulary
            self.splits = {name: self._encode(split) for name, split in self._read().items()}
        return self.splits

    def state_dict(self):
        return {"words": self.words, "max_words": self.max_words, "slots": self.slots}

    def build_model(self):
        m = self.cfg.model
        return MemN2N(len(self.words), m.embed, m.hops, m.memory, self.max_words,
                      position=m.position, attend_empty=m.attend_empty)

    # --- the Task interface (one model) ---

    def batch(self, generator, batch_size, device):
        """A random training batch ``(stories, questions, answers, times)`` with RN times."""
        data = self._data()["train"]
        idx = torch.randint(0, len(data.answers), (batch_size,), generator=generator)
        times = noisy_times(data.counts[idx], self.slots, self.cfg.model.memory,
                            self.cfg.data.random_noise, generator)
        return tuple(t.to(device) for t in (data.stories[idx], data.questions[idx],
                                            data.answers[idx], times))

    def loss(self, model, batch):
        stories, questions, answers, times = batch
        logits = model(stories, questions, times)
        accuracy = (logits.argmax(-1) == answers).float().mean().item()
        return F.cross_entropy(logits, answers), {"accuracy": accuracy}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        data = self._data()[split]
        total, right = 0.0, 0
        for start in range(0, len(data.answers), 500):
            part = [t[start:start + 500].to(device) for t in
                    (data.stories, data.questions, data.answers)]
            logits = model(part[0], part[1])
            total += F.cross_entropy(logits, part[2], reduction="sum").item()
            right += int((logits.argmax(-1) == part[2]).sum())
        n = len(data.answers)
        return {"loss": total / n, "accuracy": right / n, "error": 1 - right / n}

    # --- training: the paper's protocol ---

    def train(self, run=None, *, log=print, progress=None, on_checkpoint=None, resume=False):
        """Train ``data.runs`` runs with the paper's protocol (:func:`train_runs`), keep the
        one with the lowest training error; write the run directory ``run`` as the gradient
        loop does (config, weights, metrics per epoch, summary); return ``(model, final)``.
        ``progress`` is accepted and unused; a resumed run that finished is only re-scored."""
        s, tc = Session(self, self.cfg, run, log, resume), self.cfg.train
        optimizer = make_optimizer(s.model, tc)        # saved with the checkpoint, unused
        checkpoints = Checkpoints(s, optimizer, make_schedule(optimizer, tc), on_checkpoint)
        resumed = s.saved is not None
        _, _, valid = checkpoints.start()
        if resumed:
            return s.model, s.finish(valid)
        result = train_runs(self, self.cfg.data.runs, tc.seed, s.device, log=s.log)
        for h in result.history:                       # "step": SGD steps (batches) so far
            s.record(h["step"], "train", {"loss": median(h["train_loss"]), "lr": h["lr"][0]})
            s.record(h["step"], "valid", {"epoch": h["epoch"],
                                          "loss": median(h["valid_loss"]),
                                          "error": median(h["valid_error"])})
        best = best_run(result)
        s.model.load_state_dict(run_weights(result, best))
        tc.steps = result.sgd_steps                     # the steps taken (train.steps unused)
        s.record(tc.steps, "train", {"runs": result.train_error.numel(), "best_run": best,
                                     "train_error": float(result.train_error[best]),
                                     "sgd_steps": result.sgd_steps})
        valid = s.evaluate(tc.steps, "valid")
        s.log(f"epoch {len(result.history):>4} | best of {result.train_error.numel()} runs: "
              f"run {best}, train error {float(result.train_error[best]):.3f}, valid error "
              f"{valid['error']:.3f} | {s.elapsed():.0f}s")
        checkpoints.save(tc.steps, {}, valid)
        s.model.train()
        return s.model, s.finish(valid)

    def predict(self, model, inputs, device):
        """``"statement . statement . question ?"`` -> the answer word, one per input."""
        outputs = []
        for text in inputs:
            if "?" not in text:
                raise TaskError("give the story then a question ending in '?', e.g. 'mary "
                                "went to the kitchen . where is mary ?'")
            body, _, _ = text.rpartition("?")
            parts = [p for p in body.replace("!", ".").split(".")]
            story, question = [tokenize(p) for p in parts[:-1]], tokenize(parts[-1])
            story = [s for s in story if s]
            words = {w for s in story + [question] for w in s}
            unknown = sorted(words - set(self.index))
            if unknown:
                raise TaskError(f"words outside the memnet vocabulary: {', '.join(unknown)}; "
                                f"known: {' '.join(self.words[2:])}")
            if not question:
                raise TaskError("the question before '?' has no words")
            qa = QA(tuple(tuple(s) for s in story), tuple(question), PAD, ())
            enc = self._encode([qa])
            with torch.no_grad():
                logits = model(enc.stories.to(device), enc.questions.to(device))
            outputs.append(self.words[int(logits[0, 2:].argmax()) + 2])
        return outputs


def median(values) -> float:
    return float(torch.as_tensor(values, dtype=torch.float64).median())


def best_run(result: RunsResult) -> int:
    """The run with the lowest training error (the paper's choice); ties: lower valid error."""
    key = result.train_error.double() * 10 + result.valid_error.double()
    return int(key.argmin())


def noisy_times(counts: Tensor, slots: int, memory: int, noise: float,
                generator: torch.Generator) -> Tensor:
    """Temporal indices (..., slots) for stories of ``counts`` statements with random noise:
    per story, b ~ U{0, ..., ⌈noise·n⌉} empty memories are inserted at random among its n
    statements (slot 0 = the most recent), so slot i gets index i + (blanks before it);
    indices are capped at ``memory − 1`` (the authors' code: ``randi([0, ceil(n·0.1)])``
    blanks, indices capped at the memory size). ``noise`` 0: slot i gets index i."""
    base = torch.arange(slots).expand(*counts.shape, slots)
    if noise == 0:
        return base.clone()
    extra = math.ceil(noise * slots)
    ceil = torch.ceil(noise * counts.double()).long()
    blanks = (torch.rand(counts.shape, generator=generator, dtype=torch.float64)
              * (ceil + 1)).long()                                   # U{0..ceil}
    L = slots + extra
    pos = torch.arange(L)
    valid = pos < (counts + blanks).unsqueeze(-1)                    # (..., L)
    keys = torch.rand(*counts.shape, L, generator=generator).masked_fill(~valid, 2.0)
    rank = keys.argsort(-1).argsort(-1)                              # rank among the L keys
    blank = rank < blanks.unsqueeze(-1)                              # the lowest keys: blanks
    kept = torch.where(valid & ~blank, pos, L + pos)
    times = kept.sort(-1).values[..., :slots]
    return times.clamp(max=memory - 1)


def train_runs(task: MemNet, runs: int, seed: int, device="cpu",
               log=print) -> RunsResult:
    """Train ``runs`` memory networks on ``task``'s training split with the paper's protocol
    (this module's docstring), all at once: one :class:`MemN2N` with ``runs=R`` (weights
    stacked along a run dimension), per-run gradient clipping, learning rate and LS phase.
    Seeds torch with ``seed`` (initialisations), and draws batch orders and noise from it."""
    d, m, tc = task.cfg.data, task.cfg.model, task.cfg.train
    data = {k: Encoded(*(t.to(device) for t in v)) for k, v in task._data().items()}
    torch.manual_seed(seed)
    model = MemN2N(len(task.words), m.embed, m.hops, m.memory, task.max_words,
                   runs=runs, position=m.position, attend_empty=m.attend_empty).to(device)
    params = [model.A, model.T]
    g = torch.Generator().manual_seed(seed)
    R, tr = runs, data["train"]
    N, B = len(tr.answers), tc.batch_size
    linear = torch.full((R,), d.linear_start, dtype=torch.bool)
    phase_epoch = torch.zeros(R, dtype=torch.long)
    ls_epochs = torch.zeros(R, dtype=torch.long)
    ls_best = torch.full((R,), math.inf)
    ls_stall = torch.zeros(R, dtype=torch.long)            # LS epochs since the best valid loss
    done = torch.zeros(R, dtype=torch.bool)
    history, steps, start = [], 0, time.perf_counter()

    def evaluate(split) -> tuple[Tensor, Tensor]:
        enc = data[split]
        loss = torch.zeros(R, device=device)
        wrong = torch.zeros(R, device=device)
        with torch.no_grad():
            for s in range(0, len(enc.answers), 100):
                part = [t[s:s + 100].expand(R, *t[s:s + 100].shape) for t in enc]
                logits = model(part[0], part[2], None, linear.to(device))  # (R, n, V)
                loss += F.cross_entropy(logits.transpose(1, 2), part[3],
                                        reduction="none").sum(1)
                wrong += (logits.argmax(-1) != part[3]).sum(1)
        n = len(enc.answers)
        return (loss / n).cpu(), (wrong / n).cpu()

    epoch = 0
    while not bool(done.all()):
        epoch += 1
        lr = torch.where(linear, torch.tensor(d.ls_lr, dtype=torch.float64),
                         tc.lr * 0.5 ** (phase_epoch // d.anneal_every).double()).float()
        lr = lr.masked_fill(done, 0.0)
        lr_dev, linear_dev = lr.to(device), linear.to(device)
        order = torch.rand(R, N, generator=g).argsort(1).to(device)
        train_loss = torch.zeros(R, device=device)
        for b in range(0, N, B):
            idx = order[:, b:b + B]                                        # (R, b)
            times = noisy_times(tr.counts[idx].cpu(), task.slots, m.memory,
                                d.random_noise, g).to(device)
            logits = model(tr.stories[idx], tr.questions[idx], times, linear_dev)  # (R, b, V)
            loss = F.cross_entropy(logits.transpose(1, 2), tr.answers[idx],
                                   reduction="none").sum(1)                # (R,): summed
            grads = torch.autograd.grad(loss.sum(), params)
            norms = torch.sqrt(sum(gr.pow(2).flatten(1).sum(1) for gr in grads))
            scale = lr_dev * (tc.clip_norm / norms.clamp(min=1e-12)).clamp(max=1.0) \
                if tc.clip_norm else lr_dev
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p -= scale.view(-1, *[1] * (gr.dim() - 1)) * gr
            train_loss += loss.detach()
            steps += 1
        valid_loss, valid_error = evaluate("valid")
        active = ~done
        history.append({"epoch": epoch, "step": steps, "lr": lr.tolist(), "linear": linear.tolist(),
                        "train_loss": (train_loss.cpu() / N).tolist(),
                        "valid_loss": valid_loss.tolist(), "valid_error": valid_error.tolist()})
        phase_epoch += active.long()
        improving = valid_loss < ls_best
        ls_best = torch.where(linear & improving, valid_loss, ls_best)
        ls_stall = torch.where(improving, 0, ls_stall + 1)
        switch = linear & active & ((ls_stall >= d.ls_patience)
                                    | (phase_epoch >= d.ls_max_epochs))
        ls_epochs = torch.where(linear & active, phase_epoch, ls_epochs)
        phase_epoch = phase_epoch.masked_fill(switch, 0)
        linear = linear & ~switch
        done = ~linear & (phase_epoch >= d.epochs)
        if epoch % 10 == 0 or bool(done.all()):
            log(f"epoch {epoch:>4} | valid error median {median(valid_error):.3f} min "
                f"{float(valid_error.min()):.3f} | linear {int(linear.sum())}/{R} | "
                f"{time.perf_counter() - start:.0f}s")
    train_error = evaluate("train")[1]
    valid_loss, valid_error = evaluate("valid")
    return RunsResult({"A": model.A.detach(), "T": model.T.detach()},
                      {k: v.expand(R, *v.shape) for k, v in model.named_buffers()},
                      train_error, valid_error, valid_loss, ls_epochs, history,
                      time.perf_counter() - start, steps)


def run_weights(result: RunsResult, r: int) -> dict[str, Tensor]:
    """The state dict of run ``r`` of ``result``, for a one-network :class:`MemN2N`."""
    return {k: v[r] for k, v in {**result.params, **result.buffers}.items()}


def evaluate_runs(task: MemNet, result: RunsResult, split: str, device="cpu") -> Tensor:
    """(R,) error of every run of ``result`` on ``split``."""
    model = task.build_model().to(device)
    errors = []
    for r in range(result.train_error.numel()):
        model.load_state_dict(run_weights(result, r))
        errors.append(task.evaluate(model, split, device)["error"])
    return torch.tensor(errors)
