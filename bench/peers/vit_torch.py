"""A timm-compatible ViT in plain PyTorch (timm is not packaged in Debian), for benchmark peers.
Parameter names are timm's, so vitfold safetensors files load with load_state_dict."""
import json, struct
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, D, H, hd):
        super().__init__()
        self.H, self.hd = H, hd
        self.qkv = nn.Linear(D, 3 * H * hd)
        self.proj = nn.Linear(H * hd, D)

    def forward(self, x):
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.H, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q * self.hd ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, self.H * self.hd))


class Mlp(nn.Module):
    def __init__(self, D, M):
        super().__init__()
        self.fc1 = nn.Linear(D, M)
        self.fc2 = nn.Linear(M, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, D, H, hd, M, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.attn = Attention(D, H, hd)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        self.mlp = Mlp(D, M)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, C, D, P):
        super().__init__()
        self.proj = nn.Conv2d(C, D, P, P)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, P = cfg["embed_dim"], cfg["patch_size"]
        self.patch_embed = PatchEmbed(cfg["in_chans"], D, P)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.randn(1, (cfg["img_size"] // P) ** 2 + 1, D) * 0.02)
        self.blocks = nn.Sequential(*[Block(D, cfg["num_heads"], cfg["head_dim"], cfg["mlp_hidden"], cfg["eps"]) for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(D, eps=cfg["eps"])
        self.head = nn.Linear(D, cfg["num_classes"])

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def load_safetensors(path):
    """(tensors, metadata) of an F32 safetensors file, without the safetensors package."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", f"{name}: only F32 is supported here"
        b, e = t["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"]).copy())
    return out, meta
