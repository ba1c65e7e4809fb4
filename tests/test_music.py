"""The music task and rnnlab.data.pianoroll: JSON checks, the NLL, ragged masking, training,
MIDI out and back, the Nottingham converter (on generated MIDI and on a few real tunes)."""

import contextlib
import io
import json
import math
import random
import re
import tarfile

import mido
import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import apply_overrides
from rnnlab.data import pianoroll
from rnnlab.data.pianoroll import (
    bernoulli_baseline,
    convert_nottingham,
    count_notes,
    midi_to_roll,
    nottingham_midis,
    read_pianoroll,
    roll_to_midi,
    split_by_name,
)
from rnnlab.models.music import sample_roll
from rnnlab.tasks import TASKS, load_run
from rnnlab.tasks.music import Music, frame_nll, pad_rolls, pitch_name

# an arpeggio over a held bass note and its transposition: easy to learn, ragged lengths
PIECE_A = [[48, 60], [48, 64], [48, 67], [48, 72]] * 3
PIECE_B = [[50, 62], [50, 66], [50, 69], [], [50, 74]] * 2
TINY = {"train": [PIECE_A, PIECE_B, PIECE_A[:7], PIECE_B[:9]], "valid": [PIECE_A, PIECE_B[:6]],
        "test": [PIECE_B, PIECE_A[:5]]}


