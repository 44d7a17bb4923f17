// Hostile and broken input: model files whose header asks for unbounded memory or time,
// commands pointed at their own input, and a seeded fuzz of hundreds of mutated model files
// and run directories. Each must give a valid result or a clean error (exit 2), never a crash,
// a hang or unbounded memory.

import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { VitfoldError } from '../../src/core/errors.js';
import { fold } from '../../src/core/fold.js';
import { flopsPerImage } from '../../src/core/flops.js';
import { modelFromSafetensors, toBranched } from '../../src/core/model.js';
import { Rng } from '../../src/core/rng.js';
import { parseSafetensors } from '../../src/core/safetensors.js';
import { saveModel } from '../../src/io.js';
import { randomModel, runVitfold, smallConfig, tmpDir, writeDataset } from '../helpers.js';

// A hang is a failure: runVitfold kills the child after 60 s (every case here takes a few seconds).
const vitfold = (...args: string[]) => runVitfold(args, {}, 60_000);

/** A safetensors file with this header and `dataBytes` zero bytes of data. */
function rawFile(header: object, dataBytes = 0): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}

const config = (over: object) => JSON.stringify({ img_size: 28, patch_size: 7, in_chans: 1, num_classes: 10, embed_dim: 16, depth: 4, num_heads: 2, head_dim: 8, mlp_hidden: 32, ...over });

