/**
 * The harness's checks of runs that deploy to SageMaker (moto behind the fault proxy). They go
 * straight to moto, not through the proxy: they measure, they are not under test.
 */
import { DescribeModelCommand, ListTagsCommand, type SageMakerClient } from '@aws-sdk/client-sagemaker';
import type { Deployment } from '../../src/common/types';
import { unusedResources } from '../../src/sagemaker/deploy';
import { sageMakerApi } from '../../src/sagemaker/api';
import type { RunOutcome } from './runs';

/**
 * Which version the SageMaker endpoint serves: its config (DescribeEndpoint), that config's model,
 * and the `mlflow.version` tag the deploy put on the model. The endpoint must be InService on the
 * config the workflow's status names.
 */
export async function sageMakerServedVersion(
  client: SageMakerClient,
  deployment: Deployment,
): Promise<NonNullable<RunOutcome['endpoint']>> {
  const api = sageMakerApi(client);
  const check = { url: deployment.arn ?? deployment.url, expectedVersion: deployment.version };
  const endpoint = await api.describeEndpoint(deployment.endpointName);
  if (!endpoint) return { ...check, error: `SageMaker endpoint ${deployment.endpointName} does not exist` };
  if (endpoint.status !== 'InService') return { ...check, error: `SageMaker endpoint is ${endpoint.status}` };
  if (endpoint.configName !== deployment.endpointConfigName)
    return { ...check, error: `SageMaker endpoint runs config ${endpoint.configName}, status says ${deployment.endpointConfigName}` };
  const models = (await api.describeEndpointConfig(endpoint.configName))?.modelNames ?? [];
  if (models.length !== 1) return { ...check, error: `config ${endpoint.configName} has models [${models.join(', ')}]` };
  const model = await client.send(new DescribeModelCommand({ ModelName: models[0] }));
  const tags = await client.send(new ListTagsCommand({ ResourceArn: model.ModelArn }));
  return { ...check, servedVersion: tags.Tags?.find((t) => t.Key === 'mlflow.version')?.Value ?? '(untagged)' };
}

/**
 * Models and endpoint configs an endpoint owns besides the ones its live config uses (the set a
 * deploy's clean-up deletes, found after every run ended): what a deploy retried after a lost
 * answer or a kill could leave behind and pay for.
 */
export async function sageMakerLeftovers(client: SageMakerClient, endpointNames: string[]): Promise<string[]> {
  const api = sageMakerApi(client);
  const left: string[] = [];
  for (const name of endpointNames) {
    const { configs, models } = await unusedResources(api, name, (await api.describeEndpoint(name))?.configName);
    left.push(...configs.map((c) => `${name}: endpoint config ${c}`), ...models.map((m) => `${name}: model ${m}`));
  }
  return left;
}
