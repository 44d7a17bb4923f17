// The Python package (python/vitfold_torch) is tested by its own unittest suite, with Debian's
// python3-torch: the method fixtures, the CLI on files it writes, 2-process DDP and resume. This
// runs that suite as part of `npm test` (after the build its CLI tests need). CI installs
// python3-torch and sets VITFOLD_REQUIRE_TORCH=1, so there it cannot be skipped.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from '../helpers.js';

const python = process.env.VITFOLD_PYTHON ?? '/usr/bin/python3';
const hasTorch = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
const requireTorch = process.env.VITFOLD_REQUIRE_TORCH === '1';

test('python/tests: vitfold_torch against the method fixtures, the vitfold CLI, 2-process DDP (gloo) and resume', { skip: !hasTorch && !requireTorch ? `no torch for ${python} (apt-get install python3-torch)` : false, timeout: 600_000 }, () => {
  assert.ok(hasTorch, `VITFOLD_REQUIRE_TORCH=1 but ${python} cannot import torch (apt-get install python3-torch)`);
  const r = spawnSync(python, ['-m', 'unittest', 'discover', '-v', '-s', join(REPO, 'python', 'tests'), '-t', join(REPO, 'python', 'tests')], { encoding: 'utf8', cwd: REPO, timeout: 590_000 });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, out.slice(-4000));
  const ran = /Ran (\d+) tests?/.exec(out);
  assert.ok(ran && Number(ran[1]) >= 8, `the Python suite ran ${ran?.[1]} tests:\n${out.slice(-2000)}`);
  assert.doesNotMatch(out, /skipped/);
});