describe('a header cannot ask for unbounded memory or time', () => {
  const dir = tmpDir();
  const cases: [string, object, number, RegExp][] = [
    ['depth 1e6', { __metadata__: { config: config({ depth: 1_000_000 }) }, 'cls_token': { dtype: 'F32', shape: [1, 1, 16], data_offsets: [0, 64] } }, 64, /depth 1000000 is above vitfold's limit of 1024/],
    ['depth 1e15, 7 branches', { __metadata__: { config: config({ depth: 1e15 }), structure: JSON.stringify({ kind: 'branched', branches: 7, attn: [1], ffn: [1] }) } }, 0, /depth 1000000000000000 is above vitfold's limit/],
    ['img_size 65536, patch 256', { __metadata__: { config: config({ img_size: 65536, patch_size: 256 }) } }, 0, /img_size 65536 is above vitfold's limit of 4096/],
    ['img_size 2^20', { __metadata__: { config: config({ img_size: 2 ** 20, patch_size: 1 }) } }, 0, /img_size 1048576 is above/],
    ['4096 x 4 patches', { __metadata__: { config: config({ img_size: 4096, patch_size: 4 }) } }, 0, /1048576 patches .* above vitfold's limit of 4096/],
    ['depth 1000 in 64 bytes', { __metadata__: { config: config({ depth: 1000 }) }, 'cls_token': { dtype: 'F32', shape: [1, 1, 16], data_offsets: [0, 64] } }, 64, /the config needs 2,225,290 parameters, but the file's tensors hold at most 32 values/],
  ];
  for (const [name, header, bytes, message] of cases) {
    test(name, async () => {
      const p = join(dir, `${name.replace(/\W+/g, '-')}.safetensors`);
      writeFileSync(p, rawFile(header, bytes));
      for (const cmd of [['info', p], ['fold', p, '--out', join(dir, 'f.safetensors')], ['export', p, '--out', join(dir, 'x.onnx')]]) {
        const r = await vitfold(...cmd);
        assert.equal(r.code, 2, `${cmd[0]}: ${r.err}`);
        assert.match(r.err, message);
        assert.ok(r.ms < 20_000, `${cmd[0]} took ${r.ms} ms`);
      }
    });
  }
  test('crop_pct 1e-4 in the normalization metadata', async () => {
    const m = randomModel(smallConfig({ img_size: 8, in_chans: 3 }), 1);
    const p = join(dir, 'crop.safetensors');
    saveModel(p, { ...m, extraMetadata: { normalization: JSON.stringify({ mean: [0, 0, 0], std: [1, 1, 1], crop_pct: 1e-4 }) } });
    const img = join(dir, 'a.png');
    await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } }).png().toFile(img);
    const r = await vitfold('predict', p, '--input', img);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /normalization.crop_pct must be in \[0.5, 1\], got 0.0001/);
  });
});

test('commands refuse to write over their own input', async () => {
  const dir = tmpDir();
  const p = join(dir, 'm.safetensors');
  saveModel(p, toBranched(randomModel(smallConfig(), 2), 3, { attn: 1, ffn: 1 }));
  const before = readFileSync(p);
  const x = join(dir, 'x.safetensors');
  const cases = [
    ['export', p, '--out', p],
    ['fold', p, '--out', p],
    ['fold', p, '--out', join(dir, '.', 'm.safetensors')],
    ['predict', p, '--input', x, '--out', p],
  ];
  for (const args of cases) {
    const r = await vitfold(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, /--out .* is the input .*m.safetensors: writing it would destroy the input/);
    assert.deepEqual(readFileSync(p), before, `${args.join(' ')} changed the input`);
  }
});

/** One seeded mutation of a safetensors file. */
function mutate(good: Buffer, rng: Rng): Buffer {
  const headerLen = Number(good.readBigUInt64LE(0));
  const header = JSON.parse(good.subarray(8, 8 + headerLen).toString('utf8'));
  const data = good.subarray(8 + headerLen);
  const pick = <T>(xs: T[]) => xs[Math.floor(rng.uniform() * xs.length)];
  const kind = Math.floor(rng.uniform() * 7);
  const b = Buffer.from(good);
  switch (kind) {
    case 0: // flip bytes anywhere
      for (let i = 0; i < 1 + Math.floor(rng.uniform() * 8); i++) b[Math.floor(rng.uniform() * b.length)] ^= 1 << Math.floor(rng.uniform() * 8);
      return b;
    case 1: // truncate
      return b.subarray(0, Math.floor(rng.uniform() * b.length));
    case 2: // header length
      b.writeBigUInt64LE(BigInt(pick([0, 1, headerLen - 1, headerLen + 1, 2 ** 40, b.length, 2 ** 53 - 1])), 0);
      return b;
    case 3: { // a config field set to something hostile
      const cfg = JSON.parse(header.__metadata__.config);
      cfg[pick(Object.keys(cfg))] = pick([0, -1, 1e15, 1e308, 0.5, 2 ** 31, 2 ** 53, 1024, 4097, 'x', null, [], {}]);
      header.__metadata__.config = JSON.stringify(cfg);
      return rawWithData(header, data);
    }
    case 4: { // a tensor's dtype, shape or offsets
      const name = pick(Object.keys(header).filter((k) => k !== '__metadata__'));
      const t = header[name];
      const field = pick(['dtype', 'shape', 'data_offsets']);
      if (field === 'dtype') t.dtype = pick(['F64', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'F8_E4M3', 'nope']);
      else if (field === 'shape') t.shape = pick([[], [0], [-1], [2 ** 31, 2 ** 31], [1e15], t.shape.slice().reverse(), [...t.shape, 1]]);
      else t.data_offsets = pick([[0, 0], [t.data_offsets[1], t.data_offsets[0]], [0, 2 ** 40], [-4, 4], [t.data_offsets[0] + 1, t.data_offsets[1] + 1]]);
      return rawWithData(header, data);
    }
    case 5: { // structure metadata
      header.__metadata__.structure = pick([
        '{"kind":"branched","branches":1000000,"attn":[1],"ffn":[1]}',
        '{"kind":"branched","branches":3,"attn":[1e9,1],"ffn":[0,0]}',
        '{"kind":"branched","branches":3,"attn":[0.5,0.5],"ffn":[1,1]}',
        '{"kind":"folded","from_depth":1e12,"branches":7}',
        '{"kind":"weird"}',
        'not json',
      ]);
      return rawWithData(header, data);
    }
    default: { // normalization / classes metadata
      header.__metadata__.normalization = pick(['{"mean":[0],"std":[0],"crop_pct":1}', '{"mean":[1e308,1,1],"std":[1,1,1],"crop_pct":1e-9}', '[]', '{']);
      header.__metadata__.classes = pick(['[]', '["a"]', 'x', JSON.stringify(Array(1e5).fill('c'))]);
      return rawWithData(header, data);
    }
  }
}

function rawWithData(header: object, data: Buffer): Buffer {
  return Buffer.concat([rawFile(header), data]);
}

test('fuzz: 400 mutated model files load, fold and count FLOPs or fail with a clean error, in bounded memory', { timeout: 120_000 }, (t) => {
  const cfg = smallConfig({ depth: 6 });
  const dir = tmpDir();
  const p = join(dir, 'good.safetensors');
  saveModel(p, toBranched(randomModel(cfg, 4), 3, { attn: 1, ffn: 1 }));
  const good = readFileSync(p);
  const rng = new Rng(2026);
  const counts = { valid: 0, clean: 0 };
  const crashes: string[] = [];
  const rss0 = process.memoryUsage().rss;
  let rssMax = rss0;
  for (let i = 0; i < 400; i++) {
    const bytes = mutate(good, rng);
    try {
      const m = modelFromSafetensors(parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), `mutant ${i}`), `mutant ${i}`);
      flopsPerImage(m.config);
      if (m.structure.kind === 'branched') fold(m, `mutant ${i}`);
      counts.valid++;
    } catch (e) {
      if (e instanceof VitfoldError) counts.clean++;
      else crashes.push(`mutant ${i}: ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}`);
    }
    rssMax = Math.max(rssMax, process.memoryUsage().rss);
  }
  t.diagnostic(`400 mutants: ${counts.valid} valid, ${counts.clean} clean errors, ${crashes.length} crashes; RSS +${((rssMax - rss0) / 2 ** 20).toFixed(0)} MB`);
  assert.deepEqual(crashes, []);
  assert.equal(counts.valid + counts.clean, 400);
  assert.ok(counts.clean > 300, `${counts.clean} clean errors: the mutations should mostly break the file`);
  // The model is ~20 KB: no mutant may make the loader allocate more than a little.
  assert.ok(rssMax - rss0 < 256 * 2 ** 20, `RSS grew by ${((rssMax - rss0) / 2 ** 20).toFixed(0)} MB`);
});