def write_json(tmp_path, data, name="rolls.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def music_task(tmp_path, data=TINY, *overrides):
    cfg = apply_overrides(Music.default_config(), [
        f"data.path={write_json(tmp_path, data)}", "model.hidden=12", *overrides])
    return Music(cfg)


def train_error(tmp_path, capsys, data, *extra) -> str:
    path = write_json(tmp_path, data)
    code = main(["train", "music", "--data", str(path), "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rnnlab: error: "), err
    assert not (tmp_path / "run").exists()               # checked before the run starts
    return err


# --- the JSON format ------------------------------------------------------------------------


def test_music_is_registered():
    assert TASKS["music"] is Music and Music.main_metric == "nll" and Music.uses_data_file


def test_broken_json_names_file_line_and_column(tmp_path, capsys):
    text = '{"train": [[[60]]],\n "valid": [[[60]]],\n "test": [[[60] [62]]]\n}'
    err = train_error(tmp_path, capsys, text)
    assert f"{tmp_path / 'rolls.json'}:3:17: not valid JSON: Expecting ',' delimiter" in err


@pytest.mark.parametrize("data, message", [
    ({"train": [[[60]]], "valid": [[[60]]]},
     "no 'test' split; a piano-roll file is a JSON object"),
    ({"train": [], "valid": [[[60]]], "test": [[[60]]]}, "split 'train' has no pieces"),
    ({"train": [[[60]]], "valid": {"a": 1}, "test": [[[60]]]},
     "split 'valid' must be a list of pieces, got a JSON object"),
    ({"train": [[[60]]], "valid": [[[60], 61]], "test": [[[60]]]},
     "split 'valid', piece 0, step 1: a step must be a list of MIDI pitches, got a JSON "
     "number (61)"),
    ({"train": [[[60]]], "valid": [[[60]]], "test": [[[60]], [[60], [62], [60, 128]]]},
     "split 'test', piece 1, step 2: pitch 128 is not an int in 0..127"),
    ({"train": [[[60]], [[60.0]]], "valid": [[[60]]], "test": [[[60]]]},
     "split 'train', piece 1, step 0: pitch 60.0 is not an int in 0..127"),
    ({"train": [[[True]]], "valid": [[[60]]], "test": [[[60]]]},
     "split 'train', piece 0, step 0: pitch true is not an int in 0..127"),
    ({"train": [[[60]], []], "valid": [[[60]]], "test": [[[60]]]},
     "split 'train', piece 1: the piece has no time steps"),
    ({"train": [[[60]]], "valid": [[[60]]], "test": [[[60]], [[], [12]]]},
     "split 'test', piece 1, step 1: pitch 12 is outside the modelled range "
     "data.low..data.high = 21..108"),
    ([1, 2], "expected a JSON object with the splits train, valid, test, got a JSON array"),
])
def test_bad_piano_roll_files_are_errors_with_their_place(tmp_path, capsys, data, message):
    err = train_error(tmp_path, capsys, data)
    assert f"{tmp_path / 'rolls.json'}: {message}" in err


def test_missing_data_file_and_missing_data_option(tmp_path, capsys):
    assert main(["train", "music", "--data", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "music", "--out", str(tmp_path / "run")]) == 2
    assert "needs a piano-roll JSON file: --data FILE.json" in capsys.readouterr().err


def test_out_of_range_pitches_can_be_dropped(tmp_path):
    data = {**TINY, "train": [[[60, 12], [110], [64]]]}
    task = music_task(tmp_path, data, "data.out_of_range=drop")
    assert task.dropped == 2
    assert task.decode(task.splits["train"][0]) == [[60], [], [64]]


def test_pitch_range_sets_the_model_width(tmp_path):
    task = music_task(tmp_path, TINY, "data.low=48", "data.high=74")
    assert task.splits["train"][0].shape == (12, 27)
    assert task.decode(task.splits["train"][0]) == PIECE_A
    assert task.build_model().out.out_features == 27


# --- the NLL ----------------------------------------------------------------------------------


def test_nll_and_accuracy_match_a_hand_computation(tmp_path):
    """Constant logits b (zero weights): p(t) = sigmoid(b) at every step."""
    data = {"train": [[[60]]], "valid": [[[60], [60, 62], []]], "test": [[[61], [62]]]}
    task = music_task(tmp_path, data, "data.low=60", "data.high=62")
    model = task.build_model()
    b = [1.0, -1.0, 0.5]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.out.bias.copy_(torch.tensor(b))
    sig = [1 / (1 + math.exp(-x)) for x in b]

    def step_nll(on):                    # -sum_k [v_k log p_k + (1 - v_k) log(1 - p_k)]
        return -sum(math.log(sig[k]) if 60 + k in on else math.log(1 - sig[k])
                    for k in range(3))

    for split, steps in (("valid", [[60], [60, 62], []]), ("test", [[61], [62]])):
        metrics = task.evaluate(model, split, "cpu")
        want = sum(step_nll(s) for s in steps) / len(steps)
        assert metrics["nll"] == pytest.approx(want, rel=1e-6)
        assert metrics["loss"] == metrics["nll"]
    # prediction p > 1/2 switches on pitches 60 and 62 at every step
    # valid: TP 1 + 2 + 0, FP 1 + 0 + 2, FN 0  -> 3 / 6
    # test:  TP 0 + 1,     FP 2 + 1,     FN 1 + 0  -> 1 / 5
    assert task.evaluate(model, "valid", "cpu")["accuracy"] == pytest.approx(3 / 6)
    assert task.evaluate(model, "test", "cpu")["accuracy"] == pytest.approx(1 / 5)


def test_frame_nll_is_the_bernoulli_sum_over_pitches():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2, 5, generator=g, dtype=torch.float64)
    targets = (torch.rand(4, 2, 5, generator=g) < 0.4).double()
    lengths = torch.tensor([4, 2])
    nll, mask = frame_nll(logits, targets, lengths)
    for b in range(2):
        want = 0.0
        for t in range(int(lengths[b])):
            for k in range(5):
                p = 1 / (1 + math.exp(-float(logits[t, b, k])))
                want -= math.log(p) if targets[t, b, k] else math.log(1 - p)
        assert float(nll[b]) == pytest.approx(want, rel=1e-12)
    assert mask.tolist() == [[True, True], [True, True], [True, False], [True, False]]


def test_teacher_forcing_inputs_are_the_previous_steps():
    rolls = [torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.bool),
             torch.tensor([[0, 1]], dtype=torch.bool)]
    inputs, targets, lengths = pad_rolls(rolls)
    assert lengths.tolist() == [3, 1]
    assert inputs[:, 0].tolist() == [[0, 0], [1, 0], [0, 1]]
    assert targets[:, 0].tolist() == [[1, 0], [0, 1], [1, 1]]
    assert inputs[0, 1].tolist() == [0, 0] and targets[:, 1].tolist() == [[0, 1], [0, 0], [0, 0]]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_padding_never_changes_the_nll(tmp_path, cell):
    task = music_task(tmp_path, TINY, f"model.cell={cell}", "data.low=48", "data.high=74")
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        # each piece alone vs. all together, padded to the longest
        rolls = task.splits["train"]
        alone = [frame_nll(*_forward(model, [r]))[0] for r in rolls]
        inputs, targets, lengths = pad_rolls(rolls)
        garbage = targets.clone()
        for b, n in enumerate(lengths.tolist()):
            garbage[n:, b] = 1.0                    # padded targets must not count
            inputs[n:, b] = 1.0                     # nor padded inputs
        logits, _ = model(inputs, lengths=lengths)
        together, _ = frame_nll(logits, garbage, lengths)
    assert torch.allclose(torch.cat(alone), together, atol=1e-5)
    # and the split's figure does not depend on how pieces are batched
    one = task.evaluate(model, "train", "cpu")
    task.cfg.data.eval_batch = 3
    assert task.evaluate(model, "train", "cpu")["nll"] == pytest.approx(one["nll"], rel=1e-6)
    assert one["nll"] == pytest.approx(float(together.sum()) / int(lengths.sum()), rel=1e-5)


