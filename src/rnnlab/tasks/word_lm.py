"""Word-level language model with truncated BPTT (book sections 10.2.3 and 10.10; Zaremba,
Sutskever & Vinyals 2014, "Recurrent neural network regularization", arXiv:1409.2329).

    tokens (T, B) -> embedding (T, B, E) -> dropout -> Stack(cell, L layers, dropout between)
                  -> dropout -> linear (T, B, V)           (optionally tied: W_out = W_embed)

trained to predict word t+1 from words 1..t. The loss is the mean cross-entropy per token,
and the metric is the perplexity over a whole split,

    perplexity = exp( -(1/N) sum_t log p(w_t | w_<t) ) = exp(loss)

Data (``--data DIR``): a directory in the Penn Treebank layout of Mikolov's ``simple-examples``,
one file per split, ``*.train.txt``, ``*.valid.txt``, ``*.test.txt`` (``ptb.train.txt``, ...;
plain ``train.txt`` / ``valid.txt`` / ``test.txt`` as in PyTorch's word_language_model example
are accepted too). UTF-8, one sentence per line, words separated by whitespace; ``<eos>`` is
appended to every line (a blank line is just ``<eos>``). The vocabulary is every word of the
training split plus ``<eos>``, ordered by frequency (ties: first occurrence) and saved with the
run (``task_state.json``). Words of the valid/test split that are not in it are read as
``<unk>``; PTB already has ``<unk>`` in its training text, and for a corpus without one an
``<unk>`` entry is added at the end of the vocabulary (never a training target then, so its
probability stays small and such words cost many nats, as they should). Without ``--data``
(``data.path`` None) the task uses Python's bundled documentation
(:func:`rnnlab.data.default_corpus`) converted in memory by
:func:`rnnlab.data.ptb.ptb_layout_lines`.

:func:`rnnlab.data.ptb.make_ptb_layout` builds such a directory from any text file
(lower-cased, words and punctuation as tokens, words seen fewer than ``min_count`` times ->
``<unk>``, one line per non-blank line of text, contiguous 90/5/5 split), e.g. from Tiny
Shakespeare:

    python -c "from rnnlab.data.ptb import make_ptb_layout; \\
               make_ptb_layout('data/tinyshakespeare/input.txt', '/tmp/shakespeare-ptb')"

Truncated BPTT with the state carried across batches (Zaremba et al.; Mikolov 2012). The
training split, one long stream of N ids, is cut into B = ``train.batch_size`` contiguous
parallel streams (``batchify``: column b of the (N // B, B) matrix is ids[b N/B : (b+1) N/B]).
Batch k of an epoch is the window of ``data.bptt`` rows starting at row k * bptt (targets
shifted by one row), so consecutive batches continue every stream; the final recurrent state
of batch k, detached from the graph, is the initial state of batch k+1, and it is reset to
zero at the start of every epoch. An epoch is E = (N // B - 1) // bptt windows (the short
remainder is dropped, as in Zaremba's reader). The task keeps the cursor (epoch, window) and
the carried state itself, so ``train.batch_size`` must stay the same through a run.
:meth:`WordLM.position` / :meth:`WordLM.set_position` save and restore the cursor, so a resumed
run continues with the same window; the carried state is *not* saved, a resumed run starts
that window from a zero state (a few windows of slightly worse context, once).

Baseline: :meth:`WordLM.unigram` scores a split with the add-one unigram distribution of the
training split (what a model that ignores context can reach).

Evaluation reads the whole valid/test split as ``data.eval_streams`` parallel streams in
windows of ``bptt`` with the state carried, and scores every token: the few ids that do not
fill the S x L block are scored as the continuation of the last stream.

Epochs: ``train.steps`` counts optimizer steps. With ``data.epochs > 0`` the task sets, when
it is built (before training; the saved ``config.json`` then records the resolved values),

    train.steps          = data.epochs * E
    train.lr_decay_start = data.decay_after_epochs * E      (only with train.lr_decay=step)
    train.lr_decay_every = E

so that the learning rate is lr * factor ** max(epoch - decay_after_epochs, 0) in epoch
1, 2, ... (epoch > decay_after_epochs is decayed), as in Zaremba et al.

Presets (``--config small|medium``) reproduce Zaremba et al.'s non-regularized (small) and
medium regularized LSTMs: 2 layers, embedding = hidden = 200 / 650, dropout 0 / 0.5 on the
non-recurrent connections, every parameter ~ U(-0.1, 0.1) / U(-0.05, 0.05), plain SGD (no
momentum), batch 20, bptt 20 / 35, 13 / 39 epochs, lr x0.5 per epoch after epoch 4 / x1/1.2
per epoch after epoch 6, untied weights. Their "lr 1, clip norm 5" act on the gradient of the
loss summed over the window's T steps (mean over the batch); rnnlab's loss is the mean per
token, whose gradient is 1/T of that, so the identical update is lr = T and clip norm = 5/T:
lr 20, clip 0.25 (small) and lr 35, clip 5/35 (medium). Published PTB perplexities:
small 120.7 valid / 114.5 test, medium 86.2 / 82.7 (their Table 1).

``model.tie`` (default false) ties the output weights to the embedding (Press & Wolf 2017;
Inan et al. 2017); it needs ``model.embed`` equal to ``model.hidden``. ``model.init > 0``
draws every parameter from U(-init, init) (Zaremba); 0 keeps rnnlab's defaults.

Sampling (``generate``): the prompt is split on whitespace and fed through the model, then
words are drawn one at a time from softmax(logits / temperature) (0 = argmax), carrying the
state. Prompt words outside the vocabulary are an error listing them (write ``<unk>`` for an
unknown word). No prompt starts after ``<eos>``. ``<eos>`` is printed as a line break.

    rnnlab train word-lm --data DIR       # default: 1-layer LSTM 256, dropout 0.3, Adam, cosine
    rnnlab train word-lm --data DIR --config small          # Zaremba et al. small
    rnnlab evaluate runs/word-lm --json
    rnnlab generate runs/word-lm --prompt "the king" --length 30 --temperature 0.8

Measured results: ``docs/results.md``, section word-lm.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.ptb import find_split_files, ptb_layout_lines, read_sentences
from ..data.text import DataError, default_corpus
from ..data.tokenize import tokenize_words
from ..data.vocab import EOS, UNK, Vocab
from ..models.language import TieError, WordRNN
from .base import Task, TaskError, check_regularizers

__all__ = ["WordLM", "WordLMModel", "WordLMData", "batchify", "build_vocab", "EOS", "UNK"]

#: the word-lm tokenizer (moved to :func:`rnnlab.data.tokenize.tokenize_words`)
tokenize = tokenize_words


def build_vocab(sentences: list[list[str]]) -> Vocab:
    """Every word of ``sentences`` by descending count (ties: first occurrence), then
    ``<unk>`` if it did not occur."""
    counts = Counter(w for s in sentences for w in s)   # insertion order = first occurrence
    vocab = Vocab.build(counts, order="count-first")
    return vocab if UNK in vocab else Vocab([*vocab.to_list(), UNK])



def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """ids (N,) -> (N // B, B): column b is the contiguous stream ids[b*n : (b+1)*n],
    n = N // B (the last N mod B ids are dropped)."""
    n = len(ids) // batch_size
    return ids[:n * batch_size].view(batch_size, n).t().contiguous()


def _map_state(fn, state):
    """Apply ``fn`` to every tensor of a (nested list / tuple / NamedTuple) state."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):     # NamedTuple (LSTMState)
        return type(state)(*(_map_state(fn, s) for s in state))
    return type(state)(_map_state(fn, s) for s in state)


@dataclass
class WordLMModel:
    cell: str = "lstm"
    embed: int = 256           # embedding size
    hidden: int = 256
    num_layers: int = 1
    dropout: float = 0.3       # on embeddings, between layers, before the output
    tie: bool = False          # output weights = embedding (needs embed == hidden)
    recurrent_dropout: float = 0.0   # Gal & Ghahramani 2016: one mask per window on h(t-1)
    zoneout: float = 0.0             # Krueger et al. 2017: units keep h(t-1) with this rate
    init: float = 0.0          # > 0: every parameter ~ U(-init, init); 0: rnnlab defaults


@dataclass
class WordLMData:
    path: str | None = None    # PTB-layout directory; None = Python's docs, converted
    bptt: int = 35             # tokens per training window (truncated-BPTT length)
    epochs: int = 0            # > 0: set train.steps (and step-decay points) from epochs
    decay_after_epochs: int = 4   # with epochs > 0 and train.lr_decay=step
    eval_streams: int = 10     # parallel streams when scoring a split


# --- task -----------------------------------------------------------------------------------

# shared by both Zaremba et al. presets (see the module docstring for the lr / clip scaling)
_ZAREMBA = ["model.cell=lstm", "model.num_layers=2", "model.tie=false",
            "train.batch_size=20", "train.optimizer=sgd", "train.momentum=0",
            "train.weight_decay=0", "train.lr_decay=step", "train.eval_every=500",
            "train.checkpoint_every=2000"]


class WordLM(Task):
    name = "word-lm"
    description = ("word-level language model on a Penn-Treebank-layout directory, truncated "
                   "BPTT with carried state (Zaremba et al. 2014 presets); perplexity")
    ModelConfig, DataConfig = WordLMModel, WordLMData
    main_metric = "perplexity"
    uses_data_file = True
    # 1000 steps (~4.3 epochs of Tiny Shakespeare) with cosine decay: 423 s on one busy
    # thread; 1500 steps at a constant lr took 529 s for a worse valid perplexity (75.0)
    train_defaults = dict(steps=1000, batch_size=32, lr=3e-3, lr_decay="cosine",
                          clip_norm=1.0, eval_every=250, checkpoint_every=500, threads=1)
    presets = {
        "small": _ZAREMBA + [
            "model.embed=200", "model.hidden=200", "model.dropout=0", "model.init=0.1",
            "data.bptt=20", "data.epochs=13", "data.decay_after_epochs=4",
            "train.lr=20", "train.clip_norm=0.25", "train.lr_decay_factor=0.5"],
        "medium": _ZAREMBA + [
            "model.embed=650", "model.hidden=650", "model.dropout=0.5", "model.init=0.05",
            "data.bptt=35", "data.epochs=39", "data.decay_after_epochs=6",
            "train.lr=35", f"train.clip_norm={5 / 35!r}",
            f"train.lr_decay_factor={1 / 1.2!r}"],
    }

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        for key in ("bptt", "eval_streams"):
            if getattr(d, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(d, key)}")
        for key in ("epochs", "decay_after_epochs"):
            if getattr(d, key) < 0:
                raise ConfigError(f"data.{key} must not be negative, got {getattr(d, key)}")
        if not 0.0 <= cfg.model.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
        check_regularizers(cfg.model)
        if cfg.model.init < 0:
            raise ConfigError(f"model.init must not be negative, got {cfg.model.init}")
        self.splits: dict[str, Tensor] | None = None
        self.streams: Tensor | None = None          # (N // B, B) training streams
        self.epoch, self.cursor = 0, 0              # next window: `cursor` of epoch `epoch`
        self.carry = None                           # detached state carried between batches
        if state is None:
            sentences = self._read()
            self.words = build_vocab(sentences["train"])
        else:
            try:
                self.words = Vocab.from_list(state.get("vocab"))
            except ValueError:
                raise TaskError("task state has no vocabulary ('vocab', a list of words)"
                                ) from None
        self.vocab, self.index = self.words.to_list(), self.words.index
        if state is None:
            self._encode_splits(sentences)
            self._layout(cfg.train.batch_size)
            if d.epochs > 0:
                self._resolve_epochs()

    # --- data ---

    def _read(self) -> dict[str, list[list[str]]]:
        if self.cfg.data.path is None:
            splits = ptb_layout_lines(default_corpus())
            return {k: [line.split() + [EOS] for line in lines] for k, lines in splits.items()}
        files = find_split_files(self.cfg.data.path)
        return {split: read_sentences(path) for split, path in files.items()}

    def _encode_splits(self, sentences: dict[str, list[list[str]]]) -> None:
        unk = self.index.get(UNK)
        self.splits = {}
        for split, sents in sentences.items():
            ids = [self.index.get(w, unk) for s in sents for w in s]
            if unk is None and None in ids:           # a saved vocab without <unk>
                missing = sorted({w for s in sents for w in s if w not in self.index})
                raise DataError(f"{split} split has words not in the vocabulary and the "
                                f"vocabulary has no {UNK}: {' '.join(missing[:10])}")
            self.splits[split] = torch.tensor(ids, dtype=torch.long)

    def _ensure_data(self) -> dict[str, Tensor]:
        if self.splits is None:       # a reloaded run: read the files again, keep the vocab
            self._encode_splits(self._read())
        return self.splits

    def _source(self) -> str:
        return "the default corpus" if self.cfg.data.path is None else repr(self.cfg.data.path)

    def _layout(self, batch_size: int) -> None:
        train, bptt = self._ensure_data()["train"], self.cfg.data.bptt
        if len(train) < batch_size * (bptt + 1):
            raise DataError(f"the training split of {self._source()} has {len(train)} tokens; "
                            f"train.batch_size={batch_size} streams of data.bptt={bptt} + 1 "
                            f"need at least {batch_size * (bptt + 1)}")
        self.streams = batchify(train, batch_size)              # (N // B, B)
        self.epoch, self.cursor, self.carry = 0, 0, None

    @property
    def windows_per_epoch(self) -> int:
        """E: full windows of ``bptt`` steps in one pass over the training streams."""
        if self.streams is None:
            self._layout(self.cfg.train.batch_size)
        return (len(self.streams) - 1) // self.cfg.data.bptt

    def _resolve_epochs(self) -> None:
        """Turn data.epochs (and data.decay_after_epochs) into optimizer steps."""
        t, E = self.cfg.train, self.windows_per_epoch
        t.steps = self.cfg.data.epochs * E
        if t.lr_decay == "step":
            t.lr_decay_start = self.cfg.data.decay_after_epochs * E
            t.lr_decay_every = E

    def encode(self, words: list[str]) -> Tensor:
        unknown = sorted({w for w in words if w not in self.index})
        if unknown:
            raise TaskError(f"word(s) not in the model's vocabulary: {' '.join(unknown)} "
                            f"(write {UNK} for an unknown word)")
        return torch.tensor([self.index[w] for w in words], dtype=torch.long)

    def decode(self, ids) -> str:
        """Words joined by spaces, ``<eos>`` as a line break."""
        return re.sub(f" ?{EOS} ?", "\n", " ".join(self.vocab[i] for i in ids))

    def state_dict(self) -> dict:
        return {"vocab": self.words.to_list()}

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        try:
            model = WordRNN(len(self.vocab), m.cell, m.embed, m.hidden, m.num_layers,
                            m.dropout, m.tie, m.recurrent_dropout, m.zoneout)
        except TieError as e:
            raise ConfigError(f"model.tie needs model.embed ({e.embed}) equal to the "
                              f"recurrent output size ({e.size})") from None
        if m.init > 0:
            for p in model.parameters():
                nn.init.uniform_(p, -m.init, m.init)
        return model

    def batch(self, generator, batch_size, device):
        """The next window of every training stream: inputs (T, B), targets (T, B).

        ``generator`` is not used: the order is fixed. Starts a new epoch (and resets the
        carried state) after the last full window."""
        if self.streams is None:
            self._layout(batch_size)
        if batch_size != self.streams.shape[1]:
            raise TaskError(f"word-lm lays the training split out as {self.streams.shape[1]} "
                            f"streams; train.batch_size must stay {self.streams.shape[1]} "
                            f"during a run, got {batch_size}")
        if self.cursor >= self.windows_per_epoch:
            self.epoch, self.cursor, self.carry = self.epoch + 1, 0, None
        T = self.cfg.data.bptt
        i = self.cursor * T
        self.cursor += 1
        return (self.streams[i:i + T].to(device),
                self.streams[i + 1:i + T + 1].to(device))

    def loss(self, model, batch):
        """Mean cross-entropy per token of the window, from the carried state; the final
        state (detached) is carried to the next window."""
        inputs, targets = batch
        logits, state = model(inputs, self.carry)                   # (T, B, V)
        self.carry = _map_state(Tensor.detach, state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss, {"perplexity": math.exp(min(loss.item(), 700.0))}

    def position(self) -> dict:
        """``{"epoch", "window" (the next one), "batch_size"}``; JSON-able."""
        if self.streams is None:
            self._layout(self.cfg.train.batch_size)
        return {"epoch": self.epoch, "window": self.cursor, "batch_size": self.streams.shape[1]}

    def set_position(self, position: dict) -> None:
        """Continue from the saved window; the carried state restarts from zero."""
        if self.streams is None:
            self._layout(self.cfg.train.batch_size)
        B, E = self.streams.shape[1], self.windows_per_epoch
        epoch, window = position.get("epoch"), position.get("window")
        if not (isinstance(epoch, int) and epoch >= 0 and isinstance(window, int)
                and 0 <= window <= E):
            raise TaskError(f"bad word-lm position {position!r}: expected epoch >= 0 and "
                            f"0 <= window <= {E}")
        if position.get("batch_size", B) != B:
            raise TaskError(f"the saved position is for train.batch_size="
                            f"{position['batch_size']}, this run has {B}; keep it the same")
        self.epoch, self.cursor, self.carry = epoch, window, None

    @torch.no_grad()
    def evaluate(self, model, split, device):
        """Mean cross-entropy over every token of the split, read as ``eval_streams``
        parallel streams in windows of ``bptt`` with the state carried; perplexity = exp."""
        ids = self._ensure_data()[split]
        n = len(ids) - 1                                   # predicted tokens
        S = min(self.cfg.data.eval_streams, n)
        L, T = n // S, self.cfg.data.bptt
        inputs = ids[:S * L].view(S, L).t()                # (L, S)
        targets = ids[1:S * L + 1].view(S, L).t()          # (L, S)
        state, total = None, 0.0
        for i in range(0, L, T):
            logits, state = model(inputs[i:i + T].to(device), state)
            y = targets[i:i + T].to(device)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        if n > S * L:                  # the rest continues the last stream, from its state
            state = _map_state(lambda t: t[S - 1:S], state)
            x = ids[S * L:n].view(-1, 1).to(device)          # (n - S L, 1)
            y = ids[S * L + 1:n + 1].view(-1, 1).to(device)
            logits, _ = model(x, state)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        nats = total / n
        return {"loss": nats, "perplexity": math.exp(min(nats, 700.0))}

    def unigram(self, split: str) -> dict[str, float]:
        """The unigram baseline on ``split``: p(w) = (count_train(w) + 1) / (N_train + V)
        (add-one, so every word of the vocabulary has p > 0), scored on the same targets as
        :meth:`evaluate` (every token but the first); ``{"loss", "perplexity"}``."""
        data = self._ensure_data()
        counts = torch.bincount(data["train"], minlength=len(self.vocab)).double() + 1.0
        log_p = counts.log() - counts.sum().log()                          # (V,)
        nats = -log_p[data[split][1:]].mean().item()
        return {"loss": nats, "perplexity": math.exp(nats)}

    # --- sampling ---

    @torch.no_grad()
    def generate(self, model, prompt, length, temperature, generator, device, out=None) -> str:
        """The prompt followed by ``length`` sampled words (also written to ``out``)."""
        if length < 0:
            raise TaskError(f"length must not be negative, got {length}")
        if temperature < 0:
            raise TaskError(f"temperature must not be negative, got {temperature}")
        words = prompt.split() if prompt else []
        ids = self.encode(words if words else [EOS])
        model.eval()
        logits, state = model(ids.view(-1, 1).to(device))                   # (T, 1, V)
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
        text = self.decode((ids.tolist() if words else []) + sampled)
        if out is not None:
            from ..training.rundir import write_text
            write_text(Path(out), text)
        return text
