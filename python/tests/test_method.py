"""vitfold_torch against fixtures/method/, the values vitfold computes (scripts/method-fixtures.ts):
the branched forward at several join states, the join and learning-rate schedules at 50 progress
points, the distillation loss and hidden-state matching."""

import os
import unittest

import torch

from helpers import FIXTURES, method
from vitfold_torch import JoinSchedule, Structure, join_coefficients, learning_rate, load_model, read_safetensors, training_loss
from vitfold_torch.loss import boundary_layers, hidden_matching_loss, smoothed_targets


class MethodFixtures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = method()
        cls.model, _, _ = load_model(os.path.join(FIXTURES, "model.safetensors"), dtype=torch.float64)
        cls.model.eval()
        cls.x = read_safetensors(os.path.join(FIXTURES, "input.safetensors"))[0]["x"].double()

    def test_branched_forward_equals_vitfold_float64(self):
        self.assertEqual(len(self.m["forward"]), 6)
        for c in self.m["forward"]:
            s = Structure(c["branches"], c["attn"], c["ffn"]) if c["branches"] > 1 else Structure()
            with torch.no_grad():
                got = self.model(self.x, s).flatten()
            want = torch.tensor(c["logits"], dtype=torch.float64)
            err = float((got - want).abs().max() / want.abs().max())
            self.assertLess(err, 1e-10, f"k={c['branches']} attn={c['attn']} ffn={c['ffn']}: max rel error {err}")

    def test_join_schedules_equal_vitfold_at_50_points(self):
        for s in self.m["join"]:
            sched = JoinSchedule(s["mode"], s["shape"], s["start"], s["end"]).validate()
            self.assertEqual(len(s["points"]), 50)
            for pt in s["points"]:
                attn, ffn = join_coefficients(sched, s["blocks"], pt["p"])
                self.assertEqual(len(attn + ffn), len(pt["attn"] + pt["ffn"]))
                for got, want in zip(attn + ffn, pt["attn"] + pt["ffn"]):
                    self.assertAlmostEqual(got, want, delta=1e-15, msg=f"{s['mode']} {s['shape']} p={pt['p']}")

    def test_learning_rate_equals_vitfold(self):
        for s in self.m["lr"]:
            for step, want in s["values"]:
                self.assertAlmostEqual(learning_rate(s["peak"], s["warmup"], s["total"], s["min"], step), want, delta=1e-15 * max(1, abs(want)))

    def test_distillation_loss_equals_vitfold(self):
        for c in self.m["distill"]:
            B, K = len(c["labels"]), c["classes"]
            z = torch.tensor(c["logits"], dtype=torch.float64).reshape(B, K)
            zt = torch.tensor(c["teacher_logits"], dtype=torch.float64).reshape(B, K)
            y = smoothed_targets(torch.tensor(c["labels"]), K, c["smoothing"])
            got = float(training_loss(z, y, zt, c["alpha"], c["temperature"]))
            self.assertAlmostEqual(got, c["loss"], delta=1e-12 * abs(c["loss"]), msg=f"alpha {c['alpha']} T {c['temperature']}")

    def test_hidden_matching_equals_vitfold(self):
        self.assertEqual(len(self.m["hidden"]), 2)
        depth = self.model.cfg.depth
        for c in self.m["hidden"]:
            L = depth // c["branches"]
            with torch.no_grad():
                _, teacher = self.model(self.x, hidden=True)
                _, student = self.model(self.x, Structure(c["branches"], c["attn"], c["ffn"]), hidden=True)
            self.assertEqual((len(teacher), len(student)), (depth - 1, L - 1))
            got = float(hidden_matching_loss(student, [teacher[i] for i in boundary_layers(depth, L)], c["beta"]))
            self.assertAlmostEqual(got, c["loss"], delta=1e-10 * c["loss"], msg=f"k={c['branches']}")

    def test_hidden_matching_is_zero_at_the_start(self):
        # Every coefficient 0: the student's block boundaries carry the deep model's streams exactly.
        with torch.no_grad():
            _, teacher = self.model(self.x, hidden=True)
            for k in (2, 3):
                L = self.model.cfg.depth // k
                _, student = self.model(self.x, Structure(k, [0.0] * L, [0.0] * L), hidden=True)
                self.assertEqual(float(hidden_matching_loss(student, [teacher[i] for i in boundary_layers(self.model.cfg.depth, L)], 1.0)), 0.0)


if __name__ == "__main__":
    unittest.main()
