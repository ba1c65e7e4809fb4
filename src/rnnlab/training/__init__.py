"""Training: the model-agnostic loop and what it stands on.

    loop            train(task, cfg, run): batch -> forward -> loss -> backward -> clip -> step
    session         the seeded model on its device, the run's records, evaluation, the end
    optim           optimizer, learning-rate schedule, gradient clipping
    checkpoint      save a run's training state and restore it (--resume)
    rundir          the run directory's files (config, weights, metrics, plots)
    distributed     torchrun data parallel (torch's DistributedDataParallel)
    regularizers    Pascanu et al.'s vanishing-gradient regulariser
"""

from .loop import train
from .optim import clip_gradients, make_optimizer, make_schedule, step_decay
from .session import RANK_STRIDE, Session, TrainingError

__all__ = ["train", "TrainingError", "Session", "make_optimizer", "make_schedule",
           "clip_gradients", "step_decay", "RANK_STRIDE"]
