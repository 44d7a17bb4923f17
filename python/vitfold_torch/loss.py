"""The training loss of vitfold (src/model/vit-graph.ts buildTrainingLoss): cross-entropy against
soft targets (label smoothing), plus for shrink the distillation term from the frozen deep model,
    (1 - alpha) CE(z, y) + alpha T^2 CE(z / T, softmax(z_teacher / T)),
and hidden-state matching at the shallow model's S block boundaries,
    beta / S * sum_s mean_i ||h_si - t_si||^2 / ||t_si||^2."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def smoothed_targets(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing: smoothing / K everywhere, plus 1 - smoothing on the label."""
    t = torch.full((labels.shape[0], classes), smoothing / classes, dtype=torch.float64)
    t[torch.arange(labels.shape[0]), labels] += 1 - smoothing
    return t


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's softened probabilities softmax(z / T)."""
    return torch.softmax(teacher_logits / temperature, dim=-1)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k t_k log softmax(z)_k."""
    return -(targets.to(logits.dtype) * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def training_loss(logits: torch.Tensor, targets: torch.Tensor, teacher_logits: Optional[torch.Tensor] = None, alpha: float = 0.9, temperature: float = 2.0) -> torch.Tensor:
    ce = cross_entropy(logits, targets)
    if teacher_logits is None:
        return ce
    soft = cross_entropy(logits / temperature, soft_targets(teacher_logits.detach(), temperature))
    return ce * (1 - alpha) + soft * (alpha * temperature**2)


def hidden_matching_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], beta: float) -> torch.Tensor:
    """beta / S * sum_s mean_i ||h_si - t_si||^2 / ||t_si||^2: the student's streams [B, T, D] at its
    S block boundaries against the teacher's after the matching layers, a relative squared error
    per image (a per-image mean, so DDP's averaging over processes gives the combined batch's)."""
    rel = [((h - t.detach()) ** 2).flatten(1).sum(1) / (t.detach() ** 2).flatten(1).sum(1) for h, t in zip(student, teacher)]
    return sum(r.mean() for r in rel) * (beta / len(rel))


def boundary_layers(depth: int, blocks: int) -> list:
    """The deep model's layer whose output each boundary between the L = blocks joined blocks
    matches: the last layer of each group of depth / L (src/core/layers.ts boundaryLayers)."""
    k = depth // blocks
    return [(b + 1) * k - 1 for b in range(blocks - 1)]
