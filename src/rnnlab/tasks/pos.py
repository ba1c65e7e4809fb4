"""Part-of-speech tagging: a bidirectional LSTM tagger over words and characters (many-to-many).

Book section 10.3 (bidirectional RNNs): the tag of word t depends on the whole sentence, so
a forward pass over x(1..t) and a backward pass over x(t..τ) are read together at each t.
The model is the word + character BiLSTM tagger of Plank, Søgaard & Goldberg (2016),
"Multilingual POS tagging with bi-LSTM models and auxiliary loss" (ACL), after Ling et al.
(2015) and Lample et al. (2016):

    c(w)  = [→h_char(last char) ; ←h_char(first char)]     char BiLSTM over w's characters
    x(t)  = [E_word[lower(w_t)] ; c(w_t)]                   (T, B, E + 2 C)
    h(t)  = [→h(t) ; ←h(t)] = BiLSTM(x)(t)                  (T, B, 2 H), ragged lengths
    p(y_t | w_1..w_τ) = softmax(V h(t) + b)                 (T, B, K), K UPOS tags

trained by the mean cross-entropy over the tokens of a batch. The word embedding's key is the
lower-cased word; the characters keep their case (capitals mark proper nouns). Words seen fewer
than ``data.min_count`` times in training share ``<unk>``, and in training each word is also
replaced by ``<unk>`` with probability ``data.word_dropout``, so that the tagger learns to tag
unknown words from their characters. Sentences are batched with others of similar length
(``batch``: a random window of ``train.batch_size`` sentences in length order).

Metric: UPOS accuracy over all tokens of the split (``accuracy``; ``loss`` is the mean
cross-entropy per token).

Data (``--data``): a Universal Dependencies treebank folder holding
``*-ud-train.conllu``, ``*-ud-dev.conllu`` and ``*-ud-test.conllu`` (each plain or ``.gz``;
dev is the valid split), or one CoNLL-U file, split by sentences into contiguous 90/5/5
train/valid/test parts. Format and reader: :mod:`rnnlab.data.conllu` (FORM and UPOS are used;
comments, multiword-token and empty-node lines are skipped; malformed lines are errors
naming FILE:LINE). The vocabularies of words, characters and tags are saved with the run.

    rnnlab train pos --data data/ud_english_ewt
    rnnlab evaluate runs/pos
    rnnlab predict runs/pos "The cat sat on the mat ." "I can can a can ."
        -> The/DET cat/NOUN sat/VERB on/ADP the/DET mat/NOUN ./PUNCT  (one line per input)

``predict`` splits each input on whitespace (give punctuation as separate tokens).

Measured results: ``docs/results.md``, section pos.

``model.char_model=cnn`` swaps the char BiLSTM for a width-3 char CNN with max pooling
(dos Santos & Zadrozny 2014); it is tested but was not measured on EWT.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..cells import CELL_NAMES
from ..config import ConfigError
from ..data import vocab as _vocab
from ..data.conllu import Sentence, read_conllu, ud_split_files
from ..data.text import DataError
from ..data.vocab import Vocab
from ..models.tagger import TagBatch, Tagger
from .base import Task, TaskError

__all__ = ["Pos", "PosModel", "PosData"]

PAD, UNK = 0, 1                     # ids shared by the word and character vocabularies
SPECIALS = [_vocab.PAD, _vocab.UNK]


@dataclass
class PosModel:
    cell: str = "lstm"
    word_embed: int = 100      # E, word-embedding size
    char_embed: int = 32       # character-embedding size
    char_model: Literal["lstm", "cnn"] = "lstm"   # character features: BiLSTM or CNN
    char_hidden: int = 64      # C, units of each direction of the char BiLSTM (CNN: channels);
                               # 0 = words only
    hidden: int = 128          # H, units of each direction of the word BiLSTM
    num_layers: int = 1
    bidirectional: bool = True  # False: the word LSTM reads forwards only (book 10.3's contrast)
    dropout: float = 0.33      # on the word features, between layers and before the softmax


@dataclass
class PosData:
    path: str | None = None    # UD folder (*-ud-train/dev/test.conllu[.gz]) or a .conllu file
    min_count: int = 2         # training-word count below which a word is <unk>
    word_dropout: float = 0.05  # training: a word's embedding is <unk> with this probability
    max_word_chars: int = 20   # longer words keep their first and last max_word_chars/2 chars
    eval_batch: int = 256      # sentences per batch when scoring a split


class Encoded(NamedTuple):
    """A split as flat token arrays; sentence i is tokens offsets[i]:offsets[i+1]."""

    words: Tensor              # (N,) word ids
    forms: Tensor              # (N,) row of each token's form in the split's char table
    tags: Tensor               # (N,) tag ids
    offsets: Tensor            # (S + 1,)
    char_table: Tensor         # (F, max_word_chars) character ids of the split's forms
    char_lengths: Tensor       # (F,)


class Pos(Task):
    name = "pos"
    description = ("part-of-speech tagging (many-to-many): word + char BiLSTM tagger on "
                   "CoNLL-U (UD English EWT); UPOS accuracy, and predict")
    ModelConfig, DataConfig = PosModel, PosData
    main_metric = "accuracy"
    uses_data_file = True
    train_defaults = dict(steps=4000, batch_size=32, lr=2e-3, clip_norm=5.0,
                          eval_every=500, checkpoint_every=1000, threads=1)
    presets = {"full": ["train.steps=8000", "train.lr_decay=cosine", "train.eval_every=1000",
                        "train.checkpoint_every=2000"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d, m = cfg.data, cfg.model
        if d.min_count < 1:
            raise ConfigError(f"data.min_count must be at least 1, got {d.min_count}")
        if not 0.0 <= d.word_dropout < 1.0:
            raise ConfigError(f"data.word_dropout must lie in [0, 1), got {d.word_dropout}")
        if d.max_word_chars < 2:
            raise ConfigError(f"data.max_word_chars must be at least 2, got {d.max_word_chars}")
        if d.eval_batch < 1:
            raise ConfigError(f"data.eval_batch must be at least 1, got {d.eval_batch}")
        if m.cell not in CELL_NAMES:
            raise ConfigError(f"model.cell must be one of {', '.join(CELL_NAMES)}, got {m.cell!r}")
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {m.dropout}")
        for key in ("word_embed", "hidden", "num_layers"):
            if getattr(m, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(m, key)}")
        if m.char_hidden < 0 or (m.char_hidden > 0 and m.char_embed < 1):
            raise ConfigError("model.char_hidden must be >= 0 (0 = no character features) "
                              "and model.char_embed >= 1 when it is used")
        self.splits: dict[str, Encoded] | None = None
        self._train_order: Tensor | None = None          # training sentences by length
        if state is None:
            sentences = self._read()
            self._build_vocab(sentences)
        else:
            vocabs = []
            for key in ("words", "chars", "tags"):
                try:
                    vocabs.append(Vocab.from_list(state.get(key)))
                except ValueError:
                    raise TaskError(f"task state has no {key!r} vocabulary") from None
            self.word_vocab, self.char_vocab, self.tag_vocab = vocabs
        self.words, self.word_index = self.word_vocab.to_list(), self.word_vocab.index
        self.chars, self.char_index = self.char_vocab.to_list(), self.char_vocab.index
        self.tags, self.tag_index = self.tag_vocab.to_list(), self.tag_vocab.index
        if state is None:
            self._encode_splits(sentences)

    # --- data ---

    def _read(self) -> dict[str, list[Sentence]]:
        """{"train", "valid", "test"} sentences of ``data.path`` (a UD folder or one file)."""
        if self.cfg.data.path is None:
            raise DataError("task 'pos' needs CoNLL-U data: --data DIR, a UD treebank folder "
                            "with *-ud-train/dev/test.conllu[.gz] (e.g. "
                            "data/ud_english_ewt), or --data FILE.conllu "
                            "(split 90/5/5 by sentences)")
        path = Path(self.cfg.data.path)
        if path.is_dir():
            files = ud_split_files(path)
            return {"train": read_conllu(files["train"]), "valid": read_conllu(files["dev"]),
                    "test": read_conllu(files["test"])}
        sentences = read_conllu(path)
        n_valid = n_test = len(sentences) // 20
        if n_valid < 1:
            raise DataError(f"{path}: only {len(sentences)} sentences; splitting one file "
                            f"90/5/5 needs at least 20 (or give a folder with "
                            f"*-ud-train/dev/test.conllu)")
        n_train = len(sentences) - n_valid - n_test
        return {"train": sentences[:n_train], "valid": sentences[n_train:n_train + n_valid],
                "test": sentences[n_train + n_valid:]}

    def _build_vocab(self, sentences: dict[str, list[Sentence]]) -> None:
        """Words (lower-cased, count >= min_count) and characters from the training split;
        tags from all splits (the label set, so that every gold tag has an output)."""
        counts = Counter(w.lower() for s in sentences["train"] for w in s.words)
        self.word_vocab = Vocab.build(counts, self.cfg.data.min_count, SPECIALS)
        self.char_vocab = Vocab.build(Counter(c for s in sentences["train"] for w in s.words
                                              for c in w), 1, SPECIALS)
        self.tag_vocab = Vocab(sorted({t for split in sentences.values() for s in split
                                       for t in s.tags}))

    def _ensure_data(self) -> dict[str, Encoded]:
        if self.splits is None:       # a reloaded run: read the data, keep the vocabularies
            self._encode_splits(self._read())
        return self.splits

    def _encode_splits(self, sentences: dict[str, list[Sentence]]) -> None:
        self.splits = {name: self._encode(split) for name, split in sentences.items()}

    def _encode(self, sentences: list[Sentence]) -> Encoded:
        unknown = sorted({t for s in sentences for t in s.tags} - set(self.tag_index))
        if unknown:
            raise DataError(f"{self.cfg.data.path}: UPOS tag(s) {', '.join(unknown)} are not "
                            f"among the model's tags: {', '.join(self.tags)}")
        forms: dict[str, int] = {}
        words, form_ids, tags, offsets = [], [], [], [0]
        for s in sentences:
            for w, t in zip(s.words, s.tags):
                words.append(self.word_index.get(w.lower(), UNK))
                form_ids.append(forms.setdefault(w, len(forms)))
                tags.append(self.tag_index[t])
            offsets.append(len(words))
        table, lengths = self.char_table(list(forms))
        return Encoded(torch.tensor(words), torch.tensor(form_ids), torch.tensor(tags),
                       torch.tensor(offsets), table, lengths)

    def char_table(self, forms: list[str]) -> tuple[Tensor, Tensor]:
        """Character ids (F, max_word_chars), PAD-padded, and lengths (F,) of word forms; a
        longer form keeps its first and last max_word_chars/2 characters (prefix, suffix)."""
        L = self.cfg.data.max_word_chars
        table = torch.full((len(forms), L), PAD, dtype=torch.long)
        lengths = torch.empty(len(forms), dtype=torch.long)
        for i, form in enumerate(forms):
            if len(form) > L:
                form = form[:L // 2] + form[len(form) - (L - L // 2):]
            table[i, :len(form)] = torch.tensor([self.char_index.get(c, UNK) for c in form])
            lengths[i] = len(form)
        return table, lengths

    def state_dict(self) -> dict:
        return {"words": self.word_vocab.to_list(), "chars": self.char_vocab.to_list(),
                "tags": self.tag_vocab.to_list()}

    # --- batches ---

    def _collate(self, split: Encoded, sentences: list[int], device,
                 generator: torch.Generator | None = None) -> TagBatch:
        """Pad the given sentences into a time-major batch; with a ``generator`` (training),
        word dropout replaces each word id by UNK with probability data.word_dropout."""
        starts = split.offsets[sentences]                                # (B,)
        lengths = split.offsets[[i + 1 for i in sentences]] - starts     # (B,)
        T, B = int(lengths.max()), len(sentences)
        steps = torch.arange(T).unsqueeze(1)                             # (T, 1)
        valid = steps < lengths                                          # (T, B)
        index = (starts + steps).clamp(max=len(split.words) - 1)         # (T, B) token rows
        words = torch.where(valid, split.words[index], PAD)              # (T, B)
        if generator is not None and self.cfg.data.word_dropout > 0:
            drop = torch.rand(T, B, generator=generator) < self.cfg.data.word_dropout
            words = torch.where(drop & valid, UNK, words)
        tags = torch.where(valid, split.tags[index], -100)               # (T, B)
        forms, types = torch.unique(split.forms[index[valid]], return_inverse=True)  # (U,)
        types_tb = torch.zeros(T, B, dtype=torch.long)
        types_tb[valid] = types                                          # (T, B)
        char_lengths = split.char_lengths[forms]                         # (U,)
        chars = split.char_table[forms, :int(char_lengths.max())].t()    # (L, U)
        return TagBatch(words.to(device), lengths.to(device), types_tb.to(device),
                        chars.contiguous().to(device), char_lengths.to(device), tags.to(device))

    def _length_order(self, name: str) -> Tensor:
        """Sentence indices of a split sorted by length (ties in a fixed random order)."""
        split = self._ensure_data()[name]
        lengths = split.offsets[1:] - split.offsets[:-1]
        shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
        return shuffled[torch.sort(lengths[shuffled], stable=True).indices]

    def batch(self, generator, batch_size, device):
        """``batch_size`` training sentences of similar length: a window of the length-sorted
        order at a random start (windows at both ends are cut short, so that every sentence
        is drawn with the same probability)."""
        if self._train_order is None:
            self._train_order = self._length_order("train")
        order = self._train_order
        N = len(order)
        start = int(torch.randint(1 - batch_size, N, (1,), generator=generator))
        window = order[max(start, 0):min(start + batch_size, N)].tolist()
        return self._collate(self.splits["train"], window, device, generator)

    # --- loss and metrics ---

    def loss(self, model, batch):
        logits = model(batch)                                            # (T, B, K)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tags.flatten(), ignore_index=-100)
        mask = batch.tags != -100
        correct = (logits.argmax(-1) == batch.tags)[mask].float().mean().item()
        return loss, {"accuracy": correct}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        """Mean cross-entropy per token and UPOS accuracy over every token of the split."""
        data = self._ensure_data()[split]
        order = self._length_order(split).tolist()
        total, correct, n = 0.0, 0, 0
        for i in range(0, len(order), self.cfg.data.eval_batch):
            batch = self._collate(data, order[i:i + self.cfg.data.eval_batch], device)
            logits = model(batch)                                        # (T, B, K)
            mask = batch.tags != -100
            total += F.cross_entropy(logits[mask], batch.tags[mask], reduction="sum").item()
            correct += int((logits.argmax(-1) == batch.tags)[mask].sum())
            n += int(mask.sum())
        return {"loss": total / n, "accuracy": correct / n}

    # --- model, prediction ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return Tagger(len(self.words), len(self.chars), len(self.tags), m.cell, m.word_embed,
                      m.char_embed, m.char_model, m.char_hidden, m.hidden, m.num_layers,
                      m.dropout, m.bidirectional)

    @torch.no_grad()
    def predict(self, model, inputs, device):
        """Tag whitespace-tokenized sentences: "The cat" -> "The/DET cat/NOUN"."""
        sentences = []
        for k, text in enumerate(inputs, start=1):
            tokens = text.split()
            if not tokens:
                raise TaskError(f"input {k} is empty; give a sentence of whitespace-separated "
                                f"tokens")
            sentences.append(Sentence(tuple(tokens), tuple(self.tags[0] for _ in tokens)))
        model.eval()
        encoded = self._encode(sentences)
        batch = self._collate(encoded, list(range(len(sentences))), device)
        predicted = model(batch).argmax(-1).cpu()                        # (T, B)
        return [" ".join(f"{w}/{self.tags[int(predicted[t, b])]}" for t, w in enumerate(s.words))
                for b, s in enumerate(sentences)]
