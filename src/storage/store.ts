/**
 * The object-store operations the data path needs, behind one interface: S3 (`s3://bucket/key`,
 * s3.ts) for the pipeline, and local folders (`file:///abs/path`, object-store.ts) for tools and
 * benchmarks. Imports nothing, so both implementations depend on it and not on each other.
 */

export interface ObjectInfo {
  key: string;
  etag: string;
  size: number;
}

export interface ObjectStore {
  /** Every object under a prefix URI, sorted by key; `key` is relative to the store root. */
  list(prefixUri: string): Promise<ObjectInfo[]>;
  getBytes(uri: string): Promise<Uint8Array>;
  getJson<T>(uri: string): Promise<T>;
  put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void>;
  putJson(uri: string, value: unknown): Promise<void>;
  exists(uri: string): Promise<boolean>;
  /** The URI of `key` as returned by list() under `prefixUri`'s root (bucket or filesystem). */
  uriOf(prefixUri: string, key: string): string;
  /** The inverse of uriOf: the key list() reports for `uri`. */
  keyOf(uri: string): string;
}
