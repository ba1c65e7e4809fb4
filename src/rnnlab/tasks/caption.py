"""Image captioning: a small CNN encoder trained from scratch and an RNN decoder
(book section 10.2.4, "modeling sequences conditioned on context with RNNs", and 10.4;
Vinyals et al. 2015, "Show and Tell"; Xu et al. 2015, "Show, Attend and Tell").

    image (B, 3, S, S) -> ConvEncoder -> feature map (B, C, s, s),  s = S / 2^blocks
        context = mean over positions     (B, C)       the fixed-size vector x of 10.2.4
        memory  = the s*s positions        (s*s, B, C)  what attention reads (Xu et al.)
    Decoder(tokens_in (T, B), context, memory) -> logits (T, B, V)   p(y(t) | y(<t), image)

The encoder is ``blocks`` of [3x3 conv -> batch norm -> ReLU -> 2x2 max-pool] with the
channels of ``model.cnn_channels``; nothing is pretrained (no weights can be downloaded).
The decoder is :class:`rnnlab.models.seq2seq.Decoder`; ``model.condition`` chooses how the
context enters it, the three options of section 10.2.4: ``init`` (the initial state
h(0) = tanh(W context)), ``input`` (the context joins the input of every step) or
``both``; ``model.attention=true`` adds soft attention over the memory at every step.
Training is teacher forcing (maximum likelihood of each next word given the true previous
words), optionally scheduled sampling (Bengio et al. 2015; ``model.sampling``).

Data (``--data DIR``): a COCO-format caption set read by :mod:`rnnlab.data.coco` —
``DIR/captions.json`` (``images`` with ``id`` and ``file_name``, ``annotations`` with
``image_id`` and ``caption``) and the images in ``DIR/images/`` or next to the JSON file.
The images are split, by image (all captions of an image go to one side), into
train/valid/test with a permutation seeded by ``data.split_seed`` (0): ``valid_fraction``
and ``test_fraction`` (0.1 each, at least one image each) of them, rounded, and the rest
train; 101 images give 81 / 10 / 10. The split depends only on the image order of the
file and the seed, never on ``train.seed``.

Images are resized to ``(image_size + crop_pad)`` pixels square (aspect ratio not kept),
then cropped to ``image_size``: a random crop and a random horizontal flip in training (data
augmentation, essential with 81 training images), the centre crop in valid, test and
``predict``; pixel values are standardised with the usual ImageNet channel means and
deviations. Captions are lower-cased and split into words (``[a-z0-9]+`` with an optional
``'s``-style suffix; punctuation dropped); the vocabulary is every word seen at least
``data.min_count`` times in the *training* captions, plus <pad>, <bos>, <eos>, <unk>.
A training batch is ``train.batch_size`` images, each with ``data.captions_per_image`` of
its captions (drawn without replacement; with replacement if it has fewer); each image is
encoded once and its features are shared by its captions.

Metric: BLEU-4 (Papineni et al. 2002) from ``sacrebleu.corpus_bleu`` of the generated
captions (beam search, width ``model.beam``, at most ``model.max_len`` words, <unk> dropped)
against *all* reference captions of each image, both sides lower-cased and tokenised as
above. ``evaluate`` returns ``loss`` (mean cross-entropy per target word, teacher forcing,
over every caption of the split), ``bleu`` and ``baseline_bleu``: the BLEU of the
"constant caption" baseline, which writes one and the same caption for every image — the
training caption that scores the highest BLEU on the other training images. A model that
does not beat it has learnt a language model, not to look at the image.

Commands::

    rnnlab train caption --data data/coco_mini_captions
    rnnlab train caption --data DIR --config attention   # attention, condition=both
    rnnlab evaluate runs/caption
    rnnlab caption runs/caption img1.jpg img2.jpg        # one caption per image (beam search)

Measured results: ``docs/results.md``, section caption.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.coco import CaptionedImage, load_image, read_coco_captions
from ..data.text import DataError
from ..data.tokenize import tokenize_caption
from ..data.vocab import BOS, EOS, PAD, UNK, Vocab
from ..models.captioner import Captioner
from ..models.seq2seq import teacher_forcing_ratio
from .base import Task, TaskError

__all__ = ["Caption", "CaptionModel", "CaptionData", "bleu"]

SPECIALS = (PAD, BOS, EOS, UNK)
#: ImageNet channel statistics, the conventional standardisation (no pretrained weights)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: the caption tokenizer (moved to :func:`rnnlab.data.tokenize.tokenize_caption`)
tokenize = tokenize_caption


def _streams(references: list[list[str]]) -> list[list[str | None]]:
    """Per-image reference lists -> sacrebleu's reference streams (stream k holds every
    image's k-th reference; None where an image has fewer)."""
    streams = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references]
            for k in range(streams)]


