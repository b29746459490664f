/** A narrow S3 facade over the AWS SDK v3 client: what the pipeline needs and nothing more. */
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { Config } from '../config';
import { applyS3Limits, isTimeout, requestHandlerOptions, S3TimeoutError } from './s3-limits';
import type { ObjectInfo, ObjectStore } from './store';

export { S3ObjectTooLargeError, S3TimeoutError } from './s3-limits';

export interface S3Location {
  bucket: string;
  key: string;
}

export class InvalidS3UriError extends Error {
  override readonly name = 'InvalidS3UriError';
}

export function parseS3Uri(uri: string): S3Location {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new InvalidS3UriError(`expected an S3 URI like s3://bucket/key, got '${uri}'`);
  return { bucket: m[1]!, key: m[2]! };
}

export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** Joins URI parts with single slashes: joinUri('s3://b/a/', '/x') === 's3://b/a/x'. */
export function joinUri(base: string, ...parts: string[]): string {
  return [base.replace(/\/+$/, ''), ...parts.map((p) => p.replace(/^\/+|\/+$/g, ''))].filter(Boolean).join('/');
}

/** A client whose every request runs under the configured limits (see s3-limits.ts). */
export function createS3Client(config: Config): S3Client {
  const client = new S3Client({
    region: config.aws.region,
    endpoint: config.aws.s3Endpoint,
    forcePathStyle: config.aws.s3ForcePathStyle,
    credentials: config.aws.credentials,
    requestHandler: requestHandlerOptions(config.aws.s3Limits),
  });
  applyS3Limits(client, config.aws.s3Limits);
  return client;
}

export class S3Store implements ObjectStore {
  constructor(readonly client: S3Client) {}

  /**
   * The whole object. The SDK retries a request that times out before its response's headers; a
   * body that stalls after them is read again from the start here, as often as the SDK would retry.
   */
  async getBytes(uri: string): Promise<Uint8Array> {
    const { bucket, key } = parseS3Uri(uri);
    const attempts = await this.client.config.maxAttempts();
    for (let attempt = 1; ; attempt++) {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      try {
        return await out.Body!.transformToByteArray();
      } catch (err) {
        if (!isTimeout(err)) throw err;
        if (attempt >= attempts) throw new S3TimeoutError('GetObject', uri, attempt, { cause: err });
      }
    }
  }

  /** Bytes [start, start + length) of an object (fewer where the object ends sooner). */
  async getRange(uri: string, start: number, length: number): Promise<Uint8Array> {
    const { bucket, key } = parseS3Uri(uri);
    const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${start + length - 1}` }));
    return out.Body!.transformToByteArray();
  }

  async getJson<T>(uri: string): Promise<T> {
    return JSON.parse(Buffer.from(await this.getBytes(uri)).toString('utf8')) as T;
  }

  async put(uri: string, body: Uint8Array | string, contentType = 'application/octet-stream'): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
  }

  async putJson(uri: string, value: unknown): Promise<void> {
    await this.put(uri, JSON.stringify(value, null, 2), 'application/json');
  }

  /** Deletes an object; deleting one that is not there is not an error (S3 semantics). */
  async delete(uri: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  async exists(uri: string): Promise<boolean> {
    const { bucket, key } = parseS3Uri(uri);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    } catch (err) {
      if (err instanceof NotFound || err instanceof NoSuchKey || (err as { name?: string }).name === 'NotFound') return false;
      throw err;
    }
  }

  /** Every object under a prefix (all pages), sorted by key. */
  async list(prefixUri: string): Promise<ObjectInfo[]> {
    const { bucket, key } = parseS3Uri(prefixUri);
    const objects: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, ContinuationToken: token }));
      for (const o of page.Contents ?? []) objects.push({ key: o.Key!, etag: o.ETag ?? '', size: o.Size ?? 0 });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  uriOf(prefixUri: string, key: string): string {
    return s3Uri(parseS3Uri(prefixUri).bucket, key);
  }

  keyOf(uri: string): string {
    return parseS3Uri(uri).key;
  }

  async ensureBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
    } catch {
      await this.client.send(new CreateBucketCommand({ Bucket: bucket }));
    }
  }
}
