/**
 * The owner's drift checks (src/workflows/drift.ts), with the measurement stubbed: a window too
 * small to judge grows until the next check; a figure above driftThreshold is announced and, with
 * retrainOnDrift, asks for a retraining; the next window starts where the last comparison ended.
 * A dev server, stubbed activities (the figures themselves: test/monitoring/drift.test.ts).
 */
import { strict as assert } from 'node:assert';
import type { PipelineEvent } from '../../src/common/types';
import type { DriftFigures } from '../../src/monitoring/drift';
import { finishSignal } from '../../src/workflows/messages';
import { ServingStubs, startStubRun } from '../helpers/serving-stubs';
import { startDevServer, statusWhen } from '../helpers/temporal';

const figures = (psi: number, images: number): DriftFigures => ({
  psi,
  features: { red: psi, green: 0.01, blue: 0.02, class: 0.03 },
  images,
  referenceImages: 2000,
});

describe("the owner's drift checks (dev server, stubbed activities)", function () {
  this.timeout(120_000);
  const stubs = new ServingStubs();
  const server = stubs.useServer(startDevServer);
  afterEach(() => stubs.releaseTrainings());

  it('records a window too small to judge and lets it grow; above the threshold it announces drift and asks for a retraining; the next window starts after the last', async () => {
    const id = 'drift-owner';
    stubs.drift = { figures: figures(0.9, 40), batches: 1, skipped: 0 };
    // Every 4 s: a window ends 1 s before its check.
    const owner = await startStubRun(server().client, id, { lifetimeSeconds: 3600, driftCheckHours: 4 / 3600, retrainOnDrift: true });
    const few = await statusWhen(owner, (s) => s.drift !== undefined, 'the first check');
    assert.equal(few.drift!.outcome, 'too-few-images');
    assert.equal(few.retraining, undefined, 'too few images to act on');

    stubs.holdTrainings();
    stubs.drift = { figures: figures(0.45, 500), batches: 3, skipped: 0 };
    const drifted = await statusWhen(owner, (s) => s.drift?.outcome === 'drifted', 'drift');
    assert.equal(drifted.drift!.from, few.drift!.from, 'the small window grew');
    assert.equal(drifted.drift!.retraining, 'asked for a retraining');
    const training = await statusWhen(owner, (s) => s.retraining !== undefined, 'the retraining');
    assert.match(
      training.retraining!.reason,
      /^drift: PSI 0\.45 above 0\.2 over 500 images \(red 0\.45, green 0\.01, blue 0\.02, class 0\.03\)$/,
    );

    // While it trains, drift is announced again but asks for nothing more.
    const again = await statusWhen(owner, (s) => s.drift!.checkedAt > drifted.drift!.checkedAt, 'the next check');
    assert.equal(again.drift!.from, drifted.drift!.until, 'the next window starts where the compared one ended');
    assert.match(again.drift!.retraining!, /^not retrained: a retraining is under way \(drift-owner-retraining-1\)$/);
    stubs.releaseTrainings();
    await statusWhen(owner, (s) => s.lastRetraining?.outcome === 'deployed', 'the retraining deployed');

    const windows = stubs.inputsOf<{ since: string; until: string; manifestUri: string; endpointName: string }>(id, 'measureDrift');
    assert.equal(windows[0]!.endpointName, id);
    assert.equal(windows[0]!.manifestUri, 's3://stub/preprocessed/manifest.json');
    for (const w of windows) assert.ok(w.since < w.until, JSON.stringify(w));
    const events = stubs.inputsOf<PipelineEvent>(id, 'sendNotification').filter((e) => e.kind === 'drift');
    assert.ok(events.length >= 2);
    assert.match(events[0]!.detail, /PSI 0\.45 above 0\.2 over 500 images .*; asked for a retraining$/);
    await owner.signal(finishSignal);
    await owner.result();
  });
});
