// `vitfold app`: the browser app. Serves a page that runs two or more exported models side by
// side in onnxruntime-web (top-5, latency, speed-up of the fold), or writes it to a folder.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { CliError, numberArg } from './args.js';
import { appModels, appSite, serveSite, writeSite } from '../deploy/app.js';
import { DEMO_TEACHER_DIR } from './demo.js';

/** The demo run's deep model and its fold: what the page shows when no --models are given. */
function demoModels(demoDir: string): { paths: string[]; names: string[] } {
  const folded = ['folded.onnx', 'folded.safetensors'].map((f) => join(demoDir, f)).find((p) => existsSync(p));
  if (!folded) {
    throw new CliError(`no models given and no demo run in ${demoDir} (it has no folded.onnx or folded.safetensors): run \`vitfold demo\` first, or name the models: vitfold app --models deep.onnx folded.onnx`);
  }
  return { paths: [join(DEMO_TEACHER_DIR, 'last.safetensors'), folded], names: ['the trained 12-layer model', 'its 3-layer fold (vitfold shrink)'] };
}

export function addAppCommand(program: Command): void {
  program
    .command('app')
    .description('a browser page that runs exported models side by side (top-5, latency, speed-up of the fold), served locally or written to a folder')
    .option('--models <files...>', 'the models to compare (one works too): exported .onnx files (any precision), or .safetensors (exported to fp32 on the fly); default: the demo\'s 12-layer teacher and the fold in --demo')
    .option('--demo <dir>', 'the demo run whose fold (folded.onnx or .safetensors) is shown beside the shipped 12-layer teacher by default', 'runs/demo')
    .addOption(new Option('--port <n>', 'port to serve on (0: any free port)').argParser(numberArg('--port', (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'an integer in [0, 65535]')).default(8080))
    .option('--host <address>', 'address to listen on (0.0.0.0 for other machines; browsers treat plain http from another host as insecure: no threads, no webcam)', '127.0.0.1')
    .option('--out <dir>', 'write the page, its assets and the models to this new folder for a static host, instead of serving')
    .addHelpText(
      'after',
      `
The page loads onnxruntime-web from the served files (no network), uses WebGPU when the browser
has it and WebAssembly (SIMD, threads) otherwise, and reads each model's input size,
normalization and class names from the file's own metadata. Open ?runs=N for N timed runs per model.

Examples:
  $ vitfold app
  $ vitfold app --models deit-tiny.onnx deit-tiny-3layer.onnx deit-tiny-3layer-int8.onnx --port 9000
  $ vitfold app --models runs/fm/last.safetensors runs/fm/folded.safetensors --out site/`,
    )
    .action(async (o: { models?: string[]; demo: string; port: number; host: string; out?: string }) => {
      const { paths, names } = o.models ? { paths: o.models, names: undefined } : demoModels(o.demo);
      if (o.out && existsSync(o.out) && (!statSync(o.out).isDirectory() || readdirSync(o.out).length)) throw new CliError(`--out ${o.out} exists and is not an empty folder: choose a new folder`);
      const models = await appModels(paths, { names, onLine: (s) => console.log(s) });
      const site = appSite(models);
      if (o.out) {
        const files = writeSite(site, o.out);
        console.log(`wrote    ${o.out}: ${files.length} files (page, onnxruntime-web, ${models.length} model${models.length === 1 ? '' : 's'}, samples)`);
        console.log(`         serve it with any static server; with the headers in ${join(o.out, '_headers')} the page runs multi-threaded`);
        return;
      }
      const { url, server } = await serveSite(site, { port: o.port, host: o.host });
      console.log(`serving  ${url}  (${models.map((m) => m.name).join(', ')}); Ctrl-C to stop`);
      await new Promise<void>((done) => {
        const stop = () => server.close(() => done());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
