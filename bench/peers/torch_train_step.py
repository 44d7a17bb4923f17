"""PyTorch eager peer for bench/train-step.ts: the same ViT (timm semantics: pre-norm blocks,
exact GELU, LayerNorm eps 1e-6, class token), cross-entropy, torch.optim.AdamW, on random data.
Prints one JSON line: {"ms_per_step": [...], "torch": version, "threads": n}.

Run with the OpenMP OpenBLAS first on LD_LIBRARY_PATH (bench/train-step.ts does this)."""
import json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
C, S, P, D, L, H, M, K = (args[k] for k in ("in_chans", "img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_hidden", "num_classes"))
hd = args["head_dim"]
B = args["batch"]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.qkv = nn.Linear(D, 3 * H * hd)
        self.proj = nn.Linear(H * hd, D)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.fc1 = nn.Linear(D, M)
        self.fc2 = nn.Linear(M, D)

    def forward(self, x):
        b, t, _ = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, H, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q * hd ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, t, H * hd))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(C, D, P, P)
        self.cls = nn.Parameter(torch.zeros(1, 1, D))
        self.pos = nn.Parameter(torch.randn(1, (S // P) ** 2 + 1, D) * 0.02)
        self.blocks = nn.Sequential(*[Block() for _ in range(L)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, K)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


model = ViT()
decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in ("cls", "pos")]
no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n not in ("cls", "pos"))]
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
