"""Piano rolls: the JSON file format of the music task, MIDI in and out, the Nottingham converter.

A piano roll is a list of time steps; a step is the list of MIDI pitch numbers (0..127)
sounding at it, ``[]`` for silence. A data file holds three splits of pieces, the format of
the polyphonic benchmarks of Boulanger-Lewandowski, Bengio & Vincent (2012) (JSB Chorales,
Nottingham, MuseData, Piano-midi.de), written as JSON:

    {"train": [piece, ...], "valid": [...], "test": [...]}     piece = [[60, 64, 67], [], [62], ...]

:func:`read_pianoroll` reads and checks such a file; every problem is a
:class:`~rnnlab.data.text.DataError` that names the file and the place (line and column of
broken JSON; split, piece and step, counted from 0, of a bad value).

MIDI (``mido``):

- :func:`midi_to_roll` quantises a MIDI file onto a grid of steps of a ``1/step_note`` note
  (8 = an eighth note), in ticks, so tempo changes do not move the grid. A note's on and off
  times are each rounded to the nearest grid line (halves up); a note that would vanish keeps
  one step. The pitch is in the roll at every step of ``[on, off)``. All tracks and channels
  are merged except channel 10 (index 9, General MIDI percussion, not pitched). Leading
  silence is kept; the roll ends with the last note.
- :func:`roll_to_midi` writes a roll back: one track, 480 ticks a quarter note, the given
  tempo; a pitch present in consecutive steps is one held note (a binary roll cannot tell a
  held note from a repeated one), so ``midi_to_roll(roll_to_midi(roll))`` is ``roll`` up to
  trailing silence. :func:`count_notes` counts the notes it writes.

The Nottingham converter reads ``nottingham_midi.tar.gz`` of data/nottingham (the
jukedeck/nottingham-dataset MIDI files, melody and chords, 1,034 tunes; see its SOURCE.md)
straight from the archive and splits the tunes by name: ordered by the SHA-256 of their file
name, the first 15% are the test set, the next 15% the valid set, the rest the training set
(724/155/155 tunes, 70/15/15). The split is deterministic and independent of file order, but
it is ours: the split of Boulanger-Lewandowski et al.'s ``Nottingham.pickle`` (694/173/170
pieces) is not available here, and their MIDI source and quantisation need not match ours,
so figures on this file compare with the paper's only roughly.

    python -m rnnlab.data.pianoroll nottingham data/nottingham nottingham.json
    python -m rnnlab.data.pianoroll nottingham SRC OUT.json --step-note 16   # 16th-note grid
    python -m rnnlab.data.pianoroll baseline nottingham.json        # per-pitch frequency NLL

``SRC`` is the folder holding ``nottingham_midi.tar.gz``, the archive itself, or a folder of
``.mid`` files. The baseline is the trivial model the music task must beat: independent
Bernoulli pitches with the training frequencies, ``p_k = (n_k + 1) / (N + 2)`` (Laplace
smoothing; ``n_k`` steps with pitch ``k`` among ``N`` training steps), scored as the negative
log-likelihood per time step ``-sum_k [v_k log p_k + (1 - v_k) log(1 - p_k)]``, in nats.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

from .text import DataError, read_text

__all__ = ["SPLITS", "read_pianoroll", "check_pianoroll", "midi_to_roll", "roll_to_midi",
           "count_notes", "split_by_name", "nottingham_midis", "convert_nottingham",
           "bernoulli_baseline", "main"]

SPLITS = ("train", "valid", "test")
STEP_NOTES = (4, 8, 16)             # a step is a quarter, an eighth or a sixteenth note
PERCUSSION_CHANNEL = 9              # General MIDI channel 10
TICKS_PER_BEAT = 480                # of the files roll_to_midi writes

Roll = list[list[int]]


# --- the JSON format ------------------------------------------------------------------------


def read_pianoroll(path: str | Path) -> dict[str, list[Roll]]:
    """The checked ``{"train", "valid", "test"}`` pieces of a piano-roll JSON file.

    Raises :class:`DataError` for a missing or unreadable file, broken JSON (with its line
    and column), a missing split or any value :func:`check_pianoroll` rejects.
    """
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    return check_pianoroll(data, str(path))


def check_pianoroll(data, where: str) -> dict[str, list[Roll]]:
    """Check parsed JSON against the format; ``where`` (the file) starts every message."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object with the splits "
                        f"{', '.join(SPLITS)}, got a JSON {_json_type(data)}")
    splits = {}
    for split in SPLITS:
        if split not in data:
            raise DataError(f"{where}: no {split!r} split; a piano-roll file is a JSON object "
                            f"with lists of pieces under {', '.join(repr(s) for s in SPLITS)}")
        pieces = data[split]
        if not isinstance(pieces, list):
            raise DataError(f"{where}: split {split!r} must be a list of pieces, got a JSON "
                            f"{_json_type(pieces)}")
        if not pieces:
            raise DataError(f"{where}: split {split!r} has no pieces")
        for i, piece in enumerate(pieces):
            if not isinstance(piece, list):
                raise DataError(f"{where}: split {split!r}, piece {i}: a piece must be a list "
                                f"of time steps, got a JSON {_json_type(piece)}")
            if not piece:
                raise DataError(f"{where}: split {split!r}, piece {i}: the piece has no "
                                f"time steps")
            for t, step in enumerate(piece):
                if not isinstance(step, list):
                    raise DataError(f"{where}: split {split!r}, piece {i}, step {t}: a step "
                                    f"must be a list of MIDI pitches, got a JSON "
                                    f"{_json_type(step)} ({json.dumps(step)[:40]})")
                for pitch in step:
                    if type(pitch) is not int or not 0 <= pitch <= 127:
                        raise DataError(f"{where}: split {split!r}, piece {i}, step {t}: "
                                        f"pitch {json.dumps(pitch)[:40]} is not an int in "
                                        f"0..127 (MIDI note numbers)")
        splits[split] = pieces
    return splits


