"""bAbI question answering (Weston et al. 2015, "Towards AI-Complete Question Answering: A Set
of Prerequisite Toy Tasks", arXiv:1502.05698): a reader for the real tasks' file format, and
a generator of tasks 1 and 2 for when no data is given.

The file format (the dataset's README), one story after another::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? \tbathroom\t1
    1 Sandra travelled to the office.            <- the IDs restart at 1: a new story
    ...

``ID text`` is a statement; ``ID question<TAB>answer<TAB>supporting IDs`` a question about
the statements before it in its story. :func:`read_babi` gives one :class:`QA` per question:
its story (the statements before it, oldest first), the question, the answer (list answers
such as ``apple,football`` or ``n,w`` stay one token, as in Sukhbaatar et al. 2015) and the
supporting statements. Words are lower-cased; ``.`` ``?`` and ``!`` are dropped. Malformed
input raises :class:`~rnnlab.data.text.DataError` whose message starts with ``FILE:LINE:``.

    qas = read_babi("qa2_two-supporting-facts_train.txt.gz")     # plain or gzip
    files = babi_task_files("data/babi_en_1k", 2)      # {"train": ..., "test": ...}

Generated stories (:func:`generate_story`, tasks 1 and 2 only) use the same words as the
real tasks: ``mary went to the kitchen . john moved to the garden . where is mary ?`` ->
``kitchen`` (task 1, single supporting fact); with objects picked up and dropped, ``where is
the football ?`` needs the sentence about who holds it and the one about where that person
went (task 2, two supporting facts). :data:`VOCAB` is every word they use, ``<pad>`` first.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import NamedTuple

from .text import DataError, read_lines

__all__ = ["ACTORS", "PLACES", "OBJECTS", "VOCAB", "QA", "generate_qa", "generate_story",
           "read_babi", "babi_task_files", "tokenize"]

ACTORS = ["mary", "john", "sandra", "daniel"]
PLACES = ["kitchen", "garden", "office", "bathroom", "hallway", "bedroom"]
OBJECTS = ["apple", "football", "milk"]
MOVES = ["went to the", "moved to the", "journeyed to the", "travelled to the"]
GRABS = ["picked up the", "grabbed the", "got the"]
DROPS = ["dropped the", "put down the", "discarded the"]
VOCAB = ["<pad>", "where", "is", "the", "?", "."] + ACTORS + PLACES + OBJECTS + sorted(
    {w for phrase in MOVES + GRABS + DROPS for w in phrase.split()} - {"the"})
"""Every word the generated stories, questions and answers use, ``<pad>`` first."""


class QA(NamedTuple):
    """One question with its story."""

    story: tuple[tuple[str, ...], ...]   # the statements before the question, oldest first
    question: tuple[str, ...]
    answer: str                          # one token; several answers joined by "," as given
    support: tuple[int, ...]             # indices into ``story`` of the supporting statements


_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]", re.UNICODE)
_DROPPED = {".", "?", "!"}


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation of ``text``, without ``.`` ``?`` ``!``."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _DROPPED]


def read_babi(path: str | Path) -> list[QA]:
    """The questions of a bAbI task file (``.gz``: gzip-compressed), each with its story.

    Raises :class:`DataError` (``FILE:LINE: what was wrong``) for a line that is not ``ID
    text`` or ``ID question<TAB>answer<TAB>IDs``, an ID out of order (each story counts 1, 2,
    3, ...), a supporting ID that is not an earlier statement of the story, an empty
    statement, question or answer, text that is not UTF-8, and a file without questions.
    """
    path = Path(path)
    qas: list[QA] = []
    story: list[tuple[str, ...]] = []
    index: dict[int, int] = {}           # line ID -> index into story (statements only)
    last_id = 0
    for lineno, raw in read_lines(path, "a bAbI file"):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: not UTF-8: byte 0x{raw[e.start]:02x} at column "
                            f"{e.start + 1} cannot be decoded") from None
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        if not (head.isascii() and head.isdigit()):
            raise DataError(f"{where}: expected 'ID text' (a line number, a space, then a "
                            f"statement or a question with its answer), got {line[:40]!r}")
        line_id = int(head)
        if line_id == 1:                 # a new story
            story, index = [], {}
        elif line_id != last_id + 1:
            raise DataError(f"{where}: ID {line_id} is out of order: expected {last_id + 1} "
                            f"(or 1, to start a new story)")
        last_id = line_id
        if "\t" not in rest:
            words = tokenize(rest)
            if not words:
                raise DataError(f"{where}: statement {line_id} has no words")
            index[line_id] = len(story)
            story.append(tuple(words))
            continue
        fields = rest.split("\t")
        if len(fields) != 3:
            raise DataError(f"{where}: a question line has 3 tab-separated fields (question, "
                            f"answer, supporting IDs), got {len(fields)}")
        question, answer, support = fields[0], fields[1].strip().lower(), fields[2].split()
        if not tokenize(question):
            raise DataError(f"{where}: question {line_id} has no words")
        if not answer or any(c.isspace() for c in answer):
            raise DataError(f"{where}: the answer {fields[1]!r} must be one token (several "
                            f"answers are joined by ',')")
        refs = []
        for ref in support:
            if not (ref.isascii() and ref.isdigit()) or int(ref) not in index:
                raise DataError(f"{where}: supporting ID {ref!r} is not the ID of a statement "
                                f"before this question in its story")
            refs.append(index[int(ref)])
        qas.append(QA(tuple(story), tuple(tokenize(question)), answer, tuple(refs)))
    if not qas:
        raise DataError(f"{path}: no questions: a bAbI file has lines 'ID question<TAB>answer"
                        f"<TAB>IDs'")
    return qas


def babi_task_files(folder: str | Path, task: int) -> dict[str, Path]:
    """``{"train": ..., "test": ...}``: task ``task``'s files in a bAbI folder, named
    ``qa{task}_*_train.txt`` and ``qa{task}_*_test.txt`` (each plain or ``.gz``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"bAbI folder {str(folder)!r} does not exist or is not a directory")
    files = {}
    for split in ("train", "test"):
        found = sorted(p for suffix in ("txt", "txt.gz")
                       for p in folder.glob(f"qa{task}_*_{split}.{suffix}"))
        if len(found) != 1:
            what = "no file" if not found else f"{len(found)} files"
            raise DataError(f"bAbI folder {str(folder)!r} has {what} matching "
                            f"qa{task}_*_{split}.txt[.gz]; expected exactly one")
        files[split] = found[0]
    return files


