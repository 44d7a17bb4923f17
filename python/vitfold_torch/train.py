"""Branched training and shrink past one machine: `torchrun --nproc_per_node N -m vitfold_torch.train`.

The same recipes and defaults as `vitfold train` and `vitfold shrink`: a branched ViT whose join
coefficients follow the join schedule (train), or a trained deep model fine-tuned while its
layers are joined, distilled from the frozen deep model (shrink). DistributedDataParallel over
all processes (NCCL on GPUs with bfloat16 autocast, gloo on CPUs); every process draws the same
batch order and augmentation and takes its slice of each global batch, so N processes compute
the same steps as one process on the combined batch. Once every join coefficient is 1, the
joined model is saved as `joined.safetensors` and training goes on as its exact fold (fresh AdamW
moments), as `vitfold train` does. Each epoch ends with an atomic checkpoint (`checkpoint.pt`:
weights, optimizer, step, flags) and `last.safetensors` in vitfold's format (branched with its
join state, or the fold); `--resume` continues with the stored flags.

Examples:
  torchrun --nproc_per_node 8 -m vitfold_torch.train --out runs/fm-k4 --epochs 5
  torchrun --nproc_per_node 8 -m vitfold_torch.train --shrink deep.safetensors --depth 3 --out runs/shrink3
  torchrun --nproc_per_node 8 -m vitfold_torch.train --out runs/fm-k4 --resume
  vitfold verify runs/shrink3/joined.safetensors && vitfold export runs/shrink3/last.safetensors --out shrunk.onnx
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import load_model, save_model
from .data import EpochBatches, FolderData, MnistData, round_half_up
from .fold import fold
from .loss import boundary_layers, hidden_matching_loss, smoothed_targets, training_loss
from .model import Structure, ViTConfig, VisionTransformer
from .schedule import JoinSchedule, join_coefficients, learning_rate

# Defaults of `vitfold train` and `vitfold shrink` (src/cli/train.ts, src/train/shrink.ts).
TRAIN_DEFAULTS = {"lr": 2e-3, "warmup_epochs": 0.5}
SHRINK_DEFAULTS = {"lr": 5e-4, "warmup_epochs": 0.25, "alpha": 0.9, "temperature": 2.0, "hidden": 4.0}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vitfold_torch.train", description=__doc__.split("\n\n")[0], epilog="Examples:" + __doc__.split("Examples:")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (checkpoint.pt, last.safetensors, log.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "folder"], help="Fashion-MNIST IDX files, or an image folder ROOT/train/<class>/*.jpg, ROOT/val/<class>/*.jpg")
    p.add_argument("--data", help="dataset folder (Fashion-MNIST default: Debian's dataset-fashion-mnist)")
    p.add_argument("--preset", default="vit-28-p7", help="model shape of a run from scratch (default vit-28-p7)")
    p.add_argument("--init", help="start from this plain checkpoint (vitfold or timm safetensors)")
    p.add_argument("--branches", type=int, default=4, help="branches per block (train; default 4)")
    p.add_argument("--shrink", metavar="DEEP.safetensors", help="shrink this trained deep model (distilled from it)")
    p.add_argument("--depth", type=int, help="shrink: the depth to reach (branches = deep depth / depth)")
    p.add_argument("--join", default="together", choices=["together", "sequential", "none"])
    p.add_argument("--join-shape", default="cosine", choices=["linear", "cosine"])
    p.add_argument("--join-start", type=float, default=0.0, help="fraction of training")
    p.add_argument("--join-end", type=float, default=0.5, help="fraction of training (every coefficient is 1 from here)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=128, help="global batch, split across processes")
    p.add_argument("--lr", type=float, help="peak learning rate (train 2e-3, shrink 5e-4)")
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--warmup-epochs", type=float, help="(train 0.5, shrink 0.25)")
    p.add_argument("--wd", type=float, default=0.05, help="AdamW weight decay (weights of linear and patch layers)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--crop-padding", type=int, default=2)
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--alpha", type=float, default=SHRINK_DEFAULTS["alpha"], help="shrink: weight of the distillation term")
    p.add_argument("--temperature", type=float, default=SHRINK_DEFAULTS["temperature"], help="shrink: distillation temperature")
    p.add_argument("--hidden", type=float, help="shrink: weight of hidden-state matching at the block boundaries (vitfold shrink --kd-hidden; default 4, 0: off)")
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-test", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="data-loading processes per training process (default: 0 for Fashion-MNIST, which is in memory; 4 for image folders)")
    p.add_argument("--no-train-folded", action="store_true", help="stay on the branched model after the join (default: go on as the fold, as vitfold train does)")
    p.add_argument("--float64", action="store_true", help="train in float64 (exact comparisons in tests)")
    a = p.parse_args(argv)
    recipe = SHRINK_DEFAULTS if a.shrink else TRAIN_DEFAULTS
    a.lr = recipe["lr"] if a.lr is None else a.lr
    a.warmup_epochs = recipe["warmup_epochs"] if a.warmup_epochs is None else a.warmup_epochs
    if a.hidden is None:
        a.hidden = SHRINK_DEFAULTS["hidden"] if a.shrink and a.depth and a.depth >= 2 else 0.0
    if a.shrink and not a.depth:
        p.error("--shrink needs --depth L")
    if a.depth and not a.shrink:
        p.error("--depth is the depth a --shrink reaches; a run from scratch sets --branches")
    return a


def decay_groups(model: nn.Module, wd: float) -> List[Dict]:
    """timm's weight decay: linear and patch weights decay; biases, norms and tokens do not."""
    decay, rest = [], []
    for name, prm in model.named_parameters():
        (decay if name.endswith(".weight") and "norm" not in name else rest).append(prm)
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def atomic_torch_save(obj: object, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fail(message: str) -> None:
    """Bad input: one line naming the problem, exit 2 (as the vitfold CLI)."""
    print(f"vitfold_torch: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


# What --resume accepts besides the flags stored in checkpoint.pt (where the data is, how it is read).
RESUME_FLAGS = {"--out", "--resume", "--data", "--workers"}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    ckpt_path = os.path.join(a.out, "checkpoint.pt")
    state = None
    if a.resume:
        # A run continues exactly as it was started: its flags come from the checkpoint.
        if not os.path.exists(ckpt_path):
            fail(f"{a.out}: no checkpoint.pt to resume (start the run without --resume)")
        other = sorted({t.split("=")[0] for t in argv if t.startswith("--")} - RESUME_FLAGS)
        if other:
            fail(f"--resume continues {a.out} with the flags it was started with (stored in checkpoint.pt); it takes only {', '.join(sorted(RESUME_FLAGS))}, not {', '.join(other)}")
        state = torch.load(ckpt_path, map_location="cpu")
        saved = dict(state["args"])
        # Flags added since the run started take their defaults.
        a = argparse.Namespace(**{**vars(parse_args(["--out", a.out])), **saved, "out": a.out, "resume": True, "data": a.data if a.data is not None else saved.get("data"), "workers": a.workers if a.workers is not None else saved.get("workers")})
    elif os.path.exists(ckpt_path):
        fail(f"{a.out} already holds a run (checkpoint.pt): --resume it or choose another --out")
    if a.shrink and a.join == "none":
        fail("--shrink joins the deep model's layers: --join together or sequential")
    if a.hidden < 0 or not math.isfinite(a.hidden):
        fail(f"--hidden must be a number >= 0, got {a.hidden}")
    if a.hidden > 0 and not a.shrink:
        fail("--hidden matches the deep model's hidden states: it is for --shrink runs")
    if a.hidden > 0 and a.shrink and a.depth < 2:
        fail("--hidden matches the boundaries between the shallow model's layers: it needs --depth 2 or more")
    if a.batch % world:
        fail(f"--batch {a.batch} must divide evenly over {world} processes")
    cuda = torch.cuda.is_available()
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dtype = torch.float64 if a.float64 else torch.float32
    os.makedirs(a.out, exist_ok=True)

    # The model: from scratch (preset), from --init, or the deep model to shrink.
    torch.manual_seed(a.seed)
    teacher: Optional[VisionTransformer] = None
    matched_layers: List[int] = []  # the teacher's layers matched at the block boundaries (--hidden)
    metadata: Dict[str, str] = {}
    source = a.shrink or a.init
    if source:
        model, s, md = load_model(source)
        if s.is_branched:
            fail(f"{source}: is a branched model; {'shrink starts from' if a.shrink else '--init takes'} a plain checkpoint" + ("" if a.shrink else " (a branched run continues with --resume)"))
        metadata.update({k: v for k, v in md.items() if k in ("normalization", "classes")})
    if a.shrink:
        if model.cfg.depth % a.depth:
            fail(f"--depth {a.depth} does not divide the deep model's {model.cfg.depth} layers")
        branches = model.cfg.depth // a.depth
        # The frozen teacher: the deep model as loaded, before any training changes the student.
        teacher = copy.deepcopy(model).to(device, dtype).eval().requires_grad_(False)
        matched_layers = boundary_layers(model.cfg.depth, a.depth) if a.hidden > 0 else []
    elif a.init:
        branches = a.branches
    else:
        model = VisionTransformer(ViTConfig.preset(a.preset))
        branches = a.branches
    if a.join == "none":
        branches = 1
    cfg = model.cfg
    Structure(branches, [0.0] * (cfg.depth // branches), [0.0] * (cfg.depth // branches)).validate(cfg.depth)
    blocks = cfg.depth // branches
    schedule = JoinSchedule(a.join, a.join_shape, a.join_start, a.join_end).validate()
    norm = json.loads(metadata["normalization"]) if "normalization" in metadata else None
    if a.dataset == "folder":
        if not a.data:
            fail("--dataset folder needs --data ROOT (ROOT/train/<class>/*.jpg, ROOT/val/<class>/*.jpg)")
        data = FolderData(a.data, cfg.img_size, cfg.in_chans, norm, a.limit_train, a.limit_test)
    else:
        data = MnistData(a.data, a.limit_train, a.limit_test, norm)
    if (data.size, data.channels) != (cfg.img_size, cfg.in_chans) or len(data.classes) != cfg.num_classes:
        fail(f"the model takes {cfg.in_chans} x {cfg.img_size} x {cfg.img_size} images in {cfg.num_classes} classes; the data has {data.channels} x {data.size} x {data.size} in {len(data.classes)}")
    metadata["normalization"] = json.dumps(data.normalization, separators=(",", ":"))
    metadata["classes"] = json.dumps(data.classes, separators=(",", ":"))
    steps_per_epoch = data.n_train // a.batch
    if steps_per_epoch == 0:
        fail(f"{data.n_train} training images are fewer than one batch of {a.batch}")
    total = steps_per_epoch * a.epochs
    warmup = round_half_up(a.warmup_epochs * steps_per_epoch)
    # Once every coefficient is 1, training goes on as the fold (the same function, fewer and
    # wider layers) with fresh AdamW moments, as `vitfold train` does; None until then.
    train_folded = branches > 1 and not a.no_train_folded
    folded_from: Optional[Tuple[int, int]] = None

    def optimizer(m: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(decay_groups(m, a.wd), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)

    def wrap(m: nn.Module) -> nn.Module:
        return nn.parallel.DistributedDataParallel(m, device_ids=[device.index] if cuda else None) if world > 1 else m

    step = 0
    if state is not None:
        if state.get("folded"):
            folded_from = tuple(state["folded"])
            model = fold(model, branches)
        model.to(device, dtype)
        model.load_state_dict(state["model"])
        opt = optimizer(model)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
    else:
        model.to(device, dtype)
        opt = optimizer(model)
    ddp = wrap(model)
    per_rank = a.batch // world
    kill_at = int(os.environ.get("VITFOLD_TORCH_KILL_AT_STEP", "-1"))  # fault injection for the resume test
    log_path = os.path.join(a.out, "log.jsonl")
    if state is not None and rank == 0 and os.path.exists(log_path):
        # The log goes back to the checkpoint: what the interrupted run logged after it is redone.
        with open(log_path) as fh:
            keep = [line for line in fh if _logged_by(line, state["step"], state["epoch"])]
        with open(log_path, "w") as fh:
            fh.writelines(keep)
    log = open(log_path, "a") if rank == 0 else None

    def write_log(rec: dict) -> None:
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    if state is not None and rank == 0:
        print(f"resume   {a.out} after epoch {state['epoch']} (step {step})", flush=True)
        write_log({"event": "resume", "epoch": state["epoch"], "step": step})

    def structure_at(progress: float) -> Optional[Structure]:
        if folded_from or branches == 1:
            return None
        attn, ffn = join_coefficients(schedule, blocks, progress)
        return Structure(branches, attn, ffn)

    for epoch in range(step // steps_per_epoch, a.epochs):
        t_epoch = time.time()
        s0 = structure_at(step / total)
        if train_folded and s0 is not None and all(c == 1 for c in s0.attn + s0.ffn):
            # Every coefficient is 1 from here on: keep the joined model, check its fold, go on as the fold.
            if rank == 0:
                save_model(os.path.join(a.out, "joined.safetensors"), model, s0, metadata)
                ref = copy.deepcopy(model).double().eval()
                xt = next(iter(data.test_batches(4)))[0].double().to(device)
                with torch.no_grad():
                    zj, zf = ref(xt, s0), fold(ref, branches)(xt)
                err = float((zj - zf).abs().max() / zj.abs().max())
                write_log({"event": "switch", "epoch": epoch, "verify_max_rel": err})
                print(f"epoch {epoch + 1}: every join coefficient is 1; training goes on as the {cfg.depth // branches}-layer fold (float64 check on 4 test images: max rel {err:.1e}; fresh AdamW moments)", flush=True)
            model = fold(model, branches).to(device, dtype)
            folded_from = (branches, cfg.depth)
            opt = optimizer(model)
            ddp = wrap(model)
        ddp.train()
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        batches = EpochBatches(data, order_of(data.n_train, a.seed, epoch), a.batch, step - epoch * steps_per_epoch, steps_per_epoch, epoch * steps_per_epoch, a.seed, a.crop_padding, not a.no_flip, mine)
        workers = a.workers if a.workers is not None else (4 if a.dataset == "folder" else 0)
        for x, y in torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers):
            x, y = x.to(device, dtype), y.to(device)
            s = structure_at(step / total)
            for group in opt.param_groups:
                group["lr"] = learning_rate(a.lr, warmup, total, a.min_lr, step)
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda and not a.float64 else contextlib.nullcontext():
                if matched_layers:
                    logits, h = ddp(x, s, hidden=True)
                    with torch.no_grad():
                        t_logits, t_h = teacher(x, hidden=True)
                else:
                    logits = ddp(x, s)
                    with torch.no_grad():
                        t_logits = teacher(x) if teacher is not None else None
                loss = training_loss(logits.to(dtype), smoothed_targets(y, cfg.num_classes, a.label_smoothing).to(device), None if t_logits is None else t_logits.to(dtype), a.alpha, a.temperature)
                if matched_layers:
                    loss = loss + hidden_matching_loss([v.to(dtype) for v in h], [t_h[i].to(dtype) for i in matched_layers], a.hidden)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step == kill_at and rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            if step % 20 == 0 or step == total:
                write_log({"step": step, "epoch": epoch + 1, "loss": float(loss), "lr": opt.param_groups[0]["lr"], **({"attn": s.attn, "ffn": s.ffn} if s else {})})
        # End of epoch: test accuracy, the atomic checkpoint, and the model in vitfold's format.
        s = structure_at(step / total)
        if rank == 0:
            model.eval()
            correct = seen = 0
            with torch.no_grad():
                for xt, yt in data.test_batches(500):
                    correct += int((model(xt.to(device, dtype), s).argmax(-1).cpu() == yt).sum())
                    seen += len(yt)
            top1 = correct / max(1, seen)
            save_model(os.path.join(a.out, "last.safetensors"), model, s, metadata, folded_from=folded_from)
            atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "epoch": epoch + 1, "folded": folded_from, "args": vars(a)}, ckpt_path)
            write_log({"event": "epoch", "epoch": epoch + 1, "top1": top1, **({"attn": s.attn, "ffn": s.ffn} if s else {}), "folded": bool(folded_from), "seconds": time.time() - t_epoch, "processes": world})
            join_text = f"join attn {[round(c, 2) for c in s.attn]} ffn {[round(c, 2) for c in s.ffn]}" if s else ("the fold" if folded_from else "plain")
            print(f"epoch {epoch + 1}/{a.epochs}: top-1 {100 * top1:.2f}%, {join_text} ({world} process{'es' if world > 1 else ''}, {time.time() - t_epoch:.0f} s)", flush=True)
        if world > 1:
            dist.barrier()
    if rank == 0:
        last = os.path.join(a.out, "last.safetensors")
        if folded_from:
            print(f"wrote    {last}: the {cfg.depth // branches}-layer fold, trained on; {os.path.join(a.out, 'joined.safetensors')}: the joined model it came from (vitfold verify checks its fold)", flush=True)
        else:
            s = structure_at(1.0)
            joined = s is not None and all(c == 1 for c in s.attn + s.ffn)
            print(f"wrote    {last}" + (f"; fold it: vitfold fold {last} --out folded.safetensors --verify" if joined else ""), flush=True)
    if world > 1:
        dist.destroy_process_group()
    return 0


def _logged_by(line: str, step: int, epoch: int) -> bool:
    """Whether a log line was written by the run up to the checkpoint (step, epoch)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return False  # a line cut by the kill
    if "step" in rec and "event" not in rec:
        return rec["step"] <= step
    if rec.get("event") == "epoch":  # 1-based: the epochs finished
        return rec["epoch"] <= epoch
    if rec.get("event") == "switch":  # 0-based: the epoch it happened before
        return rec["epoch"] < epoch
    return True


def order_of(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's batch order, the same in every process."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))


if __name__ == "__main__":
    sys.exit(main())
