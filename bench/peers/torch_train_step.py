"""PyTorch eager peer for bench/train-step.ts: the same ViT (timm semantics: pre-norm blocks,
exact GELU, LayerNorm eps 1e-6, class token), cross-entropy, torch.optim.AdamW, on random data.
Prints one JSON line: {"ms_per_step": [...], "torch": version, "threads": n}.

Run with the OpenMP OpenBLAS first on LD_LIBRARY_PATH (bench/train-step.ts does this)."""
import json, math, sys, time
import torch
import torch.nn.functional as F
from vit_torch import ViT

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
C, S, K, B = args["in_chans"], args["img_size"], args["num_classes"], args["batch"]


model = ViT(args)
decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in ("cls_token", "pos_embed")]
no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n not in ("cls_token", "pos_embed"))]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
x = torch.randn(B, C, S, S)
y = torch.randint(0, K, (B,))
times = []
for i in range(args["warmup"] + args["steps"]):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if i >= args["warmup"]:
        times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"ms_per_step": times, "torch": torch.__version__, "threads": torch.get_num_threads(), "loss": loss.item()}))