def _forward(model, rolls):
    inputs, targets, lengths = pad_rolls(rolls)
    logits, _ = model(inputs, lengths=lengths)
    return logits, targets, lengths


def test_training_windows_are_ragged_slices_of_pieces(tmp_path):
    task = music_task(tmp_path, TINY, "data.seq_len=6", "data.low=48", "data.high=74")
    inputs, targets, lengths = task.batch(torch.Generator().manual_seed(0), 16, "cpu")
    assert inputs.shape == targets.shape and inputs.shape[:2] == (6, 16)
    pieces = [r.float() for r in task.splits["train"]]
    for b in range(16):
        n = int(lengths[b])
        assert n == 6                              # every training piece is longer than 6
        window, previous = targets[:n, b], inputs[:n, b]
        assert torch.equal(previous[1:], window[:-1])   # x(t) = v(t-1) inside the window
        hits = [(r, s) for r in pieces for s in range(len(r) - n + 1)
                if torch.equal(r[s:s + n], window)]
        assert hits and any(torch.equal(previous[0], r[s - 1] if s else torch.zeros(27))
                            for r, s in hits)


# --- training and sampling --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny training run through the CLI, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("music")
    path, run = write_json(tmp, TINY), tmp / "run"
    with contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", "music", "--data", str(path), "--out", str(run), "--json",
                     "--set", "train.steps=80", "train.eval_every=40", "train.lr=0.02",
                     "train.lr_decay=none", "model.hidden=16", "data.seq_len=8",
                     "train.batch_size=8", "data.low=48", "data.high=74"])
    assert code == 0
    return run, json.loads(out.getvalue().splitlines()[-1])


def test_a_tiny_training_run_lowers_the_nll(trained_run):
    run, final = trained_run
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["split"] == "valid"]
    assert valid[0]["nll"] > 15                   # 27 pitches near p = 1/2: ~27 ln 2
    assert final["valid_nll"] < 0.5 * valid[0]["nll"] and final["valid_nll"] == valid[-1]["nll"]
    assert final["valid_accuracy"] > valid[0]["accuracy"]
    assert {"test_nll", "test_loss", "test_accuracy"} <= set(final)