def bleu(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokenisation, exponential smoothing) of one
    hypothesis per image against all of that image's references (any number >= 1 each)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, _streams(references)).score)


def parse_channels(text: str) -> list[int]:
    """``"32,64,128"`` -> ``[32, 64, 128]``; :class:`ConfigError` unless positive ints."""
    try:
        channels = [int(part) for part in text.split(",")]
    except ValueError:
        channels = []
    if not channels or min(channels) < 1:
        raise ConfigError(f"model.cnn_channels must be comma-separated positive ints, one "
                          f"per conv block (e.g. 32,64,128,128), got {text!r}")
    return channels


@dataclass
class CaptionModel:
    cnn_channels: str = "32,64,128,128"   # conv blocks, each halving the image side
    cell: str = "lstm"
    embed: int = 64
    hidden: int = 128
    num_layers: int = 1
    condition: Literal["init", "input", "both"] = "input"   # book 10.2.4
    attention: bool = False               # soft attention over the feature map (Xu et al.)
    dropout: float = 0.5                  # on the CNN features and inside the decoder
    # scheduled sampling (Bengio et al. 2015): the probability of feeding the true previous
    # word at step i, rnnlab.models.teacher_forcing_ratio(sampling, i, k, c, min):
    # linear max(min, k - c i), exponential k^i (k < 1), inverse-sigmoid k / (k + e^(i/k))
    # (k >= 1); "none" = teacher forcing throughout
    sampling: Literal["none", "constant", "linear", "exponential", "inverse-sigmoid"] = "none"
    sampling_k: float = 200.0
    sampling_c: float = 1e-3
    sampling_min: float = 0.0
    beam: int = 3                         # beam width of evaluate and predict (1 = greedy)
    max_len: int = 20                     # words generated at most


@dataclass
class CaptionData:
    path: str | None = None       # caption-set folder (captions.json + images), or the JSON
    image_size: int = 64          # side of the square the CNN sees
    crop_pad: int = 8             # images are resized to image_size + crop_pad, then cropped
    flip: bool = True             # random horizontal flips in training
    min_count: int = 2            # rarer training words become <unk>
    max_words: int = 20           # training captions are cut to this many words
    captions_per_image: int = 5   # captions of each batch image
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0


# --- task -----------------------------------------------------------------------------------


