import { strict as assert } from 'node:assert';
import type { Deployment } from '../../src/common/types';
import { STATUS_HISTORY_LIMIT } from '../../src/workflows/bounds';
import type { PipelineStatus, RedeployRecord } from '../../src/workflows/messages';
import { boundedStatus } from '../../src/workflows/status';

const deployment = (version: string): Deployment => ({
  target: 'local',
  endpointName: 'e',
  url: 'http://127.0.0.1:1',
  registeredModelName: 'm',
  version,
  deployedAt: '2026-01-01T00:00:00.000Z',
  durationSeconds: 1,
  unchanged: false,
});

describe('a status carried from a run of earlier code (continue-as-new)', () => {
  // Earlier code kept malformed signals whole among the redeploy records, and messages uncut.
  const pad = 'p'.repeat(100 * 1024);
  const rejected = (i: number): RedeployRecord => ({
    request: { version: '1', padding: pad, i } as never,
    via: 'signal',
    outcome: 'rejected',
    reason: `invalid input 'padding': unknown field(s): padding, i ${pad}`,
  });
  const carried: PipelineStatus = {
    stage: 'serving',
    models: [],
    deployments: Array.from({ length: 30 }, (_, i) => deployment(String(i + 1))),
    deployError: pad,
    endpoint: { state: 'down', detail: pad, checkedAt: '2026-01-01T00:00:00.000Z' },
    redeploys: [
      ...Array.from({ length: 40 }, (_, i) => rejected(i)),
      { request: { version: '7' }, via: 'update', outcome: 'failed', reason: pad },
      { request: { version: '8' }, via: 'signal', outcome: 'deployed', deployment: deployment('8') },
    ],
  };

  it('is brought within today’s bounds: malformed requests moved to refused, cut; lists the newest; messages cut', () => {
    const status = boundedStatus(carried);
    assert.ok(JSON.stringify(carried).length > 4_000_000);
    assert.ok(JSON.stringify(status).length < 64 * 1024, `${JSON.stringify(status).length} characters`);
    assert.deepEqual(
      status.redeploys.map((r) => [r.outcome, r.request.version]),
      [
        ['failed', '7'],
        ['deployed', '8'],
      ],
    );
    assert.equal(status.refusedCount, 40);
    assert.equal(status.refused!.length, STATUS_HISTORY_LIMIT);
    assert.match(status.refused!.at(-1)!.request, /^\{"version":"1","padding":"p+\.\.\. \(102\d{3} characters\)$/);
    assert.ok(status.refused!.every((r) => r.request.length <= 230 && r.reason.length <= 530 && r.via === 'signal'));
    assert.deepEqual(
      status.deployments.map((d) => d.version),
      Array.from({ length: STATUS_HISTORY_LIMIT }, (_, i) => String(i + 6)),
    );
    assert.ok(status.deployError!.length < 600 && status.endpoint!.detail.length < 600);
    assert.ok(status.redeploys[0]!.reason!.length < 600);
  });
});
