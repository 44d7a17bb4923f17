// The library's documented surface: every export of vitfold and vitfold/web has TSDoc, and
// docs/api.md (which the README links) lists exactly those exports, as `npm run docs:api` writes it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiDocs } from '../../scripts/api-docs.js';
import { REPO } from '../helpers.js';

test('every export has TSDoc, and docs/api.md is current (npm run docs:api)', () => {
  const { markdown, missing } = apiDocs();
  assert.deepEqual(missing, [], 'exports without a documentation comment');
  assert.equal(readFileSync(join(REPO, 'docs', 'api.md'), 'utf8'), markdown, 'docs/api.md is stale: run npm run docs:api');
  assert.match(readFileSync(join(REPO, 'README.md'), 'utf8'), /\]\(docs\/api\.md\)/, 'the README links the API list');
});
