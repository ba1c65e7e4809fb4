"""Config overrides, type checking and the JSON round trip."""

import json
from dataclasses import dataclass
from typing import Literal

import pytest

from rnnlab.config import (
    ConfigError,
    RunConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    to_dict,
    valid_keys,
)
from rnnlab.tasks import TASKS


@dataclass
class Model:
    cell: str = "lstm"
    hidden: int = 8
    dropout: float = 0.0
    mode: Literal["a", "b"] = "a"


@dataclass
class Data:
    path: str | None = None
    flag: bool = False


def make():
    return RunConfig(model=Model(), data=Data(), train=TrainConfig())


def test_overrides_parse_each_field_type():
    cfg = apply_overrides(make(), ["train.steps=7", "model.dropout=0.25", "model.cell=gru",
                                   "data.flag=true", "train.clip_norm=none", "model.mode=b",
                                   "data.path=corpus.txt", "train.optimizer=sgd"])
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.model.dropout == 0.25 and cfg.model.cell == "gru" and cfg.model.mode == "b"
    assert cfg.data.flag is True and cfg.data.path == "corpus.txt"
    assert cfg.train.clip_norm is None and cfg.train.optimizer == "sgd"
    apply_overrides(cfg, ["train.clip_norm=2.5", "data.path=null"])
    assert cfg.train.clip_norm == 2.5 and cfg.data.path is None


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        apply_overrides(make(), ["train.stepz=3"])
    message = str(err.value)
    assert "train.stepz" in message
    for key in ("train.steps", "model.hidden", "data.path", "train.seed"):
        assert key in message


@pytest.mark.parametrize("override, expected", [
    ("train.steps=ten", "int"),
    ("train.steps=1.5", "int"),
    ("model.dropout=abc", "float"),
    ("data.flag=maybe", "bool"),
    ("model.mode=c", "'a', 'b'"),
    ("train.optimizer=rmsprop", "'adam'"),
])
def test_bad_value_names_key_type_and_value(override, expected):
    key, _, value = override.partition("=")
    with pytest.raises(ConfigError) as err:
        apply_overrides(make(), [override])
    message = str(err.value)
    assert key in message and expected in message and repr(value) in message


@pytest.mark.parametrize("override", ["train", "=3", "train=3", "model.hidden.x=1"])
def test_malformed_or_non_leaf_override(override):
    with pytest.raises(ConfigError):
        apply_overrides(make(), [override])


def test_json_round_trip_and_unknown_saved_key():
    cfg = apply_overrides(make(), ["train.steps=11", "data.path=x.txt", "model.mode=b"])
    back = from_dict(make(), json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg
    saved = to_dict(cfg)
    saved["train"]["stepz"] = 1
    with pytest.raises(ConfigError, match="stepz"):
        from_dict(make(), saved)
    saved = to_dict(cfg)
    saved["model"]["hidden"] = "big"
    with pytest.raises(ConfigError, match="model.hidden"):
        from_dict(make(), saved)


def test_every_task_has_the_shared_train_keys():
    for cls in TASKS.values():
        keys = valid_keys(cls.default_config())
        for key in ("train.steps", "train.seed", "train.checkpoint_every", "train.lr"):
            assert key in keys, (cls.name, key)
    # the chain-RNN tasks take any cell by name (tree, reservoir and memory nets do not)
    for name in ("char-lm", "word-lm", "adding", "copy", "pos", "sentiment", "translate",
                 "caption", "music", "forecast", "digits"):
        assert "model.cell" in valid_keys(TASKS[name].default_config()), name


def test_train_config_check_rejects_nonsense():
    with pytest.raises(ConfigError, match="train.steps"):
        TrainConfig(steps=0).check()
    with pytest.raises(ConfigError, match="train.lr"):
        TrainConfig(lr=-1.0).check()
