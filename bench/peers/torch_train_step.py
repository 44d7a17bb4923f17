"""PyTorch eager peer for bench/train-step.ts: the same ViT (timm semantics: pre-norm blocks,
exact GELU, LayerNorm eps 1e-6, class token), cross-entropy, torch.optim.AdamW, on random data.

Serves steps: after `warmup` untimed steps it prints a line {"ready": true, "torch": version,
"threads": n}; then each line read from stdin runs one step and prints its milliseconds, so
the benchmark can interleave single PyTorch steps with its own. EOF ends it.

Run with the OpenMP OpenBLAS first on LD_LIBRARY_PATH (bench/train-step.ts does this)."""
import json, sys, time
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


def requests():
    """Warm-up steps (untimed), then the ready line, then one timed step per stdin line."""
    for _ in range(args["warmup"]):
        yield False
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for _ in sys.stdin:
        yield True


# The step stays inline in the loop, as in a usual training loop: `loss` (and its graph) lives
# until the next step replaces it. The same step wrapped in a function, which drops everything
# on return, measured 16-19% slower in paired A/Bs of two step servers (README).
for timed in requests():
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if timed:
        print((time.perf_counter() - t0) * 1000, flush=True)
