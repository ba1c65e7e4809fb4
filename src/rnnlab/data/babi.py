"""Generated bAbI-style stories (Weston et al. 2015, tasks 1 and 2) for the memory network:
``mary went to the kitchen . john moved to the garden . where is mary ?`` -> ``kitchen``
(task 1, single supporting fact); with objects picked up and dropped, ``where is the
football ?`` needs the sentence about who holds it and the one about where that person went
(task 2, two supporting facts). :data:`VOCAB` is every word they use, ``<pad>`` first.
"""

from __future__ import annotations

import random

__all__ = ["ACTORS", "PLACES", "OBJECTS", "VOCAB", "generate_story"]

ACTORS = ["mary", "john", "sandra", "daniel"]
PLACES = ["kitchen", "garden", "office", "bathroom", "hallway", "bedroom"]
OBJECTS = ["apple", "football", "milk"]
MOVES = ["went to the", "moved to the", "journeyed to the", "travelled to the"]
GRABS = ["picked up the", "grabbed the", "got the"]
DROPS = ["dropped the", "put down the", "discarded the"]
VOCAB = ["<pad>", "where", "is", "the", "?", "."] + ACTORS + PLACES + OBJECTS + sorted(
    {w for phrase in MOVES + GRABS + DROPS for w in phrase.split()} - {"the"})
"""Every word the generated stories, questions and answers use, ``<pad>`` first."""


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
