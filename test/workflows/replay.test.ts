import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import { HISTORIES_DIR, installQuietRuntime } from '../helpers/temporal';

// Histories recorded from real runs (RECORD_HISTORIES=1 npm test) by earlier versions of the
// workflow (`before-restructure-*`: the code before the workflow was split into modules, and before
// the deploy-target and deploy-failed patches; `serving-deploy-failed-before-bounds` and the
// others without `serving-bounds` in their name: the code before requests were checked on
// arrival; `serving-bounds-*`: the code since; `before-retire-*`: the code before a run's end
// stopped its endpoint; `<workflow id>~<run>`: retraining (owner, child, scheduled tick),
// notifications, a flood's hand-over and `finish` carried across continue-as-new, as first
// recorded): the current code must replay every one of them,
// or runs already started would fail with a non-determinism error when a release without Worker
// Versioning picks them up.
describe('cnnSkinCancerWorkflow replays histories recorded by earlier code (no server)', function () {
  const files = readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.pb'));

  it('has recorded histories to replay', () => {
    assert.ok(files.length >= 16, `expected the recorded histories in ${HISTORIES_DIR}, found ${files.length}`);
  });

  it('replays each of them without a non-determinism error', async () => {
    installQuietRuntime();
    const workflowBundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows'),
      logger: new DefaultLogger('WARN'),
    });
    const histories = files.map((f) => ({
      // `<workflow id>~<which run>.pb`: the id itself, where the code derives names from it (a retraining child's).
      workflowId: f.replace(/\.pb$/, '').split('~')[0]!,
      history: temporal.api.history.v1.History.decode(readFileSync(join(HISTORIES_DIR, f))),
    }));
    const failed: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle }, histories)) {
      if (result.error) failed.push(`${result.workflowId}: ${result.error.message}`);
    }
    assert.deepEqual(failed, []);
  });
});
