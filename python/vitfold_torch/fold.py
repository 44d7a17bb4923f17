"""The fold (docs/method.md section 3): a fully joined block of k layers is one layer with k times
the heads and a k times wider MLP. Each LayerNorm's affine goes into the linear layer after it
(the folded layers keep LayerNorms of gain 1 and bias 0); the branches' query, key and value rows
are stacked in branch order, projections concatenated along their inputs, biases added; the MLPs'
hidden units are stacked the same way. The same layout as vitfold's fold, so the tensors agree."""

from __future__ import annotations

from typing import Dict

import torch

from .model import ViTConfig, VisionTransformer


def folded_config(cfg: ViTConfig, branches: int) -> ViTConfig:
    if cfg.depth % branches:
        raise ValueError(f"depth {cfg.depth} does not split into blocks of {branches} branches")
    return ViTConfig(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.num_classes, cfg.embed_dim, cfg.depth // branches, cfg.num_heads * branches, cfg.head_dim, cfg.mlp_hidden * branches, cfg.eps)


@torch.no_grad()
def fold(model: VisionTransformer, branches: int) -> VisionTransformer:
    """The plain ViT that equals `model` read as `branches`-branch blocks, fully joined. A new model."""
    cfg = model.cfg
    fcfg = folded_config(cfg, branches)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    dtype = sd["cls_token"].dtype
    HD = cfg.num_heads * cfg.head_dim
    out: Dict[str, torch.Tensor] = {k: v.clone() for k, v in sd.items() if not k.startswith("blocks.")}
    for b in range(fcfg.depth):
        qkv_w = [[], [], []]
        qkv_b = [[], [], []]
        proj_w, fc1_w, fc1_b, fc2_w = [], [], [], []
        proj_b = fc2_b = 0
        for j in range(branches):
            p = f"blocks.{b * branches + j}."
            g1, c1 = sd[p + "norm1.weight"], sd[p + "norm1.bias"]
            w, bias = sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]  # [3*H*hd, D]
            wf, bf = w * g1[None, :], w @ c1 + bias  # LN1's affine folded into qkv
            for part in range(3):  # q, k, v rows, each in branch order
                qkv_w[part].append(wf[part * HD:(part + 1) * HD])
                qkv_b[part].append(bf[part * HD:(part + 1) * HD])
            proj_w.append(sd[p + "attn.proj.weight"])  # [D, H*hd]
            proj_b = proj_b + sd[p + "attn.proj.bias"]
            g2, c2 = sd[p + "norm2.weight"], sd[p + "norm2.bias"]
            w1 = sd[p + "mlp.fc1.weight"]  # [M, D]
            fc1_w.append(w1 * g2[None, :])
            fc1_b.append(w1 @ c2 + sd[p + "mlp.fc1.bias"])
            fc2_w.append(sd[p + "mlp.fc2.weight"])  # [D, M]
            fc2_b = fc2_b + sd[p + "mlp.fc2.bias"]
        q = f"blocks.{b}."
        D = cfg.embed_dim
        out[q + "norm1.weight"], out[q + "norm1.bias"] = torch.ones(D, dtype=dtype), torch.zeros(D, dtype=dtype)
        out[q + "norm2.weight"], out[q + "norm2.bias"] = torch.ones(D, dtype=dtype), torch.zeros(D, dtype=dtype)
        out[q + "attn.qkv.weight"] = torch.cat([t for part in qkv_w for t in part])
        out[q + "attn.qkv.bias"] = torch.cat([t for part in qkv_b for t in part])
        out[q + "attn.proj.weight"] = torch.cat(proj_w, dim=1)
        out[q + "attn.proj.bias"] = proj_b
        out[q + "mlp.fc1.weight"] = torch.cat(fc1_w)
        out[q + "mlp.fc1.bias"] = torch.cat(fc1_b)
        out[q + "mlp.fc2.weight"] = torch.cat(fc2_w, dim=1)
        out[q + "mlp.fc2.bias"] = fc2_b
    folded = VisionTransformer(fcfg).to(dtype)
    folded.load_state_dict(out)
    return folded