test('fuzz: damaged run directories resume or fail with a clean error', { timeout: 300_000 }, async (t) => {
  const root = tmpDir();
  const data = join(root, 'data');
  writeDataset(data, 48, 16, false);
  const run = join(root, 'run');
  const args = ['train', '--data', data, '--depth', '4', '--embed-dim', '16', '--num-heads', '2', '--head-dim', '8', '--mlp-hidden', '32', '--branches', '2', '--epochs', '2', '--batch', '16', '--limit-test', '16', '--threads', '1', '--join-end', '0.3'];
  const r = await vitfold(...args, '--out', run);
  assert.equal(r.code, 0, r.err);
  const damage: [string, (d: string) => void][] = [
    ['config.json not JSON', (d) => writeFileSync(join(d, 'config.json'), '{"model": ')],
    ['config.json model depth -1', (d) => writeFileSync(join(d, 'config.json'), readFileSync(join(d, 'config.json'), 'utf8').replace('"depth": 4', '"depth": -1'))],
    ['config.json epochs 0', (d) => writeFileSync(join(d, 'config.json'), readFileSync(join(d, 'config.json'), 'utf8').replace('"epochs": 2', '"epochs": 0'))],
    ['config.json missing', (d) => rmSync(join(d, 'config.json'))],
    ['checkpoint.json torn', (d) => writeFileSync(join(d, 'checkpoint.json'), readFileSync(join(d, 'checkpoint.json')).subarray(0, 20))],
    ['checkpoint.json names ../', (d) => writeFileSync(join(d, 'checkpoint.json'), readFileSync(join(d, 'checkpoint.json'), 'utf8').replace(/"model": "[^"]*"/, '"model": "../../etc/passwd"'))],
    ['checkpoint file changed', (d) => writeFileSync(join(d, 'checkpoints', 'epoch-0002', 'state.safetensors'), 'x')],
    ['checkpoint directory gone', (d) => rmSync(join(d, 'checkpoints'), { recursive: true })],
    ['log truncated', (d) => writeFileSync(join(d, 'log.jsonl'), readFileSync(join(d, 'log.jsonl')).subarray(0, 10))],
    ['log missing', (d) => rmSync(join(d, 'log.jsonl'))],
    ['run directory is a file', (d) => (rmSync(d, { recursive: true }), writeFileSync(d, 'x'))],
  ];
  const results: string[] = [];
  for (const [name, harm] of damage) {
    const d = join(root, name.replace(/\W+/g, '-'));
    cpSync(run, d, { recursive: true });
    harm(d);
    const res = await vitfold('train', '--resume', d);
    if (res.code !== 2 || !/^vitfold: error: /.test(res.err) || /internal error|\n\s+at /.test(res.err)) results.push(`${name}: exit ${res.code}: ${res.err}`);
  }
  assert.deepEqual(results, []);
  // The undamaged copy resumes (nothing left to train) and ends as it was.
  const ok = join(root, 'ok');
  cpSync(run, ok, { recursive: true });
  const before = readFileSync(join(ok, 'folded.safetensors'));
  assert.equal((await vitfold('train', '--resume', ok)).code, 0);
  assert.deepEqual(readFileSync(join(ok, 'folded.safetensors')), before);
  assert.ok(existsSync(join(ok, 'checkpoint.json')));
  t.diagnostic(`${damage.length} damaged run directories: ${damage.length} clean errors`);
});

test('too few training images for one batch is a clean error, and leaves no checkpoint', async () => {
  const root = tmpDir();
  writeDataset(join(root, 'data'), 8, 8, false);
  const out = join(root, 'run');
  const r = await vitfold('train', '--data', join(root, 'data'), '--depth', '4', '--embed-dim', '16', '--num-heads', '2', '--head-dim', '8', '--mlp-hidden', '32', '--batch', '16', '--out', out);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /8 training images make no full batch of 16: use a smaller --batch or more images/);
  assert.ok(!existsSync(join(out, 'checkpoint.json')) && !existsSync(join(out, 'last.safetensors')) && !existsSync(join(out, 'lock')));
});

test('filesystem errors name the path the user gave and exit 2, no stack trace', async () => {
  const dir = tmpDir();
  const cases: [string[], RegExp][] = [
    [['init', '--preset', 'vit-28-p7', '--out', join(dir, 'no', 'such', 'x.safetensors')], /^vitfold: error: cannot write .*\/no\/such\/x.safetensors: no such file or directory \(ENOENT\)\n$/],
    [['init', '--preset', 'vit-28-p7', '--out', dir], new RegExp(`^vitfold: error: cannot write ${dir}: is a directory \\(EISDIR\\)\\n$`)],
    [['info', dir], new RegExp(`^vitfold: error: ${dir}: cannot read: is a directory\\n$`)],
  ];
  for (const [args, message] of cases) {
    const r = await vitfold(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
  }
});

test('temp files never follow a planted symlink: created exclusively, under unpredictable names', async () => {
  const { tempPath, writeFileSynced, writeFileAtomic } = await import('../../src/io.js');
  const dir = tmpDir();
  const victim = join(dir, 'victim.txt');
  writeFileSync(victim, 'keep me');
  const target = join(dir, 'model.safetensors');
  assert.notEqual(tempPath(target), tempPath(target));
  const planted = join(dir, 'planted.tmp');
  symlinkSync(victim, planted);
  assert.throws(() => writeFileSynced(planted, new Uint8Array([1, 2, 3])), /EEXIST/);
  writeFileAtomic(target, 'new');
  assert.equal(readFileSync(victim, 'utf8'), 'keep me');
  assert.equal(readFileSync(target, 'utf8'), 'new');
});

test('join windows outside training are usage errors naming the flag', async () => {
  for (const [args, message] of [
    [['--join-end', '2'], /--join-end 2 lies past the end of training/],
    [['--join-start', '0.6', '--join-end', '0.5'], /join window must satisfy 0 <= start < end <= 1/],
  ] as [string[], RegExp][]) {
    const r = await vitfold('train', ...args, '--out', join(tmpDir(), 'r'));
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, message);
  }
});
