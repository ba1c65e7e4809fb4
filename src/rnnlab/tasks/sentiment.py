"""Sentence sentiment: many-to-one classification with a (bidirectional) LSTM (book 10.2.4, 10.3).

    tokens (T, B) -> embedding (T, B, E) -> Stack(cell, lengths) (T, B, D) -> pool (B, D)
                  -> dropout -> linear (B, C) -> softmax

The sentence representation (``model.pool``):

    last  (default)  the output at each sentence's own last word, h(len);  bidirectional:
                     concat(forward h at t = len, backward h at t = 1), i.e. the final state
                     of each direction after reading the whole sentence (Tai et al. 2015)
    mean / max       mean or max of the outputs over the sentence's valid steps

Ragged batches go through the stack's ``lengths`` argument (Stack freezes a sequence's state
past its length and the reverse direction reads only the valid part), so padding never
changes a prediction. Loss: cross-entropy; metric: accuracy (``main_metric``).

Data (``--data PATH``), ``data.format = auto | tsv | sst``; auto looks at the first
non-blank line of a file: ``(`` means SST trees, anything else ``sentence<TAB>label``.

- **tsv**: one ``sentence<TAB>label`` per line, split on the last TAB (the UCI Sentiment
  Labelled Sentences of Kotzias et al. 2015 are in this form); blank lines are skipped, a
  line without a TAB, with an empty sentence or an empty label is an error naming
  ``file:line``. Labels are any strings; the classes are the sorted distinct training labels
  (numerically when all are integers), saved in the run's ``task_state.json``. Sentences are
  split into words by a small PTB-like tokenizer
  (:func:`rnnlab.data.tokenize.tokenize_sentiment`: words, ``n't``/``'s`` clitics, each
  punctuation mark) and lowercased (``data.lowercase``).
- **sst**: Stanford Sentiment Treebank bracketed trees (:mod:`rnnlab.data.trees`); the
  sentence is the leaves, its label the root's. Fine-grained (5 classes: very negative ...
  very positive) by default; ``data.binary=true`` is the SST-2 protocol: neutral (2) dropped,
  0-1 -> negative, 3-4 -> positive. ``data.phrases=true`` also trains on every labelled
  phrase (each subtree's words and label, duplicates included); valid/test stay sentences.

PATH is a file or a directory. A directory holding ``train``, ``dev`` and ``test`` files
(``.txt`` or ``.tsv``; the SST folder) uses that split. Otherwise a directory means every
``*.tsv`` and ``*_labelled.txt`` file in it (the UCI folder: amazon, imdb and yelp
combined), read in name order; a single file or such a directory is split 80/10/10
(``data.valid_fraction``, ``data.test_fraction``) by a shuffle seeded with
``data.split_seed`` -- the same split on every run and machine, whatever ``train.seed``.

The vocabulary is the training split's words seen at least ``data.min_count`` times
(default 2, so the ``<unk>`` embedding is trained on the rare words); other words are
``<unk>``. Embeddings are learned from scratch (no GloVe).

Training batches are windows of the length-sorted training set at a random start (similar
lengths, little padding; every sentence equally likely), drawn by ``train.seed``.

Commands:

    rnnlab train sentiment --data data/sst                          # 5 classes
    rnnlab train sentiment --data data/sst --set data.binary=true   # SST-2
    rnnlab train sentiment --data data/sst --config full            # + phrases
    rnnlab train sentiment --data data/sentiment_labelled_sentences
    rnnlab predict runs/sentiment "a great movie" "awful"     # one label per line

Preset ``full`` (SST folders only): ``data.phrases=true``, 16000 steps, cosine learning-rate
decay -- about 8 minutes instead of 3.

Measured results: ``docs/results.md``, section sentiment.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from ..cells import CELL_NAMES
from ..config import ConfigError
from ..data.text import DataError, read_text
from ..data.tokenize import tokenize_sentiment
from ..data.trees import iter_trees
from ..data.tsv import read_labelled
from ..data.vocab import PAD, UNK, Vocab
from ..models.classifier import SentenceClassifier
from .base import Task, TaskError

__all__ = ["Sentiment", "SentimentModel", "SentimentData", "sst_label", "SST_FINE", "SST_BINARY"]

SST_FINE = ["very negative", "negative", "neutral", "positive", "very positive"]
SST_BINARY = ["negative", "positive"]
SPLIT_NAMES = {"train": ("train",), "valid": ("dev", "valid"), "test": ("test",)}
SPECIALS = (PAD, UNK)

#: the sentiment tokenizer (moved to :func:`rnnlab.data.tokenize.tokenize_sentiment`)
tokenize = tokenize_sentiment

# --- data -----------------------------------------------------------------------------------


def sst_label(label: int, binary: bool) -> int | None:
    """The class of an SST label 0..4: itself, or for ``binary`` 0-1 -> 0, 3-4 -> 1 and
    neutral 2 -> None (dropped)."""
    if not binary:
        return label
    return None if label == 2 else int(label > 2)


def _detect(path: Path) -> Literal["tsv", "sst"]:
    """SST when the first non-blank line starts with '(', else tsv."""
    for line in read_text(path).split("\n"):
        if line.strip():
            return "sst" if line.lstrip().startswith("(") else "tsv"
    raise DataError(f"{path}: no data (only blank lines)")


def _split_files(folder: Path) -> dict[str, Path] | None:
    """{"train": file, "valid": file, "test": file} for a folder with a given split."""
    def find(names):
        for name in names:
            for ext in (".txt", ".tsv"):
                if (folder / (name + ext)).is_file():
                    return folder / (name + ext)
        return None

    if find(SPLIT_NAMES["train"]) is None:
        return None
    files = {split: find(names) for split, names in SPLIT_NAMES.items()}
    missing = [SPLIT_NAMES[s][0] for s, f in files.items() if f is None]
    if missing:
        raise DataError(f"data folder {str(folder)!r} has a train file but no "
                        f"{' or '.join(missing)} file; a given split needs train, dev and test "
                        f"(.txt or .tsv)")
    return files


# --- task -----------------------------------------------------------------------------------


@dataclass
class SentimentModel:
    cell: str = "lstm"
    embed: int = 100
    hidden: int = 150          # per direction
    num_layers: int = 1
    bidirectional: bool = True
    pool: Literal["last", "mean", "max"] = "last"
    dropout: float = 0.5       # on the embeddings, between layers, and before the linear


@dataclass
class SentimentData:
    path: str | None = None    # a file or folder (--data PATH); see the module docstring
    format: Literal["auto", "tsv", "sst"] = "auto"
    binary: bool = False       # sst: SST-2 (drop neutral, 0-1 negative, 3-4 positive)
    phrases: bool = False      # sst: also train on every labelled subtree
    lowercase: bool = True
    min_count: int = 2         # training-split count for a word to get its own embedding
    valid_fraction: float = 0.1   # only where PATH has no train/dev/test files
    test_fraction: float = 0.1
    split_seed: int = 1234


Example = tuple[list[str], str]          # (words, label name)


class Sentiment(Task):
    name = "sentiment"
    description = ("sentence sentiment (many-to-one): BiLSTM over words, last states -> "
                   "softmax; SST trees (5-class or binary) or sentence<TAB>label files; "
                   "accuracy")
    ModelConfig, DataConfig = SentimentModel, SentimentData
    main_metric = "accuracy"
    uses_data_file = True
    # threads=1: the setting every figure in docs/results.md was measured with
    train_defaults = dict(steps=3000, batch_size=32, lr=2e-3, clip_norm=5.0,
                          eval_every=250, checkpoint_every=1000, threads=1)
    presets = {"full": ["data.phrases=true", "train.steps=16000", "train.lr_decay=cosine",
                        "train.eval_every=1000"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        self._check_config()
        self.splits: dict[str, tuple[list[Tensor], Tensor]] | None = None
        self._train_order: Tensor | None = None          # training indices sorted by length
        if state is None:
            examples, self.format, sentences = self._read()
            self.labels = self._label_names(examples["train"])
            counts = Counter(w for words in sentences for w in words)
            self.vocab = Vocab.build(counts, cfg.data.min_count, SPECIALS, order="count")
        else:
            self._load_state(state)
            examples = None
        self.words, self.index = self.vocab.to_list(), self.vocab.index
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        if examples is not None:
            self.splits = self._encode_splits(examples)

    def _check_config(self) -> None:
        d, m = self.cfg.data, self.cfg.model
        if d.min_count < 1:
            raise ConfigError(f"data.min_count must be at least 1, got {d.min_count}")
        if not (0 < d.valid_fraction < 1 and 0 < d.test_fraction < 1
                and d.valid_fraction + d.test_fraction < 1):
            raise ConfigError(f"data.valid_fraction and data.test_fraction must lie in (0, 1) "
                              f"with a sum below 1, got {d.valid_fraction} and "
                              f"{d.test_fraction}")
        if m.cell not in CELL_NAMES:
            raise ConfigError(f"unknown model.cell {m.cell!r}; valid cells: "
                              f"{', '.join(CELL_NAMES)}")
        if m.embed < 1 or m.hidden < 1 or m.num_layers < 1:
            raise ConfigError("model.embed, model.hidden and model.num_layers must be at "
                              "least 1")
        if not 0 <= m.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {m.dropout}")

    def _load_state(self, state: dict) -> None:
        words, labels, fmt = state.get("words"), state.get("labels"), state.get("format")
        try:
            vocab = Vocab.from_list(words, SPECIALS)
        except ValueError:
            vocab = None
        if (vocab is None or not isinstance(labels, list) or len(labels) < 2
                or fmt not in ("tsv", "sst")):
            raise TaskError("task state needs 'words' (starting <pad>, <unk>), 'labels' "
                            "(two or more) and 'format' (tsv or sst)")
        self.vocab, self.labels, self.format = vocab, labels, fmt

    def state_dict(self) -> dict:
        return {"format": self.format, "labels": self.labels, "words": self.vocab.to_list()}

    # --- reading ---

    def _read(self) -> tuple[dict[str, list[Example]], str, list[list[str]]]:
        """{"train"|"valid"|"test": [(words, label), ...]}, the format read, and the words
        of the training sentences (not phrases), which the vocabulary is counted over."""
        d = self.cfg.data
        if d.path is None:
            raise DataError("sentiment reads its data from a file or folder: --data PATH (a "
                            "sentence<TAB>label file, a folder of *.tsv / *_labelled.txt "
                            "files, or an SST folder with train.txt, dev.txt, test.txt)")
        path = Path(d.path)
        if not path.exists():
            raise DataError(f"data path {str(path)!r} does not exist")
        files = _split_files(path) if path.is_dir() else None
        if files is not None:                            # given split
            fmt = self._format(files["train"])
            splits, sentences = {}, []
            for split, file in files.items():
                splits[split] = self._examples(file, fmt, split == "train",
                                               sentences if split == "train" else None)
            for split, examples in splits.items():
                if not examples:
                    raise DataError(f"{files[split]}: no examples left (binary SST drops "
                                    f"the neutral sentences)")
        else:
            sources = [path] if path.is_file() else self._folder_files(path)
            fmt = self._format(sources[0])
            if fmt == "sst" and d.phrases:
                raise ConfigError("data.phrases needs an SST folder with train.txt, dev.txt "
                                  "and test.txt (the phrases of the training trees only)")
            rows: list[Example] = []
            for source in sources:
                if self._format(source) != fmt:
                    raise DataError(f"{source}: format {self._format(source)} differs from "
                                    f"{fmt} of {sources[0]}")
                rows += self._examples(source, fmt, False)
            splits = self._split(rows, " + ".join(str(s) for s in sources))
            sentences = [words for words, _ in splits["train"]]
        if fmt == "tsv" and (d.binary or d.phrases):
            raise ConfigError("data.binary and data.phrases apply to SST trees only; this "
                              "data is sentence<TAB>label")
        return splits, fmt, sentences

    def _format(self, path: Path) -> str:
        fmt = self.cfg.data.format
        return _detect(path) if fmt == "auto" else fmt

    @staticmethod
    def _folder_files(folder: Path) -> list[Path]:
        files = sorted({*folder.glob("*.tsv"), *folder.glob("*_labelled.txt")})
        files = [f for f in files if f.is_file()]
        if not files:
            raise DataError(f"data folder {str(folder)!r} holds no train/dev/test files and no "
                            f"*.tsv or *_labelled.txt files")
        return files

    def _examples(self, path: Path, fmt: str, phrases: bool,
                  sentences: list[list[str]] | None = None) -> list[Example]:
        """The examples of one file; the words of each whole sentence are also appended to
        ``sentences`` when given."""
        d = self.cfg.data
        out = []
        if fmt == "tsv":
            for sentence, label, _ in read_labelled(path):
                # not empty: the sentence is not blank, and every mark is a word
                words = tokenize_sentiment(sentence, d.lowercase)
                out.append((words, label))
                if sentences is not None:
                    sentences.append(words)
            return out
        names = SST_BINARY if d.binary else SST_FINE
        for lineno, tree in iter_trees(path):
            if sentences is not None and sst_label(tree.label, d.binary) is not None:
                words = tree.words()             # the sentences kept (binary: not neutral)
                sentences.append([w.lower() for w in words] if d.lowercase else words)
            for node in (tree.nodes() if phrases and d.phrases else [tree]):
                if not isinstance(node.label, int) or not 0 <= node.label <= 4:
                    raise DataError(f"{path}:{lineno}: SST label {node.label} is outside "
                                    f"0..4")
                cls = sst_label(node.label, d.binary)
                if cls is not None:
                    words = node.words()
                    out.append(([w.lower() for w in words] if d.lowercase else words,
                                names[cls]))
        return out

    def _split(self, rows: list[Example], source: str) -> dict[str, list[Example]]:
        """Seeded shuffle, then the first test_fraction is test, the next valid, rest train."""
        d = self.cfg.data
        n = len(rows)
        n_test, n_valid = int(n * d.test_fraction), int(n * d.valid_fraction)
        if n_test < 1 or n_valid < 1 or n - n_test - n_valid < 1:
            raise DataError(f"{source}: {n} examples are too few for a "
                            f"{1 - d.valid_fraction - d.test_fraction:.0%}/"
                            f"{d.valid_fraction:.0%}/{d.test_fraction:.0%} split")
        order = list(range(n))
        random.Random(d.split_seed).shuffle(order)
        test, valid = order[:n_test], order[n_test:n_test + n_valid]
        train = order[n_test + n_valid:]
        return {name: [rows[i] for i in part]
                for name, part in (("train", train), ("valid", valid), ("test", test))}

    def _label_names(self, train: list[Example]) -> list[str]:
        if self.format == "sst":
            return SST_BINARY if self.cfg.data.binary else SST_FINE
        names = sorted({label for _, label in train})
        if all(re.fullmatch(r"[+-]?\d+", name) for name in names):
            names.sort(key=int)
        if len(names) < 2:
            raise DataError(f"the training split has a single label {names[0]!r}; "
                            f"classification needs two or more")
        return names

    def _encode_splits(self, examples: dict[str, list[Example]]):
        splits = {}
        for split, rows in examples.items():
            unknown = sorted({label for _, label in rows} - set(self.label_index))
            if unknown:
                raise DataError(f"{split} split has label(s) {', '.join(map(repr, unknown))} "
                                f"that the model does not know; its labels: "
                                f"{', '.join(map(repr, self.labels))}")
            ids = [self.encode(words) for words, _ in rows]
            y = torch.tensor([self.label_index[label] for _, label in rows])
            splits[split] = (ids, y)
        return splits

    def _ensure_data(self):
        if self.splits is None:        # a reloaded run: read the data again, keep the vocab
            examples, fmt, _ = self._read()
            if fmt != self.format:
                raise DataError(f"the run was trained on {self.format} data, "
                                f"{self.cfg.data.path!r} is {fmt}")
            self.splits = self._encode_splits(examples)
        return self.splits

    def encode(self, words: list[str]) -> Tensor:
        return torch.tensor(self.vocab.encode(words, UNK), dtype=torch.long)

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return SentenceClassifier(len(self.words), len(self.labels), m.cell, m.embed,
                                  m.hidden, m.num_layers, m.bidirectional, m.pool, m.dropout)

    @staticmethod
    def _pad(seqs: list[Tensor], device):
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        if not seqs or max(len(s) for s in seqs) == 0:
            tokens = torch.zeros(1, len(seqs), dtype=torch.long)
        else:
            tokens = pad_sequence(seqs, padding_value=0)           # (T, B)
        return tokens.to(device), lengths.to(device)

    def batch(self, generator, batch_size, device):
        """``batch_size`` training sentences of similar length, so that little padding is
        computed: a window of the length-sorted order (ties in a fixed random order) at a
        random start; windows at both ends are cut short, so that every sentence is drawn
        with the same probability. Returns tokens (T, B), lengths (B,), labels (B,)."""
        ids, y = self._ensure_data()["train"]
        if self._train_order is None:
            shuffled = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))
            lengths = torch.tensor([len(ids[i]) for i in shuffled.tolist()])
            self._train_order = shuffled[torch.sort(lengths, stable=True).indices]
        N = len(ids)
        start = int(torch.randint(1 - batch_size, N, (1,), generator=generator))
        pick = self._train_order[max(start, 0):min(start + batch_size, N)]
        tokens, lengths = self._pad([ids[i] for i in pick.tolist()], device)
        return tokens, lengths, y[pick].to(device)

    def loss(self, model, batch):
        tokens, lengths, y = batch
        logits = model(tokens, lengths)                               # (B, C)
        loss = F.cross_entropy(logits, y)
        return loss, {"accuracy": (logits.argmax(1) == y).float().mean().item()}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        """Mean cross-entropy and accuracy over every sentence of the split (batched by
        length so that little padding is computed)."""
        ids, y = self._ensure_data()[split]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), 256):
            chunk = order[start:start + 256]
            tokens, lengths = self._pad([ids[i] for i in chunk], device)
            target = y[chunk].to(device)
            logits = model(tokens, lengths)
            loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
            correct += (logits.argmax(1) == target).sum().item()
        return {"loss": loss_sum / len(ids), "accuracy": correct / len(ids)}

    @torch.no_grad()
    def predict(self, model, inputs, device):
        """The predicted label of each raw sentence (tokenized like the training text)."""
        if not inputs:
            raise TaskError("predict needs at least one sentence")
        seqs = [self.encode(tokenize_sentiment(text, self.cfg.data.lowercase))
                for text in inputs]
        model.eval()
        tokens, lengths = self._pad(seqs, device)
        return [self.labels[i] for i in model(tokens, lengths).argmax(1).tolist()]
