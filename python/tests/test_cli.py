"""vitfold_torch and the vitfold CLI on the same files: the branched forward equals `vitfold predict`
(float32, within 1e-5) plain, partially joined and fully joined; a fully joined checkpoint written
here folds, verifies (float64, 1e-9) and exports with the CLI, and vitfold's fold loads back."""

import os
import tempfile
import unittest

import torch

from helpers import FIXTURES, vitfold
from vitfold_torch import Structure, load_model, read_safetensors, save_model

MODEL = os.path.join(FIXTURES, "model.safetensors")
INPUT = os.path.join(FIXTURES, "input.safetensors")
STATES = [
    ("plain", 1, None, None),
    ("partially joined", 3, [0.5, 1.0], [0.0, 0.3]),
    ("fully joined", 2, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
]


class Cli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vitfold-torch-")
        self.x = read_safetensors(INPUT)[0]["x"]

    def test_forward_equals_vitfold_predict(self):
        model, _, _ = load_model(MODEL)  # float32, as predict runs
        model.eval()
        for name, k, attn, ffn in STATES:
            out = os.path.join(self.tmp, f"logits-{k}.safetensors")
            args = ["predict", MODEL, "--input", INPUT, "--out", out]
            if k > 1:
                args += ["--branches", str(k), "--join-attn", ",".join(map(str, attn)), "--join-ffn", ",".join(map(str, ffn))]
            r = vitfold(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            want = read_safetensors(out)[0]["logits"].double()
            with torch.no_grad():
                got = model(self.x.float(), Structure(k, attn, ffn) if k > 1 else None).double()
            err = float((got - want).abs().max() / want.abs().max())
            self.assertLess(err, 1e-5, f"{name}: max relative difference {err} from vitfold predict")

    def test_checkpoint_written_here_folds_verifies_and_exports(self):
        model, _, md = load_model(MODEL, dtype=torch.float64)
        joined = Structure(2, [1.0] * 3, [1.0] * 3)
        path = os.path.join(self.tmp, "joined.safetensors")
        save_model(path, model, joined, {"normalization": '{"mean":[0.5,0.5],"std":[0.5,0.5],"crop_pct":1}'}, dtype=torch.float64)
        folded = os.path.join(self.tmp, "folded.safetensors")
        for args in (["fold", path, "--out", folded, "--dtype", "f64", "--verify"], ["verify", path, "--folded", folded], ["export", folded, "--out", os.path.join(self.tmp, "folded.onnx")]):
            r = vitfold(*args)
            self.assertEqual(r.returncode, 0, f"vitfold {' '.join(args)}:\n{r.stdout}\n{r.stderr}")
        self.assertRegex(vitfold("verify", path, "--folded", folded).stdout, r"branched \(float64\) vs fold \(float64\): .*\(tolerance 1e-9\)  OK")
        # vitfold's fold loads here as a plain 1-layer-per-block ViT and computes the joined model.
        f, s, fmd = load_model(folded, dtype=torch.float64)
        self.assertFalse(s.is_branched)
        self.assertEqual((f.cfg.depth, f.cfg.num_heads, f.cfg.mlp_hidden), (3, 4, 40))
        self.assertIn("normalization", fmd)
        with torch.no_grad():
            a = model(self.x.double(), joined)
            b = f(self.x.double())
        self.assertLess(float((a - b).abs().max() / a.abs().max()), 1e-10)

    def test_fold_equals_vitfold_fold(self):
        from vitfold_torch import fold

        model, _, _ = load_model(MODEL, dtype=torch.float64)
        out = os.path.join(self.tmp, "vitfold-fold.safetensors")
        r = vitfold("fold", MODEL, "--branches", "2", "--assume-joined", "--dtype", "f64", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        theirs = read_safetensors(out)[0]
        mine = fold(model, 2).state_dict()
        self.assertEqual(set(mine), set(theirs))
        for k in theirs:
            self.assertLess(float((mine[k] - theirs[k]).abs().max()), 1e-12, k)


if __name__ == "__main__":
    unittest.main()