class Caption(Task):
    name = "caption"
    description = ("image captioning on a COCO-format caption set (--data DIR): CNN encoder "
                   "from scratch + RNN decoder, init/input/both conditioning, attention; BLEU-4")
    ModelConfig, DataConfig = CaptionModel, CaptionData
    main_metric = "bleu"
    predict_command = ("caption", "caption image files with a saved caption run")
    uses_data_file = True
    train_defaults = dict(steps=600, batch_size=16, lr=2e-3, clip_norm=5.0, weight_decay=1e-4,
                          eval_every=100, checkpoint_every=200, threads=1)
    presets = {"attention": ["model.attention=true", "model.condition=both"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        self.drawn = 0                           # training batches drawn (see position)
        self._check_config()
        self.splits: dict[str, list[CaptionedImage]] | None = None
        self.pixels: dict[str, Tensor] = {}          # split -> uint8 (N, 3, L, L)
        self._baseline: dict[str, float] = {}        # split -> constant-caption BLEU
        self._constant: str | None = None
        if state is None:
            self._load()
            counts = Counter(w for image in self.splits["train"] for c in image.captions
                             for w in tokenize_caption(c))
            self.words = Vocab.build(counts, cfg.data.min_count, SPECIALS)
        else:
            try:
                self.words = Vocab.from_list(state.get("vocab"), SPECIALS)
            except ValueError:
                raise TaskError("task state has no caption vocabulary ('vocab')") from None
        self.vocab, self.index = self.words.to_list(), self.words.index
        self.pad, self.bos, self.eos, self.unk = (self.index[s] for s in SPECIALS)

    def _check_config(self) -> None:
        d, m = self.cfg.data, self.cfg.model
        parse_channels(m.cnn_channels)
        for key in ("image_size", "min_count", "max_words", "captions_per_image"):
            if getattr(d, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(d, key)}")
        if d.crop_pad < 0:
            raise ConfigError(f"data.crop_pad must not be negative, got {d.crop_pad}")
        blocks = len(parse_channels(m.cnn_channels))
        if d.image_size < 2 ** blocks:
            raise ConfigError(f"data.image_size={d.image_size} is too small for "
                              f"{blocks} conv blocks (each halves it); use at least "
                              f"{2 ** blocks}")
        for key in ("valid_fraction", "test_fraction"):
            if not 0 < getattr(d, key) < 1:
                raise ConfigError(f"data.{key} must be in (0, 1), got {getattr(d, key)}")
        if d.valid_fraction + d.test_fraction >= 1:
            raise ConfigError("data.valid_fraction + data.test_fraction must be below 1")
        for key in ("beam", "max_len", "embed", "hidden", "num_layers"):
            if getattr(m, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(m, key)}")
        if not 0 <= m.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
        if m.sampling != "none":
            try:
                teacher_forcing_ratio(m.sampling, 0, m.sampling_k, m.sampling_c, m.sampling_min)
            except ValueError as e:
                raise ConfigError(f"model.sampling={m.sampling}: {e} (model.sampling_k)") from None

    # --- data ---

    @property
    def load_size(self) -> int:
        return self.cfg.data.image_size + self.cfg.data.crop_pad

    def _load(self) -> None:
        """Read the caption set, split it by image, and load every image once."""
        d = self.cfg.data
        if d.path is None:
            raise DataError("the caption task needs a COCO-format caption set: --data DIR "
                            "(a folder with captions.json and its images, e.g. "
                            "data/coco_mini_captions)")
        images = read_coco_captions(d.path)
        n = len(images)
        n_valid, n_test = max(1, round(n * d.valid_fraction)), max(1, round(n * d.test_fraction))
        if n - n_valid - n_test < 1:
            raise DataError(f"caption set {d.path!r} has {n} image(s); the train/valid/test "
                            f"split by image needs at least 3")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(d.split_seed))
        picked = [images[i] for i in order.tolist()]
        self.splits = {"valid": picked[:n_valid], "test": picked[n_valid:n_valid + n_test],
                       "train": picked[n_valid + n_test:]}
        for split, members in self.splits.items():
            self.pixels[split] = torch.stack([load_image(im.path, self.load_size)
                                              for im in members])   # (N, 3, L, L) uint8

    def _ensure_data(self) -> dict[str, list[CaptionedImage]]:
        if self.splits is None:       # a reloaded run: read the data again, keep the vocab
            self._load()
        return self.splits

    def encode(self, caption: str) -> list[int]:
        """Word ids of a caption (unknown words -> <unk>), without <bos>/<eos>."""
        return self.words.encode(tokenize_caption(caption), UNK)

    def decode(self, ids) -> str:
        """Words of ids up to the first <eos>; <pad>, <bos> and <unk> are dropped."""
        words = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos, self.unk):
                words.append(self.vocab[i])
        return " ".join(words)

    def state_dict(self) -> dict:
        return {"vocab": self.words.to_list()}

    def _standardise(self, pixels: Tensor, device) -> Tensor:
        """uint8 (N, 3, S, S) -> float (N, 3, S, S), channel-standardised."""
        mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        return (pixels.to(device).float() / 255 - mean) / std

    def _center(self, pixels: Tensor) -> Tensor:
        """The centre ``image_size`` crop of (N, 3, L, L) images."""
        S, o = self.cfg.data.image_size, self.cfg.data.crop_pad // 2
        return pixels[:, :, o:o + S, o:o + S]

    def _targets(self, captions: list[list[int]], device) -> tuple[Tensor, Tensor]:
        """Teacher-forcing pairs: tokens_in = <bos> w1..wn, targets = w1..wn <eos>, padded:
        (T, B) each, T = longest caption + 1; padding in targets is <pad> (ignored)."""
        T = max(len(c) for c in captions) + 1
        tokens = torch.full((T + 1, len(captions)), self.pad, dtype=torch.long)
        for b, c in enumerate(captions):
            tokens[:len(c) + 2, b] = torch.tensor([self.bos, *c, self.eos])
        tokens = tokens.to(device)
        return tokens[:-1], tokens[1:]

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return Captioner(len(self.vocab), parse_channels(m.cnn_channels), m.cell, m.embed,
                         m.hidden, m.num_layers, m.condition, m.attention, m.dropout)

    def position(self) -> dict:
        """The batches drawn so far: the scheduled-sampling clock, saved for --resume."""
        return {"drawn": self.drawn}

    def set_position(self, position: dict) -> None:
        self.drawn = int(position.get("drawn", 0))

    def batch(self, generator, batch_size, device):
        """``batch_size`` augmented training images (B, 3, S, S), ``captions_per_image`` of
        the captions of each: tokens_in and targets (T, B*k), and the image index (B*k,)."""
        self.drawn += 1                          # batch k feeds optimizer step k
        d = self.cfg.data
        train, pixels = self._ensure_data()["train"], self.pixels["train"]
        picks = torch.randint(len(train), (batch_size,), generator=generator).tolist()
        offsets = torch.randint(d.crop_pad + 1, (batch_size, 2), generator=generator).tolist()
        flips = (torch.rand(batch_size, generator=generator) < 0.5).tolist()
        images, captions = [], []
        for i, (oy, ox), flip in zip(picks, offsets, flips):
            image = pixels[i, :, oy:oy + d.image_size, ox:ox + d.image_size]   # (3, S, S)
            images.append(image.flip(-1) if flip and d.flip else image)
            caps = train[i].captions
            k = d.captions_per_image
            if len(caps) >= k:
                chosen = torch.randperm(len(caps), generator=generator)[:k]
            else:
                chosen = torch.randint(len(caps), (k,), generator=generator)
            captions += [self.encode(caps[j])[:d.max_words] for j in chosen.tolist()]
        index = torch.arange(batch_size).repeat_interleave(d.captions_per_image)
        tokens_in, targets = self._targets(captions, device)
        return (self._standardise(torch.stack(images), device), tokens_in, targets,
                index.to(device))

    def teacher_forcing(self) -> float:
        """The probability of feeding the true previous word at the current step."""
        m = self.cfg.model
        if m.sampling == "none":
            return 1.0
        return teacher_forcing_ratio(m.sampling, self.drawn, m.sampling_k, m.sampling_c,
                                     m.sampling_min)

    def loss(self, model, batch):
        images, tokens_in, targets, index = batch
        ratio = self.teacher_forcing()
        logits = model(images, tokens_in, index, teacher_forcing=ratio)   # (T, B, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=self.pad)
        return loss, ({"teacher_forcing": ratio} if self.cfg.model.sampling != "none" else {})

    # --- evaluation and captioning ---

    def _split_images(self, split: str, device, start: int = 0, stop: int | None = None):
        """Standardised centre crops of the split's images start:stop, (n, 3, S, S)."""
        self._ensure_data()
        return self._standardise(self._center(self.pixels[split][start:stop]), device)

    @torch.no_grad()
    def caption_images(self, model, images: Tensor, batch: int = 32) -> list[str]:
        """Captions of standardised images (N, 3, S, S) by beam search (greedy for beam 1)."""
        m, out = self.cfg.model, []
        for start in range(0, len(images), batch):
            context, memory = model.encode(images[start:start + batch])
            if m.beam == 1:
                ids = model.decoder.greedy(context, memory, None, self.bos, self.eos, m.max_len)
            else:
                ids = model.decoder.beam_search(context, memory, None, self.bos, self.eos,
                                                m.max_len, beam=m.beam)
            out += [self.decode(seq) for seq in ids]
        return out

    @torch.no_grad()
    def evaluate(self, model, split, device, chunk: int = 64):
        """Loss (teacher forcing, every caption) and BLEU (beam search) over the split,
        ``chunk`` images at a time."""
        members = self._ensure_data()[split]
        total, count, hypotheses = 0.0, 0, []
        for start in range(0, len(members), chunk):
            part = members[start:start + chunk]
            images = self._split_images(split, device, start, start + chunk)   # (n, 3, S, S)
            captions = [self.encode(c) for image in part for c in image.captions]
            index = torch.tensor([i for i, image in enumerate(part) for _ in image.captions],
                                 device=device)
            tokens_in, targets = self._targets(captions, device)                # (T, M)
            logits = model(images, tokens_in, index)                            # (T, M, V)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                     ignore_index=self.pad, reduction="sum").item()
            count += int((targets != self.pad).sum())
            hypotheses += self.caption_images(model, images)
        return {"loss": total / count, "bleu": bleu(hypotheses, self.references(split)),
                "baseline_bleu": self.baseline_bleu(split)}

    def references(self, split: str) -> list[list[str]]:
        """All captions of each image of the split, lower-cased and tokenised like the output."""
        return [[" ".join(tokenize_caption(c)) for c in image.captions]
                for image in self._ensure_data()[split]]

    def constant_caption(self, limit: int = 200) -> str:
        """The training caption that, written for every *other* training image, scores the
        highest BLEU against their references (ties: the first in the split's order).
        On a large set only the first ``limit`` training images (a random sample: the split
        is a random permutation) give candidates and references.

        Leave-one-out without re-scoring: sacrebleu's corpus statistics (matched and total
        n-grams, lengths) are sums over images, so the candidate's own image is subtracted.
        """
        from sacrebleu.metrics import BLEU

        refs = self.references("train")[:limit]
        corpus = BLEU(references=_streams(refs))        # the references tokenised once
        single = BLEU()
        best, best_score = "", -1.0
        for image_refs in refs:
            for candidate in dict.fromkeys(image_refs):
                every = corpus.corpus_score([candidate] * len(refs), None)
                own = single.corpus_score([candidate], [[r] for r in image_refs])
                score = BLEU.compute_bleu(
                    [a - b for a, b in zip(every.counts, own.counts)],
                    [a - b for a, b in zip(every.totals, own.totals)],
                    every.sys_len - own.sys_len, every.ref_len - own.ref_len,
                    smooth_method="exp").score
                if score > best_score:
                    best, best_score = candidate, score
        return best

    def baseline_bleu(self, split: str) -> float:
        """BLEU on ``split`` of :meth:`constant_caption` written for every image (cached)."""
        if split not in self._baseline:
            if self._constant is None:
                self._constant = self.constant_caption()
            refs = self.references(split)
            self._baseline[split] = bleu([self._constant] * len(refs), refs)
        return self._baseline[split]

    def random_caption_bleu(self, split: str, seeds: int = 10) -> tuple[float, float]:
        """Mean and standard deviation over ``seeds`` draws of the BLEU on ``split`` of the
        "random training caption" baseline: each image gets a caption of a random training
        image."""
        train = [[" ".join(tokenize_caption(c)) for c in im.captions]
                 for im in self.splits["train"]]
        refs = self.references(split)
        scores = []
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            hyps = []
            for _ in refs:
                caps = train[int(torch.randint(len(train), (1,), generator=g))]
                hyps.append(caps[int(torch.randint(len(caps), (1,), generator=g))])
            scores.append(bleu(hyps, refs))
        t = torch.tensor(scores, dtype=torch.float64)
        return float(t.mean()), float(t.std()) if seeds > 1 else 0.0

    @torch.no_grad()
    def predict(self, model, inputs, device):
        """One caption per image path (centre crop, beam search)."""
        if not inputs:
            return []
        pixels = torch.stack([load_image(Path(p), self.load_size) for p in inputs])
        model.eval()
        return self.caption_images(model, self._standardise(self._center(pixels), device))
