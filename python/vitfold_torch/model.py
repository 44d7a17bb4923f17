"""The ViT of vitfold (docs/method.md sections 1-2) as a torch module with timm's parameter names,
so timm/DeiT checkpoints and vitfold's files load into it as they are.

The branched forward reads the same weights as L blocks of k consecutive layers, each block with
join coefficients a (attention inputs) and f (MLP inputs):
    y = x + sum_j A_j(x)                 (only when f > 0, which needs a = 1)
    r = x; for j: r = r + A_j(a x + (1 - a) r); r = r + F_j(f y + (1 - f) r)
a = f = 0 is the deep model exactly; a = f = 1 is the fully joined block that folds exactly."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, asdict, fields
from typing import List, Optional, Sequence

import torch
from torch import nn

CONFIG_KEYS = ["img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "head_dim", "mlp_hidden", "eps"]


@dataclass
class ViTConfig:
    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depth: int
    num_heads: int
    head_dim: int
    mlp_hidden: int
    eps: float = 1e-6

    @property
    def tokens(self) -> int:
        return (self.img_size // self.patch_size) ** 2 + 1

    def to_json(self) -> str:
        """The `__metadata__.config` text, keys in vitfold's order."""
        d = asdict(self)
        return json.dumps({k: d[k] for k in CONFIG_KEYS}, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> "ViTConfig":
        d = json.loads(text)
        if "head_dim" not in d:
            d["head_dim"] = d["embed_dim"] // d["num_heads"]
        return ViTConfig(**{f.name: d[f.name] for f in fields(ViTConfig) if f.name in d})

    @staticmethod
    def preset(name: str) -> "ViTConfig":
        """vitfold's presets (the same sizes as `vitfold init --preset`)."""
        p = {
            "deit-tiny": (224, 16, 3, 1000, 192, 12, 3, 768),
            "deit-small": (224, 16, 3, 1000, 384, 12, 6, 1536),
            "deit-base": (224, 16, 3, 1000, 768, 12, 12, 3072),
            "vit-28-p7": (28, 7, 1, 10, 96, 12, 3, 192),
            "vit-28": (28, 4, 1, 10, 96, 12, 3, 384),
            "vit-32": (32, 4, 3, 10, 192, 12, 3, 768),
        }[name]
        img, patch, chans, classes, dim, depth, heads, mlp = p
        return ViTConfig(img, patch, chans, classes, dim, depth, heads, dim // heads, mlp)


@dataclass
class Structure:
    """How the layers are read: plain, or branched (k per block) with join coefficients."""

    branches: int = 1
    attn: Optional[List[float]] = None
    ffn: Optional[List[float]] = None

    @property
    def is_branched(self) -> bool:
        return self.branches > 1

    def to_json(self) -> Optional[str]:
        if not self.is_branched:
            return None
        return json.dumps({"kind": "branched", "branches": self.branches, "attn": list(self.attn), "ffn": list(self.ffn)}, separators=(",", ":"))

    @staticmethod
    def from_json(text: Optional[str]) -> "Structure":
        if not text:
            return Structure()
        d = json.loads(text)
        if d["kind"] == "plain":
            return Structure()
        if d["kind"] != "branched":
            raise ValueError(f"structure {d['kind']!r}: vitfold_torch trains plain or branched models (fold with vitfold)")
        return Structure(d["branches"], [float(a) for a in d["attn"]], [float(f) for f in d["ffn"]])

    def validate(self, depth: int) -> None:
        if not self.is_branched:
            return
        if depth % self.branches:
            raise ValueError(f"depth {depth} does not split into blocks of {self.branches} branches")
        L = depth // self.branches
        for name, c in (("attn", self.attn), ("ffn", self.ffn)):
            if c is None or len(c) != L or any(not (0 <= v <= 1) for v in c):
                raise ValueError(f"join coefficients {name} must be {L} numbers in [0, 1], got {c}")
        for b, (a, f) in enumerate(zip(self.attn, self.ffn)):
            if f > 0 and a != 1:
                raise ValueError(f"block {b}: ffn coefficient {f} > 0 needs attn coefficient 1 (got {a})")


class Attention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.h, self.hd = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.num_heads * cfg.head_dim)
        self.proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T, D]
        B, T, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.h, self.hd).permute(2, 0, 3, 1, 4)  # 3 x [B, H, T, hd]
        p = torch.softmax((q * (1.0 / math.sqrt(self.hd))) @ k.transpose(-2, -1), dim=-1)  # [B, H, T, T]
        return self.proj((p @ v).transpose(1, 2).reshape(B, T, self.h * self.hd))


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_hidden)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))  # exact (erf) GELU, as timm


class Layer(nn.Module):
    """timm's Block: A(z) = attn(norm1(z)), F(z) = mlp(norm2(z))."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.eps)
        self.mlp = Mlp(cfg)

    def A(self, z: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm1(z))

    def F(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm2(z))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, S, S] -> [B, N, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """A plain ViT (timm names). forward(x, structure) runs it as the branched model of
    `structure` (plain when it has one branch): the same parameters, read as blocks."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.embed_dim))
        self.blocks = nn.ModuleList([Layer(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.eps)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's init: truncated normal (std 0.02) for weights and tokens, zero biases, unit norms."""
        for name, p in self.named_parameters():
            parts = name.split(".")
            if parts[-1] == "bias":
                nn.init.zeros_(p)
            elif any(part.startswith("norm") for part in parts[:-1]):
                nn.init.ones_(p)
            else:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x)  # [B, N, D]
        return torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed  # [B, T, D]

    def forward(self, x: torch.Tensor, structure: Optional[Structure] = None, hidden: bool = False):
        """Logits [B, K]; with hidden, also the residual streams [B, T, D] after every block but the
        last (a plain model's blocks are its layers): what hidden-state matching compares."""
        z = self.embed(x)
        s = structure or Structure()
        taps: List[torch.Tensor] = []
        if not s.is_branched:
            for i, layer in enumerate(self.blocks):
                z = z + layer.A(z)
                z = z + layer.F(z)
                if hidden and i < len(self.blocks) - 1:
                    taps.append(z)
        else:
            k = s.branches
            L = self.cfg.depth // k
            for b in range(L):
                z = self.branched_block(z, self.blocks[b * k:(b + 1) * k], s.attn[b], s.ffn[b])
                if hidden and b < L - 1:
                    taps.append(z)
        logits = self.head(self.norm(z)[:, 0])  # [B, K]
        return (logits, taps) if hidden else logits

    @staticmethod
    def branched_block(x: torch.Tensor, layers: Sequence[Layer], a: float, f: float) -> torch.Tensor:
        if f > 0:  # a = 1: every attention reads x; y = x + sum_j A_j(x)
            attn = [layer.A(x) for layer in layers]
            y = x + sum(attn)
            r = x
            for layer, ax in zip(layers, attn):
                r = r + ax
                r = r + layer.F(f * y + (1 - f) * r)
            return r
        r = x
        for layer in layers:
            r = r + layer.A(a * x + (1 - a) * r)
            r = r + layer.F(r)
        return r
