"""Hardened inputs: every reader, fed random bytes, truncated files, wrong encodings and huge
values (hypothesis), either reads the input or raises the library's own error naming the file
-- never a crash from deep inside (KeyError, IndexError, struct.error, UnicodeDecodeError...).
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.config import ConfigError, apply_overrides, from_dict
from rnnlab.data.coco import load_image, read_coco_captions
from rnnlab.data.conllu import read_conllu
from rnnlab.data.idx import read_idx
from rnnlab.data.pianoroll import read_pianoroll
from rnnlab.data.ptb import find_split_files, read_sentences
from rnnlab.data.series import read_series
from rnnlab.data.text import DataError, read_text
from rnnlab.data.trees import read_trees
from rnnlab.data.tsv import read_labelled, read_pairs
from rnnlab.tasks import Adding, TaskError, load_run
from rnnlab.training import rundir
from rnnlab.training.rundir import RunDirError

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# one valid sample per format: the mutations start from these
SAMPLES = {
    "text": "It was the best of times.\nIt was the worst of times.\n",
    "conllu": ("# text = The cat sat\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n"
               "2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n3-4\tsat.\t_\t_\t_\t_\t_\t_\t_\t_\n"
               "3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_\n\n"),
    "trees": "(3 (2 It) (4 (2 's) (3 good)))\n(1 (1 bad) (2 film))\n",
    "tsv": "a great movie\t1\nawful\t0\n",
    "csv": "date,a,b,OT\n2016-07-01 00:00:00,1.5,2,3.25\n2016-07-01 01:00:00,1.25,2.5,3\n",
    "pianoroll": json.dumps({"train": [[[60, 64], [62], []]], "valid": [[[60]]],
                             "test": [[[67, 71]]]}),
    "coco": json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                        "annotations": [{"image_id": 1, "caption": "a red square"}]}),
    "ptb": " the cat sat <unk> \n the dog ran \n",
    "pairs": "Go.\tVa !\tCC-BY 2.0 (France)\nI am cold.\tJ'ai froid.\tCC-BY\n",
}


def mutations(sample: str):
    """Random bytes, truncations, byte edits, other encodings, huge numbers."""
    raw = sample.encode("utf-8")
    truncated = st.integers(0, len(raw)).map(lambda n: raw[:n])
    edited = st.tuples(st.integers(0, max(len(raw) - 1, 0)), st.binary(min_size=1, max_size=4)
                       ).map(lambda e: raw[:e[0]] + e[1] + raw[e[0] + 1:])
    encoded = st.sampled_from(["utf-16", "latin-1", "cp1252"]).map(
        lambda enc: (sample + "é ü ß").encode(enc, errors="replace"))
    huge = st.sampled_from(["1e308", "-1e999", "9" * 400, "nan", "inf", "-0"]).map(
        lambda big: sample.replace("1", big, 1).encode("utf-8"))
    return st.one_of(st.binary(max_size=300), truncated, edited, encoded, huge)


def write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


def assert_clean(read, path: Path, errors=(DataError,)):
    """``read(path)`` returns, or raises one of ``errors`` whose message names the file."""
    try:
        read(path)
    except errors as e:
        assert path.name in str(e) or str(path.parent) in str(e), str(e)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


@FUZZ
@given(mutations(SAMPLES["text"]))
def test_read_text(data):
    assert_clean(read_text, write(data, "corpus.txt"))


@FUZZ
@given(mutations(SAMPLES["conllu"]))
def test_read_conllu(data):
    assert_clean(read_conllu, write(data, "x.conllu"))


@FUZZ
@given(mutations(SAMPLES["conllu"]))
def test_read_conllu_gz(data):
    assert_clean(read_conllu, write(gzip.compress(data)[:max(10, len(data))], "x.conllu.gz"))


@FUZZ
@given(mutations(SAMPLES["trees"]))
def test_read_trees(data):
    assert_clean(read_trees, write(data, "train.txt"))


@FUZZ
@given(mutations(SAMPLES["tsv"]))
def test_read_labelled(data):
    assert_clean(read_labelled, write(data, "yelp_labelled.txt"))


@FUZZ
@given(mutations(SAMPLES["pairs"]))
def test_read_pairs(data):
    assert_clean(read_pairs, write(data, "fra.txt"))


@FUZZ
@given(mutations(SAMPLES["pairs"]))
def test_read_pairs_gz(data):
    assert_clean(read_pairs, write(gzip.compress(data)[:max(10, len(data))], "fra.txt.gz"))


@FUZZ
@given(mutations(SAMPLES["csv"]))
def test_read_series(data):
    assert_clean(read_series, write(data, "ETTh1.csv"))


@FUZZ
@given(mutations(SAMPLES["pianoroll"]))
def test_read_pianoroll(data):
    assert_clean(read_pianoroll, write(data, "rolls.json"))


@FUZZ
@given(mutations(SAMPLES["coco"]))
def test_read_coco_captions(data):
    path = write(data, "captions.json")
    (path.parent / "a.png").write_bytes(b"")
    assert_clean(read_coco_captions, path)


@FUZZ
@given(st.binary(max_size=400))
def test_load_image(data):
    assert_clean(lambda p: load_image(p, 16), write(data, "img.jpg"))


@FUZZ
@given(st.one_of(st.binary(max_size=64),
                 st.tuples(st.sampled_from([2049, 2051, 0x0803, 0x0801, 7]),
                           st.lists(st.integers(0, 2 ** 32 - 1), max_size=4),
                           st.binary(max_size=64)).map(
                     lambda t: t[0].to_bytes(4, "big")
                     + b"".join(n.to_bytes(4, "big") for n in t[1]) + t[2])))
def test_read_idx(data):
    assert_clean(read_idx, write(data, "t10k-images-idx3-ubyte"))


@FUZZ
@given(mutations(SAMPLES["ptb"]))
def test_word_lm_split_files(data):
    path = write(data, "ptb.train.txt")
    for split in ("valid", "test"):
        (path.parent / f"ptb.{split}.txt").write_bytes(data)

    def read(p):
        files = find_split_files(p.parent)
        for f in files.values():
            read_sentences(f)
    assert_clean(read, path)


# --- configs and run directories ----------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3), max_leaves=8)


@FUZZ
@given(st.dictionaries(st.sampled_from(["model", "data", "train", "x"]),
                       st.dictionaries(st.sampled_from(["hidden", "cell", "steps", "lr",
                                                        "length", "zz"]), JSONISH, max_size=3),
                       max_size=3) | JSONISH)
def test_config_from_dict(data):
    try:
        from_dict(Adding.default_config(), data, where="config.json")
    except ConfigError as e:
        assert "config.json" in str(e)


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=3))
def test_config_overrides(overrides):
    try:
        apply_overrides(Adding.default_config(), overrides)
    except ConfigError:
        pass


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    from rnnlab.cli import main
    run = tmp_path_factory.mktemp("fuzzrun") / "run"
    assert main(["train", "adding", "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "train.steps=1", "model.hidden=4", "data.length=4",
                 "data.valid_size=4", "data.test_size=4"]) == 0
    return run


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from([rundir.CONFIG, rundir.TASK_STATE, rundir.WEIGHTS,
                        rundir.TRAIN_STATE]), st.data())
def test_run_directory_files(good_run, name, data):
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-fuzz-")) / "run"
    shutil.copytree(good_run, folder)
    original = (folder / name).read_bytes()
    cut = data.draw(st.integers(0, len(original)))
    junk = data.draw(st.binary(max_size=40))
    (folder / name).write_bytes(original[:cut] + junk)
    try:
        if name == rundir.TRAIN_STATE:
            try:
                state = rundir.load_train_state(folder / name)
                assert isinstance(state, dict)
            except RunDirError as e:
                assert name in str(e)
        else:
            try:
                load_run(folder)
            except (RunDirError, ConfigError, DataError, TaskError) as e:
                assert str(folder) in str(e) or name in str(e), str(e)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def test_train_state_is_never_unpickled_freely(good_run, tmp_path):
    """A pickle that would run code is refused (torch.load with weights_only=True)."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"step": Boom()}))
    with pytest.raises(RunDirError):
        rundir.load_train_state(tmp_path / "evil.pt")
    torch.save({"x": torch.ones(1)}, tmp_path / "ok.pt")
    assert rundir.load_train_state(tmp_path / "ok.pt")["x"].item() == 1