# --- generated stories: the no-data default ------------------------------------------------

def generate_story(rng: random.Random, task: int, max_sentences: int):
    """``(sentences, question, answer, supporting)``: word lists, the answer word and the
    indices of the supporting sentences."""
    n = rng.randint(2, max_sentences)
    while True:                         # task 2: draw again until some object was touched
        sentences: list[list[str]] = []
        where: dict[str, str] = {}
        holder: dict[str, str | None] = {o: None for o in OBJECTS}
        dropped_at: dict[str, str] = {}
        last_move: dict[str, int] = {}
        last_obj: dict[str, int] = {}
        for _ in range(n):
            actor = rng.choice(ACTORS)
            kind = "move" if task == 1 or actor not in where else rng.choice(
                ["move", "move", "grab", "drop"])
            if kind == "grab":
                free = [o for o in OBJECTS if holder[o] is None]
                if not free:
                    kind = "move"
                else:
                    obj = rng.choice(free)
                    holder[obj] = actor
                    last_obj[obj] = len(sentences)
                    sentences.append([actor] + rng.choice(GRABS).split() + [obj])
                    continue
            if kind == "drop":
                held = [o for o in OBJECTS if holder[o] == actor]
                if not held:
                    kind = "move"
                else:
                    obj = rng.choice(held)
                    holder[obj] = None
                    dropped_at[obj] = where[actor]
                    last_obj[obj] = len(sentences)
                    sentences.append([actor] + rng.choice(DROPS).split() + [obj])
                    continue
            place = rng.choice([p for p in PLACES if p != where.get(actor)])
            where[actor] = place
            last_move[actor] = len(sentences)
            sentences.append([actor] + rng.choice(MOVES).split() + [place])
        if task == 1:
            actor = rng.choice(sorted(where))
            return ([s + ["."] for s in sentences], ["where", "is", actor, "?"], where[actor],
                    [last_move[actor]])
        known = [o for o in OBJECTS if o in last_obj]
        if known:
            obj = rng.choice(known)
            if holder[obj] is not None:
                actor = holder[obj]
                answer, support = where[actor], [last_obj[obj], last_move[actor]]
            else:
                answer, support = dropped_at[obj], [last_obj[obj]]
            return ([s + ["."] for s in sentences], ["where", "is", "the", obj, "?"], answer,
                    sorted(support))


def generate_qa(rng: random.Random, task: int, max_sentences: int) -> QA:
    """:func:`generate_story` as a :class:`QA`, tokenised as :func:`read_babi` tokenises."""
    sentences, question, answer, support = generate_story(rng, task, max_sentences)
    return QA(tuple(tuple(tokenize(" ".join(s))) for s in sentences),
              tuple(tokenize(" ".join(question))), answer, tuple(support))
