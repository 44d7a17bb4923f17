"""vitfold's method in PyTorch: the branched ViT with per-block join coefficients, the join and
learning-rate schedules, the shrink distillation loss, and checkpoints in vitfold's safetensors
format, so that `vitfold fold / verify / export / bench / app` take what a DDP run writes."""

from .model import ViTConfig, VisionTransformer, Structure
from .schedule import JoinSchedule, join_coefficients, learning_rate
from .loss import hidden_matching_loss, training_loss, soft_targets
from .checkpoint import read_safetensors, write_safetensors, load_model, save_model
from .fold import fold, folded_config

__all__ = [
    "ViTConfig", "VisionTransformer", "Structure",
    "JoinSchedule", "join_coefficients", "learning_rate",
    "training_loss", "soft_targets", "hidden_matching_loss",
    "read_safetensors", "write_safetensors", "load_model", "save_model",
    "fold", "folded_config",
]
