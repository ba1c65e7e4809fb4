"""Machine translation with an encoder-decoder, book section 10.4 (Cho et al. 2014; Sutskever
et al. 2014), attention (Bahdanau et al. 2015) and scheduled sampling (Bengio et al. 2015).

    source tokens (S, B) -> Encoder: embedding -> bidirectional LSTM   memory (S, B, 2H_e),
                                                                       context (B, 2H_e)
    BOS y1 .. y_{T-1} (T, B) -> Decoder(context, memory) -> logits (T, B, V)  for y1 .. EOS

(:mod:`rnnlab.models.seq2seq`). Trained with per-token cross-entropy; scored by corpus BLEU.

Data (``--data FILE``, plain or ``.gz``): UTF-8, one pair a line, ``source<TAB>target``;
columns after the second are ignored (Tatoeba/manythings ``English<TAB>French<TAB>
attribution``), blank lines are skipped, and a line without a TAB or with an empty side is
an error naming ``file:line``. Direction: column 1 -> column 2 (eng -> fra on Tatoeba) by
default; ``data.reverse=true`` translates column 2 -> column 1 (fra -> eng).

Text processing. Each side is NFKC-normalised (French typographic spaces become plain
spaces), curly apostrophes become ``'`` and everything is lower-cased. Tokens are numbers
(``3.5``), words with a trailing apostrophe glued on (French elision ``j'`` ``ai``, and so
also English ``i'`` ``m``, ``don'`` ``t``), plain words, and single punctuation marks. The
detokeniser joins tokens with spaces, except after a token ending in ``'`` and around ``-``
and before closing punctuation (``qu'`` ``est`` ``-`` ``ce`` ``?`` -> ``qu'est-ce?``).

Filters, in this order: ``data.prefixes`` keeps pairs whose *first column* (English on
Tatoeba, whatever the direction), normalised, starts with one of the prefixes: "tutorial"
= the PyTorch seq2seq tutorial's list ("i am ", "i'm ", "he is ", "he's ", "she is ",
"she's ", "you are ", "you're ", "we are ", "we're ", "they are ", "they're "), "none" = no
filter, or your own ``|``-separated list; then ``data.max_len`` (tokens on each side); then
``data.max_pairs`` (the first N pairs left, in file order; 0 = all). On the Tatoeba file the
default filters keep 11,581 pairs with 7,235 distinct English sentences.

Split (deterministic): pairs are grouped by source sentence, the distinct sources are
shuffled with ``data.seed``, the first ``data.eval_size`` form the valid split, the next
``eval_size`` the test split and the rest the training split, so no test source is ever
seen in training. Vocabularies come from the training split: tokens seen at least
``data.min_count`` times, plus <pad> <unk> <bos> <eos>; they are saved with the run.

Metrics (``evaluate``): ``loss`` (cross-entropy per target token, teacher forcing), ``acc``
(teacher-forced next-token accuracy), ``bleu`` = sacrebleu ``corpus_bleu`` (13a tokeniser)
of the detokenised greedy translations of each distinct source against *all* its
translations in the split as references (Tatoeba often has several), lower-cased; on the
test split also ``beam_bleu``, the same with beam search (``model.beam`` > 1). Training
logs ``acc`` and ``tf`` (the teacher-forcing ratio in force).

Teacher forcing / scheduled sampling: at training step i the decoder is fed the ground truth
with probability ε_i = ``teacher_forcing_ratio(model.sampling_schedule, i, k, c, min)``
(Bengio et al. 2015), with k = ``model.teacher_forcing`` for "constant" (default 1.0: plain
teacher forcing, the fused fast path when there is no attention) and k = ``model.schedule_k``
otherwise; otherwise a token sampled from its own previous prediction
(``model.sample_own=false``: the argmax).

Commands:

    rnnlab train translate --data data/tatoeba_eng_fra/fra.txt.gz
    rnnlab train translate --data FILE --set model.attention=false model.condition=both
    rnnlab train translate --data FILE --set model.sampling_schedule=inverse-sigmoid
    rnnlab train translate --data FILE --config full           (bigger; about 14 minutes)
    rnnlab translate runs/translate "i am cold ." "she is happy ." --json   (beam search)
    rnnlab evaluate runs/translate --json

Measured results: ``docs/results.md``, section translate.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data import vocab as _vocab
from ..data.text import DataError
from ..data.tokenize import detokenize_translation, normalize_translation, tokenize_translation
from ..data.tsv import read_pairs
from ..data.vocab import Vocab
from ..models.seq2seq import Decoder, Encoder, Seq2Seq, teacher_forcing_ratio
from .base import Task, TaskError

__all__ = ["Translate", "TranslateModel", "TranslateData", "TUTORIAL_PREFIXES"]

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = [_vocab.PAD, _vocab.UNK, _vocab.BOS, _vocab.EOS]
TUTORIAL_PREFIXES = ("i am ", "i'm ", "he is ", "he's ", "she is ", "she's ", "you are ",
                     "you're ", "we are ", "we're ", "they are ", "they're ")
#: the translate text processing (moved to :mod:`rnnlab.data.tokenize`)
normalize = normalize_translation
tokenize = tokenize_translation
detokenize = detokenize_translation


@dataclass
class TranslateModel:
    cell: str = "lstm"
    embed: int = 64
    encoder_hidden: int = 64          # per direction; memory and context have 2x this
    hidden: int = 128                 # decoder
    encoder_layers: int = 1
    decoder_layers: int = 1
    condition: Literal["init", "input", "both"] = "init"
    attention: bool = True
    attention_size: int = 0           # 0 = hidden
    readout: int = 64                 # tanh layer before the softmax; 0 = none
    dropout: float = 0.1
    # training-time feeding (Bengio et al. 2015); see the module docstring
    teacher_forcing: float = 1.0      # the ratio of the "constant" schedule
    sampling_schedule: Literal["constant", "linear", "exponential",
                               "inverse-sigmoid"] = "constant"
    schedule_k: float = 400.0
    schedule_c: float = 0.0
    schedule_min: float = 0.0
    sample_own: bool = True           # feed a sample of the model's own output (else argmax)
    # decoding (``rnnlab translate`` and test beam_bleu)
    beam: int = 5
    length_penalty: float = 0.6       # α of Wu et al. 2016; 0 = rank by log P alone


@dataclass
class TranslateData:
    path: str | None = None           # TSV source<TAB>target[<TAB>...], plain or .gz
    reverse: bool = False             # False: column 1 -> 2 (eng -> fra); True: 2 -> 1
    prefixes: str = "tutorial"        # "tutorial", "none", or "p1|p2|..." on column 1
    max_len: int = 10                 # max tokens on each side
    max_pairs: int = 0                # keep the first N filtered pairs; 0 = all
    min_count: int = 2                # vocabulary: training tokens seen this often
    eval_size: int = 500              # distinct sources in each of valid and test
    seed: int = 1234                  # shuffles the distinct sources before the split


def _pad(seqs: list[list[int]], device) -> tuple[Tensor, Tensor]:
    """Right-padded (L, B) int64 and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((max(1, int(lengths.max())), len(seqs)), PAD, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[:len(s), b] = torch.tensor(s, dtype=torch.long)
    return out.to(device), lengths.to(device)


class Translate(Task):
    name = "translate"
    description = ("encoder-decoder translation of source<TAB>target pairs (Tatoeba eng-fra) "
                   "with attention and scheduled sampling; BLEU, beam search")
    ModelConfig, DataConfig = TranslateModel, TranslateData
    main_metric = "bleu"
    predict_command = ("translate", "translate sentences with a saved translate run")
    uses_data_file = True
    # threads=1: small per-step GEMMs; a second thread on the shared 2-core machine only adds
    # synchronisation (as for char-lm)
    train_defaults = dict(steps=3000, batch_size=64, lr=3e-3, lr_decay="cosine",
                          clip_norm=1.0, eval_every=500, checkpoint_every=1000, threads=1)
    presets = {
        # measured: 844 s, test BLEU 28.4 greedy / 30.8 beam (docs/results.md)
        "full": ["model.embed=128", "model.encoder_hidden=128", "model.hidden=256",
                 "model.readout=128", "model.dropout=0.3"],
    }

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        self.drawn = 0                           # training batches drawn (see position)
        self._check_config()
        self.splits: dict[str, list[tuple[list[str], list[str]]]] | None = None
        if state is None:
            self._load()
            counts = [Counter(t for pair in self.splits["train"] for t in pair[side])
                      for side in (0, 1)]
            self.source, self.target = (Vocab.build(c, cfg.data.min_count, SPECIALS)
                                        for c in counts)
        else:
            vocabs = []
            for key in ("src_vocab", "tgt_vocab"):
                try:
                    vocabs.append(Vocab.from_list(state.get(key), SPECIALS))
                except ValueError:
                    raise TaskError(f"task state has no valid {key!r}") from None
            self.source, self.target = vocabs
        self.src_vocab, self.src_index = self.source.to_list(), self.source.index
        self.tgt_vocab, self.tgt_index = self.target.to_list(), self.target.index

    def _check_config(self) -> None:
        m, d = self.cfg.model, self.cfg.data
        if d.path is None:
            raise ConfigError("task 'translate' needs a TSV file: --data FILE (e.g. "
                              "data/tatoeba_eng_fra/fra.txt.gz)")
        for key, low in (("max_len", 1), ("min_count", 1), ("eval_size", 1), ("max_pairs", 0)):
            if getattr(d, key) < low:
                raise ConfigError(f"data.{key} must be at least {low}, got {getattr(d, key)}")
        for key in ("embed", "encoder_hidden", "hidden", "encoder_layers", "decoder_layers",
                    "beam"):
            if getattr(m, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(m, key)}")
        for key in ("attention_size", "readout"):
            if getattr(m, key) < 0:
                raise ConfigError(f"model.{key} must not be negative, got {getattr(m, key)}")
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {m.dropout}")
        if not 0.0 <= m.teacher_forcing <= 1.0:
            raise ConfigError(f"model.teacher_forcing must lie in [0, 1], got "
                              f"{m.teacher_forcing}")
        if m.length_penalty < 0:
            raise ConfigError(f"model.length_penalty must not be negative, got "
                              f"{m.length_penalty}")
        try:
            self.teacher_forcing(0)
        except ValueError as e:
            raise ConfigError(f"model.sampling_schedule={m.sampling_schedule!r}: {e} "
                              f"(model.schedule_k)") from None

    # --- data ---

    def _prefixes(self) -> tuple[str, ...]:
        p = self.cfg.data.prefixes
        if p == "tutorial":
            return TUTORIAL_PREFIXES
        if p == "none":
            return ()
        return tuple(normalize_translation(x) + (" " if x.endswith(" ") else "")
                     for x in p.split("|")
                     if x.strip())

    def _load(self) -> None:
        d = self.cfg.data
        prefixes = self._prefixes()
        pairs = []
        for _, first, second in read_pairs(d.path):
            if prefixes and not normalize_translation(first).startswith(prefixes):
                continue
            src, tgt = tokenize_translation(first), tokenize_translation(second)
            if d.reverse:
                src, tgt = tgt, src
            if not src or not tgt or len(src) > d.max_len or len(tgt) > d.max_len:
                continue
            pairs.append((src, tgt))
            if d.max_pairs and len(pairs) == d.max_pairs:
                break
        if not pairs:
            raise DataError(f"{d.path}: no pair is left after the filters (data.prefixes="
                            f"{d.prefixes!r}, data.max_len={d.max_len}); the tutorial "
                            f"prefixes keep English first columns like 'i am ...'; set "
                            f"data.prefixes=none for other data")
        groups: dict[str, list] = {}
        for src, tgt in pairs:
            groups.setdefault(" ".join(src), []).append((src, tgt))
        sources = list(groups)
        need = 2 * d.eval_size + 1
        if len(sources) < need:
            raise DataError(f"{d.path}: {len(sources)} distinct source sentences after the "
                            f"filters; data.eval_size={d.eval_size} needs at least {need} "
                            f"(valid + test + some training); lower data.eval_size")
        order = torch.randperm(len(sources), generator=torch.Generator().manual_seed(d.seed))
        shuffled = [sources[i] for i in order.tolist()]
        parts = {"valid": shuffled[:d.eval_size],
                 "test": shuffled[d.eval_size:2 * d.eval_size],
                 "train": shuffled[2 * d.eval_size:]}
        self.splits = {k: [pair for s in v for pair in groups[s]] for k, v in parts.items()}

    def _ensure_data(self):
        if self.splits is None:          # a reloaded run: read the file again, keep vocabs
            self._load()
        return self.splits

    def encode(self, tokens: list[str], target: bool = False) -> list[int]:
        return (self.target if target else self.source).encode(tokens, _vocab.UNK)

    def decode(self, ids: list[int]) -> str:
        return detokenize_translation(self.target.decode(ids))

    def state_dict(self) -> dict:
        return {"src_vocab": self.source.to_list(), "tgt_vocab": self.target.to_list()}

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        encoder = Encoder(len(self.src_vocab), m.embed, m.encoder_hidden, m.cell,
                          m.encoder_layers, m.dropout)
        decoder = Decoder(len(self.tgt_vocab), m.embed, m.hidden, encoder.context_size,
                          m.cell, m.decoder_layers, m.condition, m.attention, m.dropout,
                          memory_size=encoder.output_size,
                          attention_size=m.attention_size or None, readout=m.readout)
        return Seq2Seq(encoder, decoder)

    def teacher_forcing(self, step: int) -> float:
        m = self.cfg.model
        k = m.teacher_forcing if m.sampling_schedule == "constant" else m.schedule_k
        return teacher_forcing_ratio(m.sampling_schedule, step, k, m.schedule_c, m.schedule_min)

    def _tensors(self, pairs, device):
        """src (S, B), src_lengths (B,), tgt_in = BOS y (T, B), tgt_out = y EOS (T, B)."""
        src, src_lengths = _pad([self.encode(s) for s, _ in pairs], device)
        tgt = [self.encode(t, target=True) for _, t in pairs]
        tgt_in, _ = _pad([[BOS] + t for t in tgt], device)
        tgt_out, _ = _pad([t + [EOS] for t in tgt], device)
        return src, src_lengths, tgt_in, tgt_out

    def position(self) -> dict:
        """The batches drawn so far: the scheduled-sampling clock, saved for --resume."""
        return {"drawn": self.drawn}

    def set_position(self, position: dict) -> None:
        self.drawn = int(position.get("drawn", 0))

    def batch(self, generator, batch_size, device):
        self.drawn += 1                          # batch k feeds optimizer step k
        train = self._ensure_data()["train"]
        picks = torch.randint(0, len(train), (batch_size,), generator=generator).tolist()
        return self._tensors([train[i] for i in picks], device)

    def loss(self, model, batch):
        src, src_lengths, tgt_in, tgt_out = batch
        ratio = self.teacher_forcing(self.drawn)
        logits = model(src, src_lengths, tgt_in, teacher_forcing=ratio,
                       sample=self.cfg.model.sample_own)                   # (T, B, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        mask = tgt_out != PAD
        acc = ((logits.argmax(-1) == tgt_out) & mask).sum().item() / mask.sum().item()
        return loss, {"acc": acc, "tf": ratio}

    # --- evaluation and decoding ---

    def _decode_len(self) -> int:
        return 2 * self.cfg.data.max_len

    def translate_tokens(self, model, sources: list[list[str]], device, beam: int = 1,
                         batch_size: int = 250) -> list[str]:
        """Detokenised translations of tokenised sources (greedy when ``beam`` is 1)."""
        model.eval()
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        out: list[str] = [""] * len(sources)
        for i in range(0, len(order), batch_size):
            chunk = order[i:i + batch_size]
            src, lengths = _pad([self.encode(sources[j]) or [UNK] for j in chunk], device)
            if beam == 1:
                ids = model.greedy(src, lengths, BOS, EOS, self._decode_len())
            else:
                ids = model.beam_search(src, lengths, BOS, EOS, self._decode_len(), beam,
                                        self.cfg.model.length_penalty)
            for j, hyp in zip(chunk, ids):
                out[j] = self.decode(hyp)
        return out

    def bleu(self, model, pairs, device, beam: int = 1) -> float:
        """Corpus BLEU of the translations of each distinct source against all its
        references in ``pairs``."""
        import sacrebleu

        refs: dict[str, list[str]] = {}
        sources: dict[str, list[str]] = {}
        for src, tgt in pairs:
            key = " ".join(src)
            sources.setdefault(key, src)
            refs.setdefault(key, []).append(detokenize_translation(tgt))
        keys = list(sources)
        hyps = self.translate_tokens(model, [sources[k] for k in keys], device, beam)
        n_refs = max(len(r) for r in refs.values())
        streams = [[refs[k][i] if i < len(refs[k]) else None for k in keys]
                   for i in range(n_refs)]
        return float(sacrebleu.corpus_bleu(hyps, streams).score)

    @torch.no_grad()
    def evaluate(self, model, split, device):
        pairs = self._ensure_data()[split]
        total = correct = count = 0.0
        for i in range(0, len(pairs), 250):
            src, src_lengths, tgt_in, tgt_out = self._tensors(pairs[i:i + 250], device)
            logits = model(src, src_lengths, tgt_in)                        # (T, B, V)
            total += F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                     ignore_index=PAD, reduction="sum").item()
            mask = tgt_out != PAD
            correct += ((logits.argmax(-1) == tgt_out) & mask).sum().item()
            count += mask.sum().item()
        loss = total / count
        metrics = {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "acc": correct / count,
                   "bleu": self.bleu(model, pairs, device)}
        if split == "test" and self.cfg.model.beam > 1:
            metrics["beam_bleu"] = self.bleu(model, pairs, device, self.cfg.model.beam)
        return metrics

    @torch.no_grad()
    def predict(self, model, inputs, device):
        """Beam-search translations (``model.beam``) of raw source sentences."""
        sources = []
        for text in inputs:
            tokens = tokenize_translation(text)
            if not tokens:
                raise TaskError(f"nothing to translate in {text!r}")
            sources.append(tokens)
        return self.translate_tokens(model, sources, device, self.cfg.model.beam)
