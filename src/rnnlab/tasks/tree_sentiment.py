"""Sentiment over parse trees with recursive nets (book 10.6; Tai et al. 2015): the Stanford
Sentiment Treebank, every phrase of every sentence labelled.

    rnnlab train tree-sentiment --data data/sst          5 classes (fine-grained)
    rnnlab train tree-sentiment --data data/sst --set data.binary=true
    rnnlab predict RUN "(2 (2 a) (3 (3 great) (2 film)))"            root label of a tree

Data: a folder with ``train.txt``, ``dev.txt`` and ``test.txt`` in the PTB bracketed format
(:mod:`rnnlab.data.trees`), labels 0..4. Binary (SST-2 protocol): labels 0-1 -> negative,
3-4 -> positive; neutral nodes carry no loss and trees with a neutral root are dropped.
Words are lower-cased; the vocabulary is the training words (``<unk>`` for the others).

Model: :class:`rnnlab.models.recursive.TreeClassifier` (Child-Sum Tree-LSTM by default;
``model.cell=nary`` for the binary N-ary Tree-LSTM, ``rnn`` for the plain recursive net),
trained with cross-entropy over every labelled node, batched level by level over many trees.

Metrics: ``accuracy`` (root: the sentence label, the number papers report) and
``all_node_accuracy`` (every labelled phrase). Tai et al. 2015 (GloVe 300-d vectors,
fine-tuned): Child-Sum 51.0 fine / 88.0 binary, N-ary (constituency) 51.0 / 88.0; LSTM 46.4 /
84.9. Our embeddings are learned from scratch on 8,544 sentences (none can be downloaded),
which costs several points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.nn import functional as F

from ..config import ConfigError
from ..data.text import DataError
from ..data.trees import parse_tree, read_trees
from ..models.recursive import TREE_CELLS, TreeBatch, TreeClassifier
from .base import Task, TaskError

__all__ = ["TreeSentiment", "TreeSentimentModel", "TreeSentimentData"]

FINE = ["very negative", "negative", "neutral", "positive", "very positive"]
BINARY = ["negative", "positive"]
FILES = {"train": "train.txt", "valid": "dev.txt", "test": "test.txt"}


@dataclass
class TreeSentimentModel:
    cell: Literal["childsum", "nary", "rnn"] = "childsum"
    embed: int = 100
    hidden: int = 150
    dropout: float = 0.3


@dataclass
class TreeSentimentData:
    path: str | None = None        # folder with train.txt, dev.txt, test.txt (SST trees)
    binary: bool = False           # SST-2: drop neutral, 0-1 negative, 3-4 positive
    min_count: int = 1             # training words seen fewer times map to <unk>


class TreeSentiment(Task):
    name = "tree-sentiment"
    description = ("SST sentiment with a Tree-LSTM over parse trees (book 10.6; Tai et al. "
                   "2015): root and all-node accuracy, fine-grained or binary")
    ModelConfig, DataConfig = TreeSentimentModel, TreeSentimentData
    main_metric = "accuracy"
    uses_data_file = True
    train_defaults = dict(steps=2500, batch_size=25, lr=2e-3, clip_norm=5.0,
                          weight_decay=0.0, eval_every=500, checkpoint_every=500, threads=1)
    presets = {"full": ["train.steps=12000", "model.hidden=200", "model.embed=200",
                        "train.lr_decay=cosine"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        m, d = cfg.model, cfg.data
        if m.cell not in TREE_CELLS:
            raise ConfigError(f"model.cell must be one of {', '.join(TREE_CELLS)}")
        if not 0 <= m.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
        if d.path is None:
            raise ConfigError("tree-sentiment reads SST trees: pass --data FOLDER holding "
                              "train.txt, dev.txt and test.txt (e.g. data/sst)")
        folder = Path(d.path)
        if not folder.is_dir():
            raise DataError(f"data path {str(folder)!r} is not a folder; tree-sentiment needs "
                            f"a folder with train.txt, dev.txt and test.txt")
        missing = [f for f in FILES.values() if not (folder / f).is_file()]
        if missing:
            raise DataError(f"data folder {str(folder)!r} lacks {', '.join(missing)} "
                            f"(needs train.txt, dev.txt, test.txt in SST bracketed format)")
        self.labels = BINARY if d.binary else FINE
        self.splits = {}
        for split, name in FILES.items():
            trees = read_trees(folder / name)
            for k, tree in enumerate(trees):
                bad = [n.label for n in tree.nodes() if not 0 <= n.label <= 4]
                if bad:
                    raise DataError(f"{folder / name}: tree {k + 1} has label {bad[0]}; SST "
                                    f"labels are 0..4")
            if d.binary:
                trees = [t for t in trees if t.label != 2]
            self.splits[split] = trees
        if state is not None:
            self.vocab = state["vocab"]
        else:
            counts: dict[str, int] = {}
            for tree in self.splits["train"]:
                for word in tree.words():
                    counts[word.lower()] = counts.get(word.lower(), 0) + 1
            self.vocab = ["<unk>"] + sorted(w for w, c in counts.items() if c >= d.min_count)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    def state_dict(self):
        return {"vocab": self.vocab, "labels": self.labels}

    def _word(self, word: str) -> int:
        return self.index.get(word.lower(), 0)

    def _label(self, label: int):
        if not self.cfg.data.binary:
            return label
        return None if label == 2 else int(label > 2)

    def _batch(self, trees, device) -> TreeBatch:
        return TreeBatch.build(trees, self._word, self._label).to(device)

    def build_model(self):
        m = self.cfg.model
        return TreeClassifier(len(self.vocab), len(self.labels), m.cell, m.embed, m.hidden,
                              m.dropout)

    def batch(self, generator, batch_size, device):
        train = self.splits["train"]
        picks = torch.randint(0, len(train), (batch_size,), generator=generator)
        return self._batch([train[i] for i in picks.tolist()], device)

    def loss(self, model, batch):
        logits = model(batch)                                        # (N, C)
        loss = F.cross_entropy(logits, batch.labels, ignore_index=-100)
        roots = logits[batch.roots].argmax(-1) == batch.labels[batch.roots]
        return loss, {"accuracy": roots.float().mean().item()}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        trees = self.splits[split]
        loss_sum = nodes = root_ok = node_ok = 0.0
        for i in range(0, len(trees), 200):
            batch = self._batch(trees[i:i + 200], device)
            logits = model(batch)
            valid = batch.labels != -100
            loss_sum += F.cross_entropy(logits, batch.labels, ignore_index=-100,
                                        reduction="sum").item()
            nodes += valid.sum().item()
            pred = logits.argmax(-1)
            node_ok += ((pred == batch.labels) & valid).sum().item()
            root_ok += (pred[batch.roots] == batch.labels[batch.roots]).sum().item()
        return {"loss": loss_sum / max(nodes, 1), "accuracy": root_ok / len(trees),
                "all_node_accuracy": node_ok / max(nodes, 1)}

    def predict(self, model, inputs, device):
        trees = []
        for k, text in enumerate(inputs, 1):
            try:
                trees.append(parse_tree(text))
            except DataError as e:
                raise TaskError(f"input {k} is not a bracketed tree: {e}") from None
        model.eval()
        with torch.no_grad():
            batch = TreeBatch.build(trees, self._word, lambda _: None).to(device)
            pred = model(batch)[batch.roots].argmax(-1).tolist()
        return [self.labels[p] for p in pred]