def _json_type(value) -> str:
    for tp, name in ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean"),
                     (int, "number"), (float, "number")):
        if isinstance(value, tp):
            return name
    return "null"


# --- MIDI -----------------------------------------------------------------------------------


def _open_midi(source, name: str):
    """A mido.MidiFile from a path or a binary file object; DataError if it is not MIDI."""
    import mido

    try:
        if isinstance(source, str | Path):
            return mido.MidiFile(source)
        return mido.MidiFile(file=source)
    except FileNotFoundError:
        raise DataError(f"MIDI file {name!r} does not exist") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise DataError(f"{name}: not a readable MIDI file: {e}") from None


def midi_to_roll(source, step_note: int = 8, name: str | None = None) -> Roll:
    """The piano roll of a MIDI file (path or ``mido.MidiFile``) on a ``1/step_note`` grid.

    See the module docstring for the quantisation rule. Returns ``[]`` for a file without
    pitched notes.
    """
    import mido

    if step_note not in STEP_NOTES:
        raise ValueError(f"step_note must be one of {STEP_NOTES}, got {step_note}")
    if isinstance(source, mido.MidiFile):
        midi = source
        name = name or str(source.filename)
    else:
        name = name or str(source)
        midi = _open_midi(source, name)
    if midi.type == 2:
        raise DataError(f"{name}: MIDI type 2 (independent sequences) is not supported")
    step = midi.ticks_per_beat * 4 / step_note        # ticks per step (may be fractional)
    notes: list[tuple[int, int, int]] = []            # (pitch, on tick, off tick)
    for track in midi.tracks:
        now, sounding = 0, {}                         # (channel, pitch) -> [on ticks]
        for msg in track:
            now += msg.time
            if msg.type not in ("note_on", "note_off") or msg.channel == PERCUSSION_CHANNEL:
                continue
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault(key, []).append(now)
            elif sounding.get(key):                   # note_off, or note_on with velocity 0
                notes.append((msg.note, sounding[key].pop(0), now))
        for (_, pitch), ons in sounding.items():      # never switched off: end with the track
            notes.extend((pitch, on, now) for on in ons)
    if not notes:
        return []
    spans = []
    for pitch, on, off in notes:
        start = math.floor(on / step + 0.5)
        end = max(math.floor(off / step + 0.5), start + 1)
        spans.append((pitch, start, end))
    roll: list[set[int]] = [set() for _ in range(max(end for _, _, end in spans))]
    for pitch, start, end in spans:
        for t in range(start, end):
            roll[t].add(pitch)
    return [sorted(s) for s in roll]


