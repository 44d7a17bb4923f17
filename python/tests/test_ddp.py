"""The torchrun script: a 2-process DDP run (gloo, localhost) gives the weights of one process on
the combined batch; a run killed mid-epoch resumes from its last checkpoint to the weights of an
uninterrupted run; shrink writes a joined model that vitfold folds exactly. float64, CPU."""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import torch

from helpers import REPO, vitfold
from vitfold_torch import VisionTransformer, ViTConfig, read_safetensors, save_model

PYTHON = sys.executable
# Debian's torch 1.13 on Python 3.11: torchrun's default --redirects/--tee ("0") parse to None
# (IntFlag iteration changed in 3.11) and it fails before starting; explicit values avoid it.
TORCHRUN = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--redirects", "2", "--tee", "2"]
ENV = {**os.environ, "PYTHONPATH": os.path.join(REPO, "python"), "OMP_NUM_THREADS": "1"}


def write_dataset(root: str, n_train: int, n_test: int) -> None:
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(5)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        images = (labels.view(n, 1, 1).int() * 25 + torch.randint(0, 20, (n, 28, 28), generator=g)).to(torch.uint8)
        with open(os.path.join(root, f"{split}-images-idx3-ubyte"), "wb") as fh:
            fh.write(b"\x00\x00\x08\x03" + struct.pack(">III", n, 28, 28) + images.numpy().tobytes())
        with open(os.path.join(root, f"{split}-labels-idx1-ubyte"), "wb") as fh:
            fh.write(b"\x00\x00\x08\x01" + struct.pack(">I", n) + labels.numpy().tobytes())


def max_diff(a: str, b: str) -> float:
    ta, tb = read_safetensors(a)[0], read_safetensors(b)[0]
    assert ta.keys() == tb.keys()
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)


