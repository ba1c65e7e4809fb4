"""Training: the model-agnostic loop and what it stands on.

    loop            train(task, cfg, run): batch -> forward -> loss -> backward -> clip -> step
    optim           optimizer, learning-rate schedule, gradient clipping
    checkpoint      save a run's training state and restore it (--resume)
    rundir          the run directory's files (config, weights, metrics, plots)
    distributed     torchrun data parallel (torch's DistributedDataParallel)
    regularizers    Pascanu et al.'s vanishing-gradient regulariser
"""

from .loop import RANK_STRIDE, TrainingError, clip_gradients, make_optimizer, step_decay, train

__all__ = ["train", "TrainingError", "make_optimizer", "clip_gradients", "step_decay",
           "RANK_STRIDE"]
