"""Tasks: a registry from name to :class:`~rnnlab.tasks.base.Task` class.

    rnnlab tasks                  lists them; ``rnnlab train NAME`` trains one
"""

from .base import Task, TaskError
from .caption import Caption
from .char_lm import CharLM
from .digits import Digits
from .forecast import Forecast
from .mackey_glass import MackeyGlass
from .memnet import MemNet
from .music import Music
from .ntm import NTMCopy, NTMRecall, NTMRepeatCopy
from .pos import Pos
from .sentiment import Sentiment
from .seq_length import SeqLength
from .synthetic import Adding, Copy
from .temporal_order import TemporalOrder
from .translate import Translate
from .tree_sentiment import TreeSentiment
from .word_lm import WordLM

__all__ = ["TASKS", "Task", "TaskError", "CharLM", "Music", "Adding", "Copy", "Sentiment",
           "WordLM", "Translate", "Caption", "Forecast", "Digits", "Pos", "TreeSentiment",
           "NTMCopy", "NTMRepeatCopy", "NTMRecall", "MemNet", "SeqLength",
           "MackeyGlass", "TemporalOrder", "get_task", "load_run"]

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (CharLM, Music, Adding, Copy, WordLM,
                                                          Sentiment, Translate, Caption, Forecast,
                                                          Digits, Pos, TreeSentiment, NTMCopy,
                                                          NTMRepeatCopy, NTMRecall, MemNet,
                                                          SeqLength, MackeyGlass, TemporalOrder)}


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; :class:`TaskError` listing the valid names if none."""
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None


def load_run(path, data_path: str | None = None, need=None):
    """Rebuild ``(task, cfg, model)`` from a run directory written by :func:`rnnlab.train`.

    ``data_path`` replaces the saved ``data.path`` (for tasks that read a file). ``need`` is
    the files the directory must hold (default: config, task state and weights); without
    the weights file the model keeps its fresh initialisation. Raises
    :class:`rnnlab.training.rundir.RunDirError` for a missing or incomplete directory.
    """
    from ..config import ConfigError, from_dict
    from ..training import rundir

    CONFIG, TASK_STATE, WEIGHTS = rundir.CONFIG, rundir.TASK_STATE, rundir.WEIGHTS
    run = rundir.check_run_dir(path, rundir.REQUIRED if need is None else need)
    raw = rundir.read_json(run / CONFIG)
    if not isinstance(raw, dict) or not isinstance(raw.get("task"), str):
        raise ConfigError(f"{str(run / CONFIG)!r} does not name its task")
    cls = get_task(raw.pop("task"))
    cfg = from_dict(cls.default_config(), raw, where=str(run / CONFIG))
    if data_path is not None:
        if not cls.uses_data_file:
            raise TaskError(f"task {cls.name!r} generates its own data; --data does not apply")
        cfg.data.path = data_path
    state = rundir.read_json(run / TASK_STATE)
    task = cls(cfg, state=state)
    model = task.build_model()
    if (run / WEIGHTS).is_file():
        rundir.load_weights(run / WEIGHTS, model)
    return task, cfg, model