class DistributedTraining(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vitfold-ddp-")
        cls.data = os.path.join(cls.tmp, "data")
        write_dataset(cls.data, 64, 32)
        # 2 epochs of 4 steps (64 images, batch 16): joined after epoch 1, trained on after.
        cls.args = ["--data", cls.data, "--epochs", "2", "--batch", "16", "--float64"]

    @staticmethod
    def launch(procs: int, args, env=None) -> subprocess.CompletedProcess:
        launcher = TORCHRUN + ["--nproc_per_node", str(procs)] if procs > 1 else [PYTHON]
        return subprocess.run(launcher + ["-m", "vitfold_torch.train", *args], capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=300)

    def train(self, out: str, procs: int, extra=(), env=None) -> subprocess.CompletedProcess:
        return self.launch(procs, ["--out", out, *self.args, *extra], env)

    def resume(self, out: str, procs: int, extra=()) -> subprocess.CompletedProcess:
        return self.launch(procs, ["--out", out, "--resume", "--data", self.data, *extra])

    def test_two_processes_equal_one_on_the_combined_batch_and_resume_after_a_kill(self):
        one, two, killed = (os.path.join(self.tmp, n) for n in ("one", "two", "killed"))
        r1 = self.train(one, 1)
        self.assertEqual(r1.returncode, 0, r1.stderr[-2000:])
        r2 = self.train(two, 2)
        self.assertEqual(r2.returncode, 0, r2.stderr[-2000:])
        self.assertIn("(2 processes", r2.stdout + r2.stderr)
        d = max_diff(os.path.join(one, "last.safetensors"), os.path.join(two, "last.safetensors"))
        self.assertLess(d, 1e-10, f"2 processes vs 1 on the combined batch: weights differ by {d}")

        # Killed (SIGKILL of rank 0) at step 6, in epoch 2; the checkpoint of epoch 1 survives.
        rk = self.train(killed, 2, env={"VITFOLD_TORCH_KILL_AT_STEP": "6"})
        self.assertNotEqual(rk.returncode, 0)
        self.assertEqual(torch.load(os.path.join(killed, "checkpoint.pt"))["step"], 4)
        again = self.train(killed, 2)
        self.assertNotEqual(again.returncode, 0, "a fresh run refuses a directory that holds a run")
        self.assertIn("--resume it", again.stdout + again.stderr)
        changed = self.resume(killed, 1, ["--epochs", "3"])
        self.assertEqual(changed.returncode, 2, "--resume refuses flags that would change the run")
        self.assertIn("not --epochs", changed.stdout + changed.stderr)
        rr = self.resume(killed, 2)
        self.assertEqual(rr.returncode, 0, rr.stderr[-2000:])
        self.assertIn("resume", rr.stdout + rr.stderr)
        d = max_diff(os.path.join(two, "last.safetensors"), os.path.join(killed, "last.safetensors"))
        self.assertLess(d, 1e-12, f"resumed vs uninterrupted: weights differ by {d}")
        # The log was cut back to the checkpoint: every step and epoch appears once.
        events = [json.loads(line) for line in open(os.path.join(killed, "log.jsonl"))]
        self.assertEqual([e["epoch"] for e in events if e.get("event") == "epoch"], [1, 2])
        self.assertEqual([e["epoch"] for e in events if e.get("event") == "switch"], [1], "the switch the killed run logged after its checkpoint is cut, then logged again")
        steps = [e["step"] for e in events if "step" in e and "event" not in e]
        self.assertEqual(steps, sorted(set(steps)))
        # Joined after epoch 1, trained on as the fold: vitfold verifies the joined model's fold
        # and exports the result as it is.
        _, md = read_safetensors(os.path.join(killed, "last.safetensors"))
        self.assertEqual(md["structure"], '{"kind":"folded","branches":4,"source_depth":12}')
        for args in (["verify", os.path.join(killed, "joined.safetensors")], ["export", os.path.join(killed, "last.safetensors"), "--out", os.path.join(self.tmp, "ddp.onnx")]):
            r = vitfold(*args)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_shrink_of_a_deep_model_folds_exactly(self):
        deep = os.path.join(self.tmp, "deep.safetensors")
        torch.manual_seed(0)
        save_model(deep, VisionTransformer(ViTConfig.preset("vit-28-p7")))
        out, out2 = os.path.join(self.tmp, "shrink"), os.path.join(self.tmp, "shrink-2")
        shrink = ["--shrink", deep, "--depth", "3", "--data", self.data, "--epochs", "2", "--batch", "16", "--hidden", "1", "--float64"]
        r = self.launch(1, ["--out", out, *shrink])
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        # Hidden-state matching is a per-image mean: 2 processes compute the combined batch's loss.
        r = self.launch(2, ["--out", out2, *shrink])
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        d = max_diff(os.path.join(out, "last.safetensors"), os.path.join(out2, "last.safetensors"))
        self.assertLess(d, 1e-10, f"shrink with --hidden, 2 processes vs 1: weights differ by {d}")
        for bad, why in ((["--hidden", "1"], "it is for --shrink runs"), (["--shrink", deep, "--depth", "1", "--hidden", "1"], "needs --depth 2 or more")):
            r = self.launch(1, ["--out", os.path.join(self.tmp, "bad"), "--data", self.data, *bad])
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn(why, r.stderr)
        _, md = read_safetensors(os.path.join(out, "joined.safetensors"))
        self.assertEqual(md["structure"], '{"kind":"branched","branches":4,"attn":[1.0,1.0,1.0],"ffn":[1.0,1.0,1.0]}')
        r = vitfold("fold", os.path.join(out, "joined.safetensors"), "--out", os.path.join(self.tmp, "shrunk.safetensors"), "--verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("-> 3 layers, 12 heads", r.stdout)
        self.assertIn('"kind":"folded"', read_safetensors(os.path.join(out, "last.safetensors"))[1]["structure"])

    def test_shrink_on_an_image_folder(self):
        from PIL import Image

        root = os.path.join(self.tmp, "folder")
        g = torch.Generator().manual_seed(3)
        for split, n in (("train", 8), ("val", 4)):
            for c, name in enumerate(["cat", "dog"]):
                os.makedirs(os.path.join(root, split, name), exist_ok=True)
                for i in range(n):
                    px = (torch.rand(40, 48, 3, generator=g) * 60 + 150 * c).to(torch.uint8)  # not square: resized, then cropped
                    Image.fromarray(px.numpy()).save(os.path.join(root, split, name, f"{i}.png"))
        deep = os.path.join(self.tmp, "deep-rgb.safetensors")
        torch.manual_seed(1)
        save_model(deep, VisionTransformer(ViTConfig(32, 8, 3, 2, 48, 4, 2, 24, 96)))
        out = os.path.join(self.tmp, "shrink-folder")
        r = self.launch(1, ["--shrink", deep, "--depth", "2", "--out", out, "--dataset", "folder", "--data", root, "--epochs", "2", "--batch", "8", "--workers", "2"])
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        _, md = read_safetensors(os.path.join(out, "last.safetensors"))
        self.assertEqual(md["classes"], '["cat","dog"]')
        r = vitfold("fold", os.path.join(out, "joined.safetensors"), "--out", os.path.join(self.tmp, "shrunk-rgb.safetensors"), "--verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