def count_notes(roll: Roll) -> int:
    """Notes in a roll when consecutive steps of one pitch are one held note."""
    notes, previous = 0, set()
    for step in roll:
        current = set(step)
        notes += len(current - previous)
        previous = current
    return notes


def roll_to_midi(roll: Roll, path: str | Path | None = None, step_note: int = 8,
                 tempo: float = 120.0, velocity: int = 80, program: int = 0):
    """A one-track ``mido.MidiFile`` playing ``roll`` (written to ``path`` when given).

    A step lasts a ``1/step_note`` note at ``tempo`` quarter notes per minute; ``program`` is
    the General MIDI instrument (0 = acoustic grand piano).
    """
    import mido

    if step_note not in STEP_NOTES:
        raise ValueError(f"step_note must be one of {STEP_NOTES}, got {step_note}")
    step = TICKS_PER_BEAT * 4 // step_note
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    last, previous = 0, set()                         # tick of the last event; pitches on
    for t, pitches in enumerate([*roll, []]):         # the extra silent step ends every note
        current = set(pitches)
        events = [("note_off", p) for p in sorted(previous - current)]
        events += [("note_on", p) for p in sorted(current - previous)]
        for kind, pitch in events:
            track.append(mido.Message(kind, note=pitch, velocity=velocity if kind == "note_on"
                                      else 0, time=t * step - last))
            last = t * step
        previous = current
    track.append(mido.MetaMessage("end_of_track", time=len(roll) * step - last))
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    if path is not None:
        midi.save(str(path))
    return midi


# --- Nottingham -----------------------------------------------------------------------------


def nottingham_midis(src: str | Path) -> Iterable[tuple[str, object]]:
    """``(tune name, mido.MidiFile)`` for every ``.mid`` of ``src``, sorted by name.

    ``src``: a folder holding ``nottingham_midi.tar.gz``, that archive, or a folder of
    ``.mid`` files. The archive is read in place, nothing is extracted.
    """
    src = Path(src)
    archive = src / "nottingham_midi.tar.gz" if src.is_dir() else src
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = sorted((m for m in tar.getmembers()
                                  if m.isfile() and m.name.lower().endswith(".mid")),
                                 key=lambda m: m.name)
                blobs = [(m.name, tar.extractfile(m).read()) for m in members]
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{archive}: cannot read the archive: {e}") from None
        for member, blob in blobs:
            name = Path(member).stem
            yield name, _open_midi(io.BytesIO(blob), f"{archive}:{member}")
        return
    if not src.is_dir():
        raise DataError(f"Nottingham source {str(src)!r} does not exist; give the folder "
                        f"holding nottingham_midi.tar.gz, the archive or a folder of .mid files")
    for path in sorted(p for p in src.iterdir() if p.suffix.lower() == ".mid"):
        yield path.stem, _open_midi(path, str(path))


def split_by_name(names: list[str], valid_fraction: float = 0.15,
                  test_fraction: float = 0.15) -> dict[str, list[str]]:
    """Deterministic split: order names by SHA-256, the first ``round(test_fraction * n)`` are
    test, the next ``round(valid_fraction * n)`` valid, the rest train (each in name order)."""
    if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError("valid and test fractions must be >= 0 and sum to less than 1")
    order = sorted(names, key=lambda n: hashlib.sha256(n.encode("utf-8")).hexdigest())
    n_test = round(test_fraction * len(names))
    n_valid = round(valid_fraction * len(names))
    parts = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid],
             "train": order[n_test + n_valid:]}
    return {split: sorted(parts[split]) for split in SPLITS}


