"""digits: the IDX reader and its errors, MNIST directory layouts and splits, sequences by
row / pixel / permuted pixel, tiny runs through the CLI, the real MNIST t10k headers."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import ConfigError, apply_overrides
from rnnlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, find_mnist, read_idx, read_mnist_pair
from rnnlab.data.text import DataError
from rnnlab.tasks import TASKS
from rnnlab.tasks.digits import Digits, image_sequences

TINY = ["train.threads=1", "train.device=cpu"]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def fake_mnist(n: int, side: int = 28, seed: int = 0):
    """Images whose label is the row holding a bright bar (learnable row by row)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, side, side)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label + 3, 4:side - 4] = 255
    return images, labels


def write_mnist(directory, prefix, images, labels, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    opener = gzip.open if gz else open
    paths = (directory / f"{prefix}-images-idx3-ubyte{ext}",
             directory / f"{prefix}-labels-idx1-ubyte{ext}")
    for path, array in zip(paths, (images, labels)):
        with opener(path, "wb") as f:
            f.write(idx_bytes(array))
    return paths


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# --- the IDX reader -------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images, labels = fake_mnist(5)
    ipath, lpath = write_mnist(tmp_path, "t10k", images, labels, gz=gz)
    got_images, got_labels = read_mnist_pair(ipath, lpath)
    assert got_images.shape == (5, 28, 28) and got_images.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    path = tmp_path / "ints.idx"
    path.write_bytes(idx_bytes(array, type_code=0x0C))
    assert read_idx(path).tolist() == array.tolist()
    assert path.read_bytes()[:4] == b"\x00\x00\x0c\x02"


def corrupt(tmp_path, what):
    images, labels = fake_mnist(6)
    ipath, lpath = write_mnist(tmp_path / "d", "t10k", images, labels, gz=False)
    if what == "magic":
        raw = bytearray(ipath.read_bytes())
        raw[3] = 2                                         # 0x00000802, not 2051
        ipath.write_bytes(bytes(raw))
        return ipath, "wrong magic number 2050 (0x00000802); expected 2051"
    if what == "truncated":
        ipath.write_bytes(ipath.read_bytes()[:-100])
        return ipath, "truncated IDX file: dims (6, 28, 28) need 4704 data bytes, the file has"
    if what == "header":
        lpath.write_bytes(lpath.read_bytes()[:6])
        return lpath, "truncated IDX file: the header of 1 dimensions needs 8 bytes"
    if what == "count":
        lpath.write_bytes(idx_bytes(labels[:4]))
        return ipath, f"holds 6 images but {lpath} holds 4 labels"
    if what == "gzip":
        ipath.unlink()
        bad = ipath.with_name(ipath.name + ".gz")
        bad.write_bytes(gzip.compress(idx_bytes(images))[:300])
        return bad, "corrupt or truncated gzip data"
    if what == "label":
        lpath.write_bytes(idx_bytes(np.array([1, 2, 12, 3, 4, 5], dtype=np.uint8)))
        return lpath, "label 12 at index 2 is not a digit 0..9"
    if what == "unpaired":
        lpath.unlink()
        return tmp_path / "d", "t10k-images-idx3-ubyte has no matching labels file"
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["magic", "truncated", "header", "count", "gzip", "label",
                                  "unpaired"])
def test_idx_errors_name_the_file_through_the_cli(tmp_path, capsys, what):
    path, message = corrupt(tmp_path, what)
    code = main(["train", "digits", "--data", str(tmp_path / "d"), "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rnnlab: error: ")
    assert str(path) in err and message in err
    assert not (tmp_path / "run").exists()


def test_missing_or_empty_mnist_directory(tmp_path, capsys):
    assert main(["train", "digits", "--data", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "digits", "--data", str(tmp_path / "empty")]) == 2
    assert "no MNIST IDX files; expected t10k-images-idx3-ubyte" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs the IDX directory"):
        Digits(apply_overrides(Digits.default_config(), ["data.source=mnist"]))


# --- splits and sequences -------------------------------------------------------------------


def test_sklearn_split_is_fixed_and_disjoint():
    a = Digits(Digits.default_config())
    b = Digits(apply_overrides(Digits.default_config(), ["train.seed=7"]))
    sizes = [len(a.splits[k][1]) for k in ("train", "valid", "test")]
    assert sizes == [1257, 179, 361] and a.side == 8 and a.peak == 16
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])
    flat = {k: {tuple(x.flatten().tolist()) for x in a.splits[k][0]} for k in a.splits}
    # a few of the 1,797 images are exact duplicates of each other; nearly none cross splits
    assert len(flat["train"] & flat["test"]) < 5


