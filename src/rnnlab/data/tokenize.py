"""The tokenizers of the text tasks, side by side.

They differ on purpose (each follows the data and the metric of its task), so they stay
four functions; none of them changes what it returned when it lived in its task module.

=====================  =========================================  ==========================
function               rule                                       example
=====================  =========================================  ==========================
tokenize_words         lower-cased words (letters, digits, ``_``,  ``"Nay, sir!"`` ->
(word-lm)              inner apostrophes kept: ``don't``) and      ``nay , sir !``
                       single punctuation characters
tokenize_sentiment     PTB-like: ``n't`` and ``'s``/``'re``/...    ``"It isn't bad!"`` ->
(sentiment)            clitics split off, hyphenated words and     ``it is n't bad !``
                       ``8.5`` kept whole, each other mark alone;
                       lower-cased unless ``lowercase=False``
tokenize_caption       lower-cased ``[a-z0-9]+`` words with an     ``"A dog's ball."`` ->
(caption)              optional ``'s``-style suffix; punctuation   ``a dog's ball``
                       dropped
tokenize_translation   :func:`normalize_translation` (NFKC,        ``"J'ai froid !"`` ->
(translate)            straight apostrophes, lower case), then     ``j' ai froid !``
                       numbers, words with a trailing apostrophe
                       (French elision), words, single marks
=====================  =========================================  ==========================

:func:`detokenize_translation` is the inverse used for BLEU in translate: spaces between
tokens except after ``x'``, ``(`` and ``-`` and before ``-`` and closing punctuation.
(pos splits its input on whitespace; char-lm reads characters.)
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["tokenize_words", "tokenize_sentiment", "tokenize_caption", "tokenize_translation",
           "normalize_translation", "detokenize_translation"]


# --- word-lm --------------------------------------------------------------------------------

_WORD_LM = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize_words(line: str) -> list[str]:
    """Lower-cased words (letters/digits/underscore, inner apostrophes kept: ``don't``) and
    single punctuation characters: ``"Nay, sir!"`` -> ``["nay", ",", "sir", "!"]``."""
    return _WORD_LM.findall(line.lower())


# --- sentiment ------------------------------------------------------------------------------

# PTB-like: "isn't" -> is n't, "it's" -> it 's, "slow-moving" stays one word, "8.5" one
# number, every other non-space, non-word character alone
_SENTIMENT = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-.]\w+)*|[^\w\s]",
                        re.IGNORECASE)


def tokenize_sentiment(text: str, lowercase: bool = True) -> list[str]:
    """Words of a raw sentence: ``"It isn't bad!"`` -> ``['it', 'is', "n't", 'bad', '!']``."""
    return _SENTIMENT.findall(text.lower() if lowercase else text)


# --- caption --------------------------------------------------------------------------------

_CAPTION = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize_caption(caption: str) -> list[str]:
    """Lower-cased words, punctuation dropped: ``"A dog's ball."`` -> ``["a", "dog's", "ball"]``."""
    return _CAPTION.findall(caption.lower())


# --- translate ------------------------------------------------------------------------------

_TRANSLATION = re.compile(r"\d+(?:[.,]\d+)*|\w+'|\w+|[^\w\s]")


def normalize_translation(text: str) -> str:
    """NFKC, straight apostrophes, lower case, outer whitespace stripped."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return text.lower().strip()


def tokenize_translation(text: str) -> list[str]:
    """``"J'ai froid !"`` -> ``["j'", "ai", "froid", "!"]`` (see the module docstring)."""
    return _TRANSLATION.findall(normalize_translation(text))


_NO_SPACE_BEFORE = frozenset(".,!?;:)%…-")
_NO_SPACE_AFTER = frozenset("(-")


def detokenize_translation(tokens: list[str]) -> str:
    """Join tokens with spaces, except after ``x'``, ``(`` and ``-`` and before ``-`` and
    closing punctuation (English style, also for French: BLEU's 13a tokeniser splits the
    punctuation off again, so the spacing convention does not change the score)."""
    out = ""
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        if i and not (prev.endswith("'") or prev in _NO_SPACE_AFTER
                      or tok in _NO_SPACE_BEFORE):
            out += " "
        out += tok
    return out
