// IDX files (Fashion-MNIST): gzip and raw, corrupted files, labels, missing files.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DataError, loadMnistLike, parseIdx } from '../../src/data/idx.js';
import { idx, tmpDir, writeDataset } from '../helpers.js';

describe('IDX data', () => {
  test('gzip and raw files load', () => {
    for (const gz of [true, false]) {
      const dir = tmpDir();
      writeDataset(dir, 20, 10, gz);
      const s = loadMnistLike(dir, 'train');
      assert.equal(s.count, 20);
      assert.equal(s.size, 28);
      assert.equal(s.images.length, 20 * 784);
    }
  });
  test('corrupted files give clear errors', () => {
    const good = idx([2, 2, 2], new Uint8Array(8));
    assert.throws(() => parseIdx(good.subarray(0, 10), 'a.idx'), /a.idx: truncated IDX header/);
    assert.throws(() => parseIdx(good.subarray(0, 18), 'a.idx'), /a.idx: dims \[2,2,2\] need 8 data bytes, file has 2 \(truncated or corrupted\)/);
    const badMagic = Uint8Array.from(good);
    badMagic[0] = 0x50;
    assert.throws(() => parseIdx(badMagic, 'b.idx'), /b.idx: not an IDX file \(magic bytes 80, 0/);
    const floats = Uint8Array.from(good);
    floats[2] = 0x0d;
    assert.throws(() => parseIdx(floats, 'c.idx'), /c.idx: IDX element type 0xd is not supported/);
    assert.throws(() => parseIdx(Uint8Array.from([0x1f, 0x8b, 1, 2, 3]), 'd.gz'), /d.gz: corrupt gzip data/);
  });
  test('mismatched or out-of-range labels, missing files', () => {
    const dir = tmpDir();
    writeDataset(dir, 4, 4, false);
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([3], Uint8Array.from([1, 2, 3])));
    assert.throws(() => loadMnistLike(dir, 'train'), /3 labels for 4 images/);
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([4], Uint8Array.from([1, 2, 12, 3])));
    assert.throws(() => loadMnistLike(dir, 'train'), /label 12 at index 2 is not one of 10 classes/);
    assert.throws(() => loadMnistLike(join(dir, 'nope'), 'train'), (e: Error) => e instanceof DataError && /not found in .*nope.*apt-get install dataset-fashion-mnist/s.test(e.message));
  });
});
