/** Stand-ins for the SageMaker calls moto does not implement. */
import { strict as assert } from 'node:assert';
import type { DeploymentConfig } from '@aws-sdk/client-sagemaker';
import type { EndpointInfo, SageMakerApi } from '../../src/sagemaker/api';

export /**
 * Real moto for every call except UpdateEndpoint, which moto answers with HTTP 500: this stands in
 * for it and for the endpoint states SageMaker shows while (and after) it updates. `rollback`
 * makes the update end as an alarm-triggered auto-rollback does: InService on the old config.
 */
function fakeUpdateEndpoint(real: SageMakerApi, { rollback = false } = {}) {
  const updates: { configName: string; deployment?: DeploymentConfig }[] = [];
  const overlay = new Map<string, { polls: number; from: string; to: string }>();
  const api: SageMakerApi = {
    ...real,
    async updateEndpoint(name, configName, deployment) {
      const current = await real.describeEndpoint(name);
      assert.ok(current, `UpdateEndpoint on missing endpoint ${name}`);
      updates.push({ configName, deployment });
      overlay.set(name, { polls: 0, from: current.configName, to: configName });
    },
    async describeEndpoint(name): Promise<EndpointInfo | undefined> {
      const base = await real.describeEndpoint(name);
      const o = overlay.get(name);
      if (!base || !o) return base;
      if (o.polls++ < 2) return { ...base, status: 'Updating', configName: o.from };
      return rollback
        ? { ...base, status: 'InService', configName: o.from, failureReason: 'alarm 5xx-rate in ALARM; rolled back' }
        : { ...base, status: 'InService', configName: o.to };
    },
  };
  return { api, updates };
}
