"""vitfold's file format (docs/file-format.md): safetensors with timm names, and `__metadata__`
holding `config`, `structure` (absent = plain), `normalization`, `classes` and whatever else the
file carried. Written atomically (temp file, fsync, rename), so a kill never leaves half a file."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Dict, Optional, Tuple

import torch

from .model import Structure, ViTConfig, VisionTransformer

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors by name and the `__metadata__` strings of a .safetensors file."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n:]
    tensors: Dict[str, torch.Tensor] = {}
    for name, h in header.items():
        if h["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {h['dtype']}, not one of {', '.join(DTYPES)}")
        lo, hi = h["data_offsets"]
        buf = bytearray(data[lo:hi])
        t = torch.frombuffer(buf, dtype=DTYPES[h["dtype"]]) if buf else torch.empty(0, dtype=DTYPES[h["dtype"]])
        tensors[name] = t.reshape(h["shape"])
    return tensors, dict(metadata)


def _write_atomic(path: str, payload: bytes) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes tensors (contiguous, little-endian) and string metadata as a .safetensors file."""
    header: Dict[str, object] = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in NAMES:
            raise ValueError(f"tensor {name!r}: dtype {t.dtype} cannot be stored")
        b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    _write_atomic(path, struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load_model(path: str, num_heads: Optional[int] = None, dtype: torch.dtype = torch.float32) -> Tuple[VisionTransformer, Structure, Dict[str, str]]:
    """A vitfold (or timm) file as (model, structure, metadata), in `dtype`. Folded files load as plain ViTs."""
    tensors, metadata = read_safetensors(path)
    if "config" in metadata:
        cfg = ViTConfig.from_json(metadata["config"])
    else:  # a timm checkpoint: the config from the shapes; heads of 64 unless told
        D = tensors["cls_token"].shape[-1]
        depth = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("blocks."))
        H = num_heads or max(1, D // 64)
        pw = tensors["patch_embed.proj.weight"]
        T = tensors["pos_embed"].shape[1]
        S = int(round((T - 1) ** 0.5)) * pw.shape[-1]
        cfg = ViTConfig(S, pw.shape[-1], pw.shape[1], tensors["head.weight"].shape[0], D, depth, H, D // H, tensors["blocks.0.mlp.fc1.weight"].shape[0])
    structure = Structure.from_json(metadata.get("structure")) if "structure" in metadata and '"folded"' not in metadata["structure"] else Structure()
    structure.validate(cfg.depth)
    model = VisionTransformer(cfg).to(dtype)
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match a ViT of config {cfg.to_json()}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model, structure, metadata


def save_model(path: str, model: VisionTransformer, structure: Optional[Structure] = None, metadata: Optional[Dict[str, str]] = None, dtype: torch.dtype = torch.float32, folded_from: Optional[Tuple[int, int]] = None) -> None:
    """Saves the model with its config and structure (join state) in `__metadata__`; other
    metadata entries (normalization, classes, ...) are kept. `folded_from` (branches, source
    depth) marks a fold, as vitfold's fold writes it."""
    md = dict(metadata or {})
    md.pop("structure", None)
    md["config"] = model.cfg.to_json()
    s = structure or Structure()
    s.validate(model.cfg.depth)
    if s.to_json():
        md["structure"] = s.to_json()
    elif folded_from:
        md["structure"] = json.dumps({"kind": "folded", "branches": folded_from[0], "source_depth": folded_from[1]}, separators=(",", ":"))
    write_safetensors(path, {k: v.to(dtype) for k, v in model.state_dict().items()}, md)
