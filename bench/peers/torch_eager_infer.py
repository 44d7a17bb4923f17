"""PyTorch eager inference peer for `vitfold bench`: times the forward pass of a vitfold model
file (timm-style ViT) under torch.no_grad. Usage:
  torch_eager_infer.py MODEL.safetensors '{"batch": 1, "threads": 2, "warmup": 5, "runs": 30}'
Prints one JSON line: {"ms": [...], "torch": version, "threads": n}.
Run with the OpenMP OpenBLAS first on LD_LIBRARY_PATH (vitfold bench does this)."""
import json, sys, time
import torch
from vit_torch import ViT, load_safetensors

tensors, meta = load_safetensors(sys.argv[1])
args = json.loads(sys.argv[2])
cfg = json.loads(meta["config"])
torch.set_num_threads(args["threads"])
model = ViT(cfg).eval()
model.load_state_dict(tensors)
x = torch.randn(args["batch"], cfg["in_chans"], cfg["img_size"], cfg["img_size"])
times = []
with torch.no_grad():
    for i in range(args["warmup"] + args["runs"]):
        t0 = time.perf_counter()
        model(x)
        if i >= args["warmup"]:
            times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"ms": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))