def test_generate_writes_a_midi_file_with_the_sampled_notes(trained_run, capsys, tmp_path):
    run, _ = trained_run
    out = tmp_path / "tune.mid"
    assert main(["generate", str(run), "--length", "40", "--seed", "3", "--temperature", "1",
                 "--prompt", "[[48, 60], [48, 64]]", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "42 steps (2 prompt + 40 sampled, temperature 1) of a 1/8 note at 120 bpm = 10.5 s" \
        in text and f"wrote {out}" in text
    notes = int(re.search(r"(\d+) notes", text).group(1))
    midi = mido.MidiFile(out)                     # a valid file that mido reads back
    ons = [m for m in midi.tracks[0] if m.type == "note_on" and m.velocity > 0]
    offs = [m for m in midi.tracks[0] if m.type == "note_off"]
    assert len(ons) == len(offs) == notes > 0
    assert all(48 <= m.note <= 74 for m in ons)
    # the same draw again, straight from the library: the file holds exactly that roll
    task, _, model = load_run(run)
    prompt = task.encode([[48, 60], [48, 64]])
    roll = task.decode(sample_roll(model, prompt, 40, 1.0, torch.Generator().manual_seed(3),
                                   "cpu"))
    assert roll[:2] == [[48, 60], [48, 64]] and count_notes(roll) == notes
    while roll and not roll[-1]:
        roll.pop()                                # trailing silence has no events
    assert midi_to_roll(out) == roll
    assert midi.length == pytest.approx(42 * 0.25)   # 8th notes at 120 bpm, silence included


def test_generate_without_out_writes_nothing_and_checks_the_prompt(trained_run, tmp_path,
                                                                   capsys):
    run, _ = trained_run
    before = set(tmp_path.rglob("*"))
    assert main(["generate", str(run), "--length", "5", "--temperature", "0"]) == 0
    assert "5 steps (0 prompt + 5 sampled, temperature 0)" in capsys.readouterr().out
    assert set(tmp_path.rglob("*")) == before
    assert main(["generate", str(run), "--prompt", "[[60], [3]]"]) == 2
    assert "step 1: pitch 3 is outside the model's range 48..74" in capsys.readouterr().err
    assert main(["generate", str(run), "--prompt", "[[60], oops]"]) == 2
    assert "the music prompt must be JSON steps" in capsys.readouterr().err
    missing = tmp_path / "no" / "such" / "dir" / "t.mid"
    assert main(["generate", str(run), "--length", "3", "--out", str(missing)]) == 2
    assert f"cannot write the MIDI file {str(missing)!r}" in capsys.readouterr().err


def test_evaluate_reloads_the_data_of_a_saved_run(trained_run, capsys):
    run, final = trained_run
    assert main(["evaluate", str(run), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["test_nll"] == pytest.approx(final["test_nll"], rel=1e-6)


# --- MIDI in and out --------------------------------------------------------------------------


def test_roll_to_midi_holds_repeated_steps_as_one_note(tmp_path):
    roll = [[60], [60, 64], [64], [], [60]]
    midi = roll_to_midi(roll, tmp_path / "a.mid", step_note=8, tempo=90)
    assert count_notes(roll) == 3
    now, events = 0, []
    for msg in mido.MidiFile(tmp_path / "a.mid").tracks[0]:
        now += msg.time
        if msg.type in ("note_on", "note_off"):
            events.append((now, msg.type, msg.note))
    assert events == [(0, "note_on", 60), (240, "note_on", 64), (480, "note_off", 60),
                      (720, "note_off", 64), (960, "note_on", 60), (1200, "note_off", 60)]
    assert midi.length == pytest.approx(5 * 0.5 * 60 / 90)
    assert midi_to_roll(tmp_path / "a.mid") == roll
    assert midi_to_roll(roll_to_midi(roll, step_note=16), step_note=16) == roll


def _handmade_midi(path, ticks_per_beat=96):
    """Two tracks on an eighth-note grid of 48 ticks, with a 16th, an off-grid onset, a
    note_on of velocity 0 as note-off, a drum note, overlapping notes of one pitch and a
    note that is never switched off."""
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    melody = mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_off", note=60, velocity=0, time=96),    # [0, 96)    steps 0-1
        mido.Message("note_on", note=62, velocity=90, time=0),
        mido.Message("note_on", note=62, velocity=0, time=24),     # [96, 120)  step 2
        mido.Message("note_on", note=64, velocity=90, time=0),
        mido.Message("note_off", note=64, velocity=0, time=24),    # [120, 144) step 3
        mido.Message("note_on", note=65, velocity=90, time=56),
        mido.Message("note_off", note=65, velocity=0, time=90),    # [200, 290) steps 4-5
    ])
    chords = mido.MidiTrack([
        mido.Message("note_on", note=48, velocity=90, time=0),     # never off: to the end
        mido.Message("note_on", channel=9, note=36, velocity=90, time=0),   # drums: ignored
        mido.Message("note_off", channel=9, note=36, velocity=0, time=48),
        mido.Message("note_on", note=55, velocity=90, time=48),    # 96
        mido.Message("note_on", note=55, velocity=90, time=48),    # 144, overlapping
        mido.Message("note_off", note=55, velocity=0, time=48),    # 192 ends the first
        mido.Message("note_off", note=55, velocity=0, time=48),    # 240 ends the second
        mido.MetaMessage("end_of_track", time=144),                # 384 = 8 steps
    ])
    midi.tracks.extend([melody, chords])
    midi.save(str(path))
    return path


HANDMADE_ROLL = [[48, 60], [48, 60], [48, 55, 62], [48, 55, 64], [48, 55, 65], [48, 65],
                 [48], [48]]


def test_midi_to_roll_quantises_note_events_to_the_grid(tmp_path):
    path = _handmade_midi(tmp_path / "hand.mid")
    assert midi_to_roll(path) == HANDMADE_ROLL
    # 96 ticks a step: 65 at [200, 290) rounds to [2, 3); the second 55, [144, 240), too
    assert midi_to_roll(path, step_note=4) == [[48, 60], [48, 55, 62, 64], [48, 55, 65], [48]]
    # 24 ticks a step: every event but 65's [200, 290) -> [8, 12) lies on the grid
    assert midi_to_roll(path, step_note=16) == (
        [[48, 60]] * 4 + [[48, 55, 62], [48, 55, 64], [48, 55], [48, 55], [48, 55, 65],
                          [48, 55, 65], [48, 65], [48, 65]] + [[48]] * 4)


def test_unreadable_midi_is_a_data_error(tmp_path):
    from rnnlab.data import DataError

    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd not really")
    with pytest.raises(DataError, match="bad.mid: not a readable MIDI file"):
        midi_to_roll(bad)


def test_split_by_name_is_deterministic_and_order_free():
    names = [f"tune{i}" for i in range(40)]
    split = split_by_name(names, 0.15, 0.15)
    assert [len(split[s]) for s in ("train", "valid", "test")] == [28, 6, 6]
    assert sorted(sum(split.values(), [])) == sorted(names)
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert split_by_name(shuffled, 0.15, 0.15) == split


def test_converter_on_generated_midi_files(tmp_path, capsys):
    src = tmp_path / "midi"
    src.mkdir()
    for i in range(10):
        _handmade_midi(src / f"reel{i}.mid")
    (src / "notes.txt").write_text("not a tune")
    out = tmp_path / "n.json"
    assert pianoroll.main(["nottingham", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train      6 pieces" in printed and "NLL per step" in printed
    splits = read_pianoroll(out)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [6, 2, 2]
    assert all(piece == HANDMADE_ROLL for s in splits.values() for piece in s)
    # the same from a tar.gz archive, read in place, and from the folder holding it
    archive = tmp_path / "arch" / "nottingham_midi.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(10):
            tar.add(src / f"reel{i}.mid", arcname=f"MIDI/reel{i}.mid")
    assert convert_nottingham(archive.parent, None) == splits
    assert [name for name, _ in nottingham_midis(archive)] == sorted(
        f"reel{i}" for i in range(10))
    # a broken member names the archive and the member
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("MIDI/broken.mid")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"junk"))
    assert pianoroll.main(["nottingham", str(archive), str(out)]) == 2
    assert "nottingham_midi.tar.gz:MIDI/broken.mid: not a readable MIDI file" in \
        capsys.readouterr().err


def test_bernoulli_baseline_matches_a_hand_computation(tmp_path, capsys):
    train = [[[60], []]]                            # N = 2 steps, pitch 60 once
    test = [[[60], [61]]]
    p60, p61 = (1 + 1) / (2 + 2), (0 + 1) / (2 + 2)   # Laplace: (n + 1) / (N + 2)
    want = (-(math.log(p60) + math.log(1 - p61)) - (math.log(1 - p60) + math.log(p61))) / 2
    assert bernoulli_baseline(train, test, low=60, high=61) == pytest.approx(want)
    path = write_json(tmp_path, {"train": train, "valid": test, "test": test})
    assert pianoroll.main(["baseline", str(path)]) == 0
    assert "test NLL per step" in capsys.readouterr().out


def test_pitch_names():
    assert [pitch_name(p) for p in (21, 60, 61, 108)] == ["A0", "C4", "C#4", "C8"]


# --- real data ------------------------------------------------------------------------------


def test_converter_on_real_nottingham_tunes(shared_data, tmp_path):
    src = shared_data("nottingham")
    out = tmp_path / "nottingham.json"
    splits = convert_nottingham(src, out, limit=20)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [14, 3, 3]
    assert read_pianoroll(out) == splits
    pieces = [p for s in splits.values() for p in s]
    pitches = [q for p in pieces for step in p for q in step]
    assert min(pitches) >= 21 and max(pitches) <= 108
    assert 2 < len(pitches) / sum(len(p) for p in pieces) < 6    # melody + chords
    # ashover1 (3/4, G major): two beats of rest, then E5 over a G-major chord from bar 2
    name, midi = next(iter(nottingham_midis(src)))
    assert name == "ashover1"
    roll = midi_to_roll(midi)
    assert roll[:4] == [[], [], [], []] and roll[4] == [76]
    assert {43, 47, 50} <= set(roll[6])
    task = music_task(tmp_path, json.loads(out.read_text()))
    assert task.evaluate(task.build_model(), "valid", "cpu")["nll"] > 0
