/**
 * Deploy activity (queue ml-pipeline). Target `local`: the inference server on localhost.
 * Success only after /ping answers and a real prediction comes back from the served version.
 */
import { Context } from '@temporalio/activity';
import type { DeployInput, Deployment } from '../common/types';
import { getJson, postJson, type LocalEndpoints } from '../serving/local-endpoints';
import type { Prediction } from '../serving/server';

export interface DeployDeps {
  local: LocalEndpoints;
}

export function createDeployActivities({ local }: DeployDeps) {
  return {
    async deployModel(input: DeployInput): Promise<Deployment> {
      const ctx = Context.current();
      const { state, unchanged } = await local.deploy(input.endpointName, input.model, (what) => ctx.heartbeat(what));
      const served = await getJson<{ version?: string; imageSize: number; classes: string[] }>(`${state.url}/model`);
      if (served.version !== input.model.version) {
        throw new Error(`endpoint '${input.endpointName}' serves v${served.version} after deploying v${input.model.version}`);
      }
      // A real prediction on a neutral image proves the model loads and answers.
      const size = served.imageSize;
      const instance = Array.from({ length: size }, () => Array.from({ length: size }, () => [0.5, 0.5, 0.5]));
      const { predictions } = await postJson<{ predictions: Prediction[] }>(`${state.url}/invocations`, { instances: [instance] });
      if (predictions?.length !== 1 || !served.classes.includes(predictions[0]!.label)) {
        throw new Error(`endpoint '${input.endpointName}' answered an unexpected prediction: ${JSON.stringify(predictions)}`);
      }
      return {
        target: input.target,
        endpointName: input.endpointName,
        url: state.url,
        registeredModelName: input.model.registeredModelName,
        version: input.model.version,
        deployedAt: new Date().toISOString(),
        unchanged,
      };
    },
  };
}
