"""vitfold's schedules as pure functions of training progress (src/train/schedule.ts; the same
names and formulas, checked against shared fixtures).

Join: inside the window [start, end] each block's attention coefficient ramps 0 -> 1, then its
FFN coefficient ('together': all blocks share the window; 'sequential': one slot per block,
block 0 first). After `end` every coefficient is exactly 1.
Learning rate: linear warm-up from 0, then cosine to `min` at `total` steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple


@dataclass
class JoinSchedule:
    mode: str = "together"  # 'none' | 'together' | 'sequential'
    shape: str = "cosine"  # 'linear' | 'cosine'
    start: float = 0.0
    end: float = 0.5

    def validate(self) -> "JoinSchedule":
        if self.mode not in ("none", "together", "sequential"):
            raise ValueError(f"join schedule mode must be none, together or sequential (got {self.mode})")
        if self.shape not in ("linear", "cosine"):
            raise ValueError(f"join ramp must be linear or cosine (got {self.shape})")
        if not (0 <= self.start < self.end <= 1):
            raise ValueError(f"join window must satisfy 0 <= start < end <= 1, got [{self.start}, {self.end}]")
        return self


def _ramp(p: float, lo: float, hi: float, shape: str) -> float:
    if p <= lo:
        return 0.0
    if p >= hi:
        return 1.0
    r = (p - lo) / (hi - lo)
    return r if shape == "linear" else 0.5 * (1 - math.cos(math.pi * r))


def join_coefficients(s: JoinSchedule, blocks: int, p: float) -> Tuple[List[float], List[float]]:
    """(attn, ffn) coefficients of `blocks` blocks at progress p (0: start of training, 1: end)."""
    if s.mode == "none":
        return [0.0] * blocks, [0.0] * blocks
    attn: List[float] = []
    ffn: List[float] = []
    for b in range(blocks):
        lo, hi = s.start, s.end
        if s.mode == "sequential":
            slot = (s.end - s.start) / blocks
            lo = s.start + b * slot
            hi = lo + slot
        mid = (lo + hi) / 2
        attn.append(_ramp(p, lo, mid, s.shape))
        ffn.append(_ramp(p, mid, hi, s.shape))
    return attn, ffn


def learning_rate(peak: float, warmup: int, total: int, minimum: float, step: int) -> float:
    """Learning rate at optimizer step `step` (0-based)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    r = min(1.0, (step - warmup) / max(1, total - warmup))
    return minimum + 0.5 * (peak - minimum) * (1 + math.cos(math.pi * r))
