// Join and learning-rate schedules: pure functions of training progress.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { joinCoefficients, learningRate, validateJoinSchedule, type JoinSchedule } from '../../src/train/schedule.js';

describe('join schedule', () => {
  const schedules: JoinSchedule[] = [
    { mode: 'together', shape: 'cosine', start: 0, end: 0.5 },
    { mode: 'together', shape: 'linear', start: 0.2, end: 0.9 },
    { mode: 'sequential', shape: 'linear', start: 0, end: 0.6 },
    { mode: 'sequential', shape: 'cosine', start: 0.1, end: 1 },
  ];
  for (const s of schedules) {
    test(`${s.mode} ${s.shape} [${s.start}, ${s.end}]: monotone, attention before FFN, ends at exactly 1`, () => {
      const L = 4;
      let prev = joinCoefficients(s, L, 0);
      assert.ok([...prev.attn, ...prev.ffn].every((c) => c === 0), 'starts as the deep model');
      for (let i = 1; i <= 1000; i++) {
        const p = i / 1000;
        const c = joinCoefficients(s, L, p);
        for (let b = 0; b < L; b++) {
          assert.ok(c.attn[b] >= prev.attn[b] && c.ffn[b] >= prev.ffn[b], `monotone at p=${p}`);
          assert.ok(c.attn[b] >= 0 && c.attn[b] <= 1 && c.ffn[b] >= 0 && c.ffn[b] <= 1);
          if (c.ffn[b] > 0) assert.equal(c.attn[b], 1, `block ${b}: ffn ${c.ffn[b]} before attn reached 1 (p=${p})`);
          if (p >= s.end) assert.ok(c.attn[b] === 1 && c.ffn[b] === 1, `not joined at p=${p}`);
        }
        prev = c;
      }
      if (s.mode === 'sequential') {
        const mid = joinCoefficients(s, L, s.start + (s.end - s.start) * 0.3); // inside block 1's slot
        assert.ok(mid.ffn[0] === 1 && mid.attn[2] === 0, 'block by block');
      }
    });
  }
  test('none keeps every coefficient 0; invalid windows are rejected', () => {
    const c = joinCoefficients({ mode: 'none', shape: 'linear', start: 0, end: 1 }, 3, 0.7);
    assert.deepEqual(c, { attn: [0, 0, 0], ffn: [0, 0, 0] });
    assert.throws(() => validateJoinSchedule({ mode: 'together', shape: 'linear', start: 0.6, end: 0.5 }), /0 <= start < end <= 1/);
  });
  test('learning rate: linear warm-up, cosine to the minimum', () => {
    const s = { peak: 1e-3, min: 1e-5, warmup: 10, total: 110 };
    assert.equal(learningRate(s, 0), 1e-4);
    assert.equal(learningRate(s, 9), 1e-3);
    assert.ok(Math.abs(learningRate(s, 60) - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-12);
    assert.ok(Math.abs(learningRate(s, 110) - 1e-5) < 1e-15);
    for (let i = 10; i < 110; i++) assert.ok(learningRate(s, i + 1) <= learningRate(s, i));
  });
});