def convert_nottingham(src: str | Path, out: str | Path | None, step_note: int = 8,
                       valid_fraction: float = 0.15, test_fraction: float = 0.15,
                       limit: int | None = None) -> dict[str, list[Roll]]:
    """Convert the Nottingham MIDI files of ``src`` to piano-roll JSON at ``out`` (None: only
    return the splits). ``limit`` keeps the first tunes by name (tests). Tunes without notes
    are skipped."""
    rolls = {}
    for name, midi in nottingham_midis(src):
        if limit is not None and len(rolls) >= limit:
            break
        roll = midi_to_roll(midi, step_note, name=name)
        if roll:
            rolls[name] = roll
    if not rolls:
        raise DataError(f"{src}: no MIDI tunes with notes found")
    names = split_by_name(sorted(rolls), valid_fraction, test_fraction)
    splits = {split: [rolls[n] for n in names[split]] for split in SPLITS}
    if out is not None:
        Path(out).write_text(json.dumps(splits, separators=(",", ":")) + "\n", encoding="utf-8")
    return splits


# --- the baseline ---------------------------------------------------------------------------


def bernoulli_baseline(train: list[Roll], test: list[Roll], low: int = 21,
                       high: int = 108) -> float:
    """NLL per time step (nats) on ``test`` of independent Bernoulli pitches ``low..high``
    (default: the 88 piano keys, the music task's range) with the Laplace-smoothed training
    frequencies ``p_k = (n_k + 1) / (N + 2)``; pitches outside the range are ignored."""
    n_steps = sum(len(piece) for piece in train)
    counts = dict.fromkeys(range(low, high + 1), 0)
    for piece in train:
        for step in piece:
            for pitch in set(step) & counts.keys():
                counts[pitch] += 1
    p = {k: (c + 1) / (n_steps + 2) for k, c in counts.items()}
    silent = sum(math.log1p(-pk) for pk in p.values())      # log-likelihood of an empty step
    on_gain = {k: math.log(pk) - math.log1p(-pk) for k, pk in p.items()}
    total, steps = 0.0, 0
    for piece in test:
        for step in piece:
            total -= silent + sum(on_gain[q] for q in set(step) & on_gain.keys())
            steps += 1
    return total / steps


# --- python -m rnnlab.data.pianoroll ----------------------------------------------------------


def _describe(splits: dict[str, list[Roll]]) -> str:
    lines = []
    for split in SPLITS:
        pieces = splits[split]
        steps = sum(len(p) for p in pieces)
        pitches = [q for p in pieces for s in p for q in s]
        span = f"pitches {min(pitches)}..{max(pitches)}" if pitches else "no notes"
        lines.append(f"{split:<5}  {len(pieces):>5} pieces  {steps:>8} steps  "
                     f"{sum(count_notes(p) for p in pieces):>7} notes  {span}  "
                     f"mean polyphony {len(pitches) / max(steps, 1):.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnnlab.data.pianoroll",
                                description="Piano-roll JSON for `rnnlab train music`.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    n = sub.add_parser("nottingham", help="convert the Nottingham MIDI files to JSON")
    n.add_argument("src", metavar="SRC", help="folder with nottingham_midi.tar.gz, the "
                   "archive, or a folder of .mid files")
    n.add_argument("out", metavar="OUT.json")
    n.add_argument("--step-note", type=int, choices=STEP_NOTES, default=8,
                   help="grid step as a 1/N note (default 8: an eighth note)")
    n.add_argument("--valid", type=float, default=0.15, help="valid fraction (default 0.15)")
    n.add_argument("--test", type=float, default=0.15, help="test fraction (default 0.15)")
    b = sub.add_parser("baseline", help="NLL per step of per-pitch training frequencies")
    b.add_argument("file", metavar="FILE.json")
    args = p.parse_args(argv)
    try:
        if args.command == "nottingham":
            splits = convert_nottingham(args.src, args.out, args.step_note, args.valid,
                                        args.test)
            print(f"wrote {args.out} (1/{args.step_note}-note steps)")
        else:
            splits = read_pianoroll(args.file)
        print(_describe(splits))
        for split in ("valid", "test"):
            print(f"baseline (per-pitch training frequencies): {split} NLL per step "
                  f"{bernoulli_baseline(splits['train'], splits[split]):.4f}")
    except (DataError, ValueError) as e:
        print(f"pianoroll: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
