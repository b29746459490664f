/**
 * The few SageMaker calls the deploy path makes, behind a narrow interface: the real one talks to
 * SageMaker (or moto) through @aws-sdk/client-sagemaker; tests can stand in for calls moto lacks.
 */
import {
  AddTagsCommand,
  CreateEndpointCommand,
  CreateEndpointConfigCommand,
  CreateModelCommand,
  DeleteEndpointCommand,
  DeleteEndpointConfigCommand,
  DeleteModelCommand,
  DescribeEndpointCommand,
  DescribeEndpointConfigCommand,
  DescribeModelCommand,
  SageMakerClient,
  ListTagsCommand,
  UpdateEndpointCommand,
  type DeploymentConfig,
  paginateListEndpointConfigs,
  paginateListModels,
} from '@aws-sdk/client-sagemaker';
import type { Config } from '../config';

export interface EndpointInfo {
  name: string;
  arn: string;
  /** Creating | Updating | SystemUpdating | RollingBack | InService | Failed | UpdateRollbackFailed | ... */
  status: string;
  configName: string;
  failureReason?: string;
}

export interface ModelSpec {
  name: string;
  image: string;
  modelDataUrl: string;
  roleArn: string;
  tags: Record<string, string>;
  environment?: Record<string, string>;
}

export interface EndpointConfigSpec {
  name: string;
  modelName: string;
  instanceType: string;
  instanceCount: number;
  tags: Record<string, string>;
}

export interface SageMakerApi {
  describeEndpoint(name: string): Promise<EndpointInfo | undefined>;
  /** The models an endpoint config's variants serve, or undefined when it does not exist. */
  describeEndpointConfig(name: string): Promise<{ modelNames: string[] } | undefined>;
  modelExists(name: string): Promise<boolean>;
  createModel(spec: ModelSpec): Promise<void>;
  createEndpointConfig(spec: EndpointConfigSpec): Promise<void>;
  createEndpoint(name: string, configName: string, tags: Record<string, string>): Promise<void>;
  updateEndpoint(name: string, configName: string, deployment?: DeploymentConfig): Promise<void>;
  /** One tag of a resource (by ARN), or undefined. */
  getTag(arn: string, key: string): Promise<string | undefined>;
  /** Sets (adds or overwrites) one tag of a resource. */
  setTag(arn: string, key: string, value: string): Promise<void>;
  listEndpointConfigs(nameContains: string): Promise<string[]>;
  listModels(nameContains: string): Promise<string[]>;
  deleteEndpointConfig(name: string): Promise<void>;
  deleteModel(name: string): Promise<void>;
  /** Starts deleting an endpoint (SageMaker deletes it in the background); one already gone is fine. */
  deleteEndpoint(name: string): Promise<void>;
}

/**
 * SageMaker's control-plane calls are small and answered in well under a second: a connection that
 * takes 5 s to open, or stays silent for 30 s, is a hung one. The attempt then fails with a
 * TimeoutError, which the SDK's standard retry strategy retries. Without these limits a call that
 * never gets its answer holds the deploy activity until its own timeout.
 */
export const SAGEMAKER_TIMEOUTS = { connectionTimeout: 5_000, socketTimeout: 30_000 };

export function createSageMakerClient(config: Config, timeouts = SAGEMAKER_TIMEOUTS): SageMakerClient {
  return new SageMakerClient({
    region: config.aws.region,
    endpoint: config.aws.sagemakerEndpoint,
    credentials: config.aws.credentials,
    requestHandler: timeouts,
  });
}

const isNotFound = (err: unknown): boolean =>
  (err as Error).name === 'ValidationException' && /could not find/i.test((err as Error).message);
const isAlreadyThere = (err: unknown): boolean =>
  (err as Error).name === 'ValidationException' && /already exist/i.test((err as Error).message);
const tagList = (tags: Record<string, string>) => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));

/** SageMaker through the AWS SDK. Creates tolerate "already exists" so a retried call is harmless. */
export function sageMakerApi(client: SageMakerClient): SageMakerApi {
  const tolerate =
    (check: (err: unknown) => boolean) =>
    async (call: Promise<unknown>): Promise<void> => {
      try {
        await call;
      } catch (err) {
        if (!check(err)) throw err;
      }
    };
  const createOnce = tolerate(isAlreadyThere);
  const deleteOnce = tolerate(isNotFound);
  return {
    async describeEndpoint(name) {
      try {
        const out = await client.send(new DescribeEndpointCommand({ EndpointName: name }));
        return {
          name,
          arn: out.EndpointArn!,
          status: out.EndpointStatus!,
          configName: out.EndpointConfigName!,
          failureReason: out.FailureReason || undefined,
        };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async describeEndpointConfig(name) {
      try {
        const out = await client.send(new DescribeEndpointConfigCommand({ EndpointConfigName: name }));
        return { modelNames: (out.ProductionVariants ?? []).map((v) => v.ModelName!).filter(Boolean) };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async modelExists(name) {
      try {
        await client.send(new DescribeModelCommand({ ModelName: name }));
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    },
    createModel: (s) =>
      createOnce(
        client.send(
          new CreateModelCommand({
            ModelName: s.name,
            ExecutionRoleArn: s.roleArn,
            PrimaryContainer: { Image: s.image, ModelDataUrl: s.modelDataUrl, Mode: 'SingleModel', Environment: s.environment },
            Tags: tagList(s.tags),
          }),
        ),
      ),
    createEndpointConfig: (s) =>
      createOnce(
        client.send(
          new CreateEndpointConfigCommand({
            EndpointConfigName: s.name,
            ProductionVariants: [
              {
                VariantName: 'AllTraffic',
                ModelName: s.modelName,
                InstanceType: s.instanceType as never,
                InitialInstanceCount: s.instanceCount,
                InitialVariantWeight: 1,
              },
            ],
            Tags: tagList(s.tags),
          }),
        ),
      ),
    createEndpoint: (name, configName, tags) =>
      createOnce(client.send(new CreateEndpointCommand({ EndpointName: name, EndpointConfigName: configName, Tags: tagList(tags) }))),
    async updateEndpoint(name, configName, deployment) {
      await client.send(new UpdateEndpointCommand({ EndpointName: name, EndpointConfigName: configName, DeploymentConfig: deployment }));
    },
    async getTag(arn, key) {
      const out = await client.send(new ListTagsCommand({ ResourceArn: arn, MaxResults: 100 }));
      return (out.Tags ?? []).find((t) => t.Key === key)?.Value;
    },
    async setTag(arn, key, value) {
      await client.send(new AddTagsCommand({ ResourceArn: arn, Tags: [{ Key: key, Value: value }] }));
    },
    async listEndpointConfigs(nameContains) {
      const names: string[] = [];
      for await (const page of paginateListEndpointConfigs({ client }, { NameContains: nameContains, MaxResults: 100 }))
        names.push(...(page.EndpointConfigs ?? []).map((c) => c.EndpointConfigName!));
      return names;
    },
    async listModels(nameContains) {
      const names: string[] = [];
      for await (const page of paginateListModels({ client }, { NameContains: nameContains, MaxResults: 100 }))
        names.push(...(page.Models ?? []).map((m) => m.ModelName!));
      return names;
    },
    deleteEndpointConfig: (name) => deleteOnce(client.send(new DeleteEndpointConfigCommand({ EndpointConfigName: name }))),
    deleteModel: (name) => deleteOnce(client.send(new DeleteModelCommand({ ModelName: name }))),
    deleteEndpoint: (name) => deleteOnce(client.send(new DeleteEndpointCommand({ EndpointName: name }))),
  };
}
