"""The command line, called as ``main([...])``: output contract and bad input."""

import json

import pytest

from rnnlab.cli import main
from rnnlab.training import rundir

TINY = ["train.threads=1", "train.device=cpu"]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("It was the best of times, it was the worst of times. " * 30,
                    encoding="utf-8")
    return path


@pytest.fixture
def char_run(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    code = main(["train", "char-lm", "--data", str(text_file), "--out", str(out), "--json",
                 "--set", *TINY, "train.steps=3", "model.hidden=16", "model.embed=8",
                 "data.seq_len=16", "train.eval_every=3"])
    assert code == 0
    return out, capsys.readouterr()


def test_tasks_lists_every_task(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("char-lm", "adding", "copy"):
        assert name in out


def test_train_char_lm_json_and_run_dir(char_run):
    out, captured = char_run
    result = last_json(captured.out)
    assert result["task"] == "char-lm" and result["run"] == str(out)
    for key in ("valid_bpc", "test_bpc", "valid_loss", "test_loss"):
        assert isinstance(result[key], float) and 0 < result[key] < 10
    assert isinstance(result["sample"], str) and isinstance(result["untrained_sample"], str)
    for name in (rundir.CONFIG, rundir.TASK_STATE, rundir.WEIGHTS, rundir.TRAIN_STATE,
                 rundir.METRICS, rundir.PLOT, rundir.SUMMARY):
        assert (out / name).is_file(), name
    vocab = json.loads((out / rundir.TASK_STATE).read_text())["vocab"]
    assert set(vocab) == set("It was the best of times, it was the worst of times. ")


def test_evaluate_reproduces_training_figures(char_run, capsys):
    out, captured = char_run
    trained = last_json(captured.out)
    assert main(["evaluate", str(out), "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["test_bpc"] == pytest.approx(trained["test_bpc"], rel=1e-5)
    assert result["valid_bpc"] == pytest.approx(trained["valid_bpc"], rel=1e-5)


def test_generate_uses_prompt_length_and_seed(char_run, capsys):
    out, _ = char_run
    args = ["generate", str(out), "--prompt", "It was", "--length", "40", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out.rstrip("\n")
    assert first.startswith("It was") and len(first) == len("It was") + 40
    assert main(args) == 0
    assert capsys.readouterr().out.rstrip("\n") == first
    assert main(["generate", str(out), "--length", "5", "--json"]) == 0
    assert len(last_json(capsys.readouterr().out)["sample"]) >= 5


def test_generate_prompt_outside_vocab_is_an_error(char_run, capsys):
    out, _ = char_run
    assert main(["generate", str(out), "--prompt", "zebra Q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error:") and "'Qz'" in err


def test_train_adding_and_copy_json(tmp_path, capsys):
    assert main(["train", "adding", "--out", str(tmp_path / "a"), "--json", "--set", *TINY,
                 "train.steps=3", "model.hidden=8", "data.length=8",
                 "data.valid_size=50", "data.test_size=50"]) == 0
    result = last_json(capsys.readouterr().out)
    assert {"valid_mse", "test_mse"} <= set(result)
    assert main(["train", "copy", "--out", str(tmp_path / "c"), "--json", "--set", *TINY,
                 "train.steps=3", "model.hidden=8", "data.delay=3", "data.symbols=3",
                 "model.cell=gru", "data.valid_size=50", "data.test_size=50"]) == 0
    result = last_json(capsys.readouterr().out)
    assert 0 <= result["test_accuracy"] <= 1 and result["test_loss"] > 0
    assert main(["evaluate", str(tmp_path / "c"), "--json"]) == 0
    again = last_json(capsys.readouterr().out)
    assert again["test_accuracy"] == result["test_accuracy"]


def test_existing_run_dir_is_never_overwritten(tmp_path, capsys):
    args = ["train", "adding", "--out", str(tmp_path / "r"), "--json", "--set", *TINY,
            "train.steps=1", "model.hidden=4", "data.length=4", "data.valid_size=8",
            "data.test_size=8"]
    assert main(args) == 0
    first = last_json(capsys.readouterr().out)["run"]
    assert main(args) == 0
    second = last_json(capsys.readouterr().out)["run"]
    assert first == str(tmp_path / "r") and second == str(tmp_path / "r-1")


def assert_user_error(capsys, argv, *needles):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("rnnlab: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in err, (needle, err)


def test_unknown_task(capsys):
    assert_user_error(capsys, ["train", "nope"], "'nope'", "char-lm", "adding", "copy")


def test_unknown_set_key_lists_valid_keys(capsys, tmp_path):
    assert_user_error(capsys, ["train", "adding", "--out", str(tmp_path / "x"),
                               "--set", "train.stepz=3"], "train.stepz", "train.steps",
                      "model.hidden")
    assert not (tmp_path / "x").exists()


def test_bad_value(capsys):
    assert_user_error(capsys, ["train", "adding", "--set", "model.hidden=big"],
                      "model.hidden", "int", "'big'")


def test_non_utf8_file(capsys, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("line one\ncaf\xe9 au lait\n".encode("latin-1"))
    assert_user_error(capsys, ["train", "char-lm", "--data", str(bad)],
                      str(bad), "UTF-8", "offset 12", "line 2")


def test_empty_and_short_and_missing_files(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_user_error(capsys, ["train", "char-lm", "--data", str(empty)], str(empty), "empty")
    short = tmp_path / "short.txt"
    short.write_text("abc" * 10)
    assert_user_error(capsys, ["train", "char-lm", "--data", str(short)], "too short")
    assert_user_error(capsys, ["train", "char-lm", "--data", str(tmp_path / "none.txt")],
                      "does not exist")
    assert_user_error(capsys, ["train", "adding", "--data", str(short)], "--data")


def test_missing_or_incomplete_run_dir(capsys, tmp_path):
    missing = tmp_path / "no-run"
    assert_user_error(capsys, ["evaluate", str(missing)], str(missing), "does not exist")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / rundir.CONFIG).write_text("{}")
    assert_user_error(capsys, ["generate", str(partial)], str(partial), rundir.WEIGHTS,
                      rundir.TASK_STATE)


def test_generate_on_a_task_without_sampling(capsys, tmp_path):
    run = tmp_path / "a"
    assert main(["train", "adding", "--out", str(run), "--json", "--set", *TINY,
                 "train.steps=1", "model.hidden=4", "data.length=4", "data.valid_size=8",
                 "data.test_size=8"]) == 0
    capsys.readouterr()
    assert_user_error(capsys, ["generate", str(run)], "adding", "does not generate")


def test_predict_on_a_task_without_predict(capsys, tmp_path):
    run = tmp_path / "a"
    assert main(["train", "adding", "--out", str(run), "--json", "--set", *TINY,
                 "train.steps=1", "model.hidden=4", "data.length=4", "data.valid_size=8",
                 "data.test_size=8"]) == 0
    capsys.readouterr()
    for command in ("predict", "translate", "caption"):
        assert_user_error(capsys, [command, str(run), "some input"], "adding", "no predict")


def test_generate_out_writes_the_sample(char_run, capsys, tmp_path):
    out, _ = char_run
    sample = tmp_path / "sample.txt"
    assert main(["generate", str(out), "--length", "20", "--out", str(sample), "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert sample.read_text(encoding="utf-8") == result["sample"]


def test_unknown_preset_lists_the_presets(capsys, monkeypatch):
    from rnnlab.tasks import Adding
    assert_user_error(capsys, ["train", "adding", "--config", "huge"], "no preset 'huge'",
                      "none")
    monkeypatch.setattr(Adding, "presets", {"short": ["data.length=4", "train.steps=1"]})
    assert_user_error(capsys, ["train", "adding", "--config", "huge"], "short")


def test_preset_applies_before_set(capsys, tmp_path, monkeypatch):
    from rnnlab.tasks import Adding
    monkeypatch.setattr(Adding, "presets", {"short": [
        "data.length=4", "train.steps=2", "model.hidden=4", "data.valid_size=8",
        "data.test_size=8"]})
    run = tmp_path / "p"
    assert main(["train", "adding", "--config", "short", "--out", str(run), "--json",
                 "--set", *TINY, "train.steps=1"]) == 0
    saved = json.loads((run / rundir.CONFIG).read_text())
    assert saved["data"]["length"] == 4 and saved["train"]["steps"] == 1
    assert main(["tasks"]) == 0
    assert "presets (--config): short" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "rnnlab", "tasks"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "adding" in done.stdout


def test_evaluate_on_text_outside_the_vocabulary(char_run, capsys, tmp_path):
    out, _ = char_run
    other = tmp_path / "other.txt"
    other.write_text("Zzz! " * 100, encoding="utf-8")
    assert_user_error(capsys, ["evaluate", str(out), "--data", str(other)], str(other),
                      "vocabulary", "'!Zz'")
