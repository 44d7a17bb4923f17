"""torch.onnx.export of a vitfold model file (timm-style ViT), as users export timm models
today. Usage: torch_export.py MODEL.safetensors OUT.onnx"""
import json, sys
import torch
from vit_torch import ViT, load_safetensors

tensors, meta = load_safetensors(sys.argv[1])
cfg = json.loads(meta["config"])
model = ViT(cfg).eval()
model.load_state_dict(tensors)
x = torch.randn(1, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
torch.onnx.export(model, x, sys.argv[2], input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, do_constant_folding=True)
print(json.dumps({"torch": torch.__version__, "opset": 17}))
