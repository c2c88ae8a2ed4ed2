"""Pure PyTorch GAN trainer: config, data, models, losses, metrics and the loop.

Nothing in this package imports Ray, Optuna or MLflow; `sweeper/` adapts it.
"""

from trainers.config import ConfigError, TrialConfig, make_config
from trainers.loop import Trainer, train

__all__ = ["ConfigError", "TrialConfig", "Trainer", "make_config", "train"]