def test_mnist_t10k_only_is_split_70_10_20_and_train_plus_t10k_keeps_t10k_as_test(tmp_path):
    images, labels = fake_mnist(50)
    write_mnist(tmp_path / "one", "t10k", images, labels)
    task = Digits(apply_overrides(Digits.default_config(), [f"data.path={tmp_path / 'one'}"]))
    assert task.source == "mnist" and task.side == 28 and task.peak == 255
    assert [len(task.splits[k][1]) for k in ("train", "valid", "test")] == [35, 5, 10]
    write_mnist(tmp_path / "both", "train", images[:40], labels[:40], gz=False)
    write_mnist(tmp_path / "both", "t10k", images[40:], labels[40:])
    assert set(find_mnist(tmp_path / "both")) == {"train", "t10k"}
    task = Digits(apply_overrides(Digits.default_config(), [f"data.path={tmp_path / 'both'}",
                                                            "data.mnist_valid=8"]))
    assert [len(task.splits[k][1]) for k in ("train", "valid", "test")] == [32, 8, 10]
    assert torch.equal(task.splits["valid"][0], torch.from_numpy(images[32:40]))
    assert torch.equal(task.splits["test"][1], torch.from_numpy(labels[40:].astype(np.int64)))


def test_image_sequences_rows_pixels_and_permutation():
    images = torch.arange(2 * 9, dtype=torch.float32).view(2, 3, 3)
    rows = image_sequences(images, "rows", None)
    assert rows.shape == (3, 2, 3) and torch.equal(rows[1, 0], images[0, 1])
    pixels = image_sequences(images, "pixels", None)
    assert pixels.shape == (9, 2, 1) and torch.equal(pixels[:, 1, 0], images[1].flatten())
    perm = torch.tensor([8, 0, 7, 1, 6, 2, 5, 3, 4])
    permuted = image_sequences(images, "pixels", perm)
    assert torch.equal(permuted[:, 0, 0], images[0].flatten()[perm])
    a = Digits(apply_overrides(Digits.default_config(), ["data.permute=true"]))
    b = Digits(apply_overrides(Digits.default_config(), ["data.permute=true", "train.seed=3"]))
    assert torch.equal(a.permutation, b.permutation)            # fixed by data.permute_seed
    assert sorted(a.permutation.tolist()) == list(range(64))
    assert not torch.equal(a.permutation, torch.arange(64))


@pytest.mark.parametrize("order, T, F", [("rows", 8, 8), ("pixels", 64, 1)])
def test_batch_shapes(order, T, F):
    task = Digits(apply_overrides(Digits.default_config(), [f"data.order={order}",
                                                            "model.hidden=8"]))
    xs, labels = task.batch(torch.Generator().manual_seed(0), 5, "cpu")
    assert xs.shape == (T, 5, F) and labels.shape == (5,)
    assert 0 <= xs.min() and xs.max() <= 1
    assert task.build_model()(xs).shape == (5, 10)


# --- tiny runs through the CLI --------------------------------------------------------------


def test_sklearn_rows_tiny_run_beats_chance_and_predicts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "digits", "--out", str(out), "--json", "--set", *TINY,
                 "train.steps=150", "train.eval_every=150", "model.hidden=32"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["test_accuracy"] > 0.6 and result["valid_accuracy"] > 0.6
    assert main(["predict", str(out), "0", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("0: predicted ")
    assert main(["predict", str(out), "361"]) == 2
    assert "indices of test-split images, 0 to 360" in capsys.readouterr().err


def test_mnist_rows_tiny_run_learns_the_bar(tmp_path, capsys):
    images, labels = fake_mnist(400)
    write_mnist(tmp_path / "d", "t10k", images, labels)
    out = tmp_path / "run"
    assert main(["train", "digits", "--data", str(tmp_path / "d"), "--out", str(out),
                 "--json", "--set", *TINY, "train.steps=60", "train.eval_every=60",
                 "model.hidden=16", "train.lr=1e-2"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["test_accuracy"] > 0.5
    assert main(["evaluate", str(out), "--json"]) == 0
    again = last_json(capsys.readouterr().out)
    assert again["test_accuracy"] == result["test_accuracy"]
    assert TASKS["digits"] is Digits


# --- the real data --------------------------------------------------------------------------


def test_mnist_t10k_headers(shared_data):
    folder = shared_data("mnist_t10k")
    ipath, lpath = find_mnist(folder)["t10k"]
    ihead = gzip.open(ipath).read(16)
    lhead = gzip.open(lpath).read(8)
    assert struct.unpack(">IIII", ihead) == (IMAGES_MAGIC, 10000, 28, 28) == (2051, 10000, 28, 28)
    assert struct.unpack(">II", lhead) == (LABELS_MAGIC, 10000)
    images, labels = read_mnist_pair(ipath, lpath)
    assert images.shape == (10000, 28, 28) and labels[:3].tolist() == [7, 2, 1]
    assert np.bincount(labels).tolist()[:2] == [980, 1135]   # the known t10k class counts


def test_a_missing_data_path_is_an_error_not_a_fallback_to_sklearn(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Digits(apply_overrides(Digits.default_config(), [f"data.path={tmp_path / 'x'}"]))
