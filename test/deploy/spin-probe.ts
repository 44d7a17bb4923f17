// Child process of test/bench.test.ts: the process CPU time while idle after a run of a session
// with spin-waiting on and off, measured in a process that does nothing else (inside the test
// process, after the other bench tests, the window held 19 ms of CPU with spinning off).
// Prints one JSON line, {on: {during, waited, after}, off: {...}} in ms: `during` the CPU used
// while waitUntilQuiet waits after a run, `waited` how long it waited, `after` the CPU used in
// the 50 ms after that (each the least of three).

import { peakGraph, waitUntilQuiet } from '../../src/deploy/bench.js';
import { Session } from '../../src/runtime/ort.js';

const cpuMsOf = async (wait: () => Promise<unknown>) => {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await wait();
  const c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1000, ms: performance.now() - t0 };
};
const n = 256;
const feeds = { x: { shape: [n, n], data: new Float32Array(n * n).fill(1) } };
// The first such measurement in a process counts one-off work of its main thread (seen: 5.9 and
// 10-12 ms of CPU in the idle window with spinning off): one untimed round first.
const measure = async (spinning: boolean) => {
  const s = await Session.create(peakGraph(n), { threads: 2, spinning });
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const during = await cpuMsOf(() => waitUntilQuiet());
  const after = await cpuMsOf(() => new Promise((resolve) => setTimeout(resolve, 50)));
  await s.release();
  return { during: during.cpu, waited: during.ms, after: after.cpu };
};
// Other load on the machine only adds CPU time to a window, never removes it, so each figure is
// the least of three measurements (a single one once read 9.8 ms with spinning off on a busy
// machine).
const REPEATS = 3;
const least = async (spinning: boolean) => {
  const ms = [];
  for (let r = 0; r < REPEATS; r++) ms.push(await measure(spinning));
  return { during: Math.min(...ms.map((m) => m.during)), waited: Math.min(...ms.map((m) => m.waited)), after: Math.min(...ms.map((m) => m.after)) };
};
await measure(false);
const out = { on: await least(true), off: await least(false) };
process.stdout.write(JSON.stringify(out) + '\n');
