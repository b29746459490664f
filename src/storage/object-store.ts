/** Local folders as an object store, and a store that routes each URI to S3 or a folder. */
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { S3Store } from './s3';
import type { ObjectInfo, ObjectStore } from './store';

export type { ObjectInfo, ObjectStore } from './store';

/** Local folders through file:// URIs. Writes go to a temporary name first, then are renamed. */
export class LocalStore implements ObjectStore {
  async list(prefixUri: string): Promise<ObjectInfo[]> {
    const prefix = fileURLToPath(prefixUri);
    const root = prefix.endsWith('/') ? prefix : dirname(prefix);
    const out: ObjectInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      // Stats in parallel (libuv's pool): sequential awaits make a large folder slow to list.
      await Promise.all(
        entries.map(async (e) => {
          const path = join(dir, e.name);
          if (e.isDirectory()) return walk(path);
          if (!e.isFile() || !path.startsWith(prefix.replace(/\/$/, ''))) return;
          const s = await stat(path);
          out.push({ key: path.slice(1), etag: `${s.size}-${s.mtimeMs}`, size: s.size });
        }),
      );
    };
    await walk(root);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async getBytes(uri: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(fileURLToPath(uri)));
  }

  async getJson<T>(uri: string): Promise<T> {
    return JSON.parse(await readFile(fileURLToPath(uri), 'utf8')) as T;
  }

  async put(uri: string, body: Uint8Array | string): Promise<void> {
    const path = fileURLToPath(uri);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, body);
    await rename(tmp, path);
  }

  async putJson(uri: string, value: unknown): Promise<void> {
    await this.put(uri, JSON.stringify(value, null, 2));
  }

  async exists(uri: string): Promise<boolean> {
    return stat(fileURLToPath(uri)).then(
      () => true,
      () => false,
    );
  }

  uriOf(_prefixUri: string, key: string): string {
    return pathToFileURL(`/${key}`).href;
  }

  keyOf(uri: string): string {
    return fileURLToPath(uri).slice(1);
  }
}

/** Dispatches each call on the URI's scheme. */
export class RoutingStore implements ObjectStore {
  private readonly local = new LocalStore();

  constructor(private readonly s3: S3Store) {}

  private pick(uri: string): ObjectStore {
    if (uri.startsWith('s3://')) return this.s3;
    if (uri.startsWith('file://')) return this.local;
    throw new Error(`unsupported URI '${uri}': expected s3://bucket/prefix or file:///absolute/path`);
  }

  list(prefixUri: string): Promise<ObjectInfo[]> {
    return this.pick(prefixUri).list(prefixUri);
  }
  getBytes(uri: string): Promise<Uint8Array> {
    return this.pick(uri).getBytes(uri);
  }
  getJson<T>(uri: string): Promise<T> {
    return this.pick(uri).getJson<T>(uri);
  }
  put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    return this.pick(uri).put(uri, body, contentType);
  }
  putJson(uri: string, value: unknown): Promise<void> {
    return this.pick(uri).putJson(uri, value);
  }
  exists(uri: string): Promise<boolean> {
    return this.pick(uri).exists(uri);
  }
  uriOf(prefixUri: string, key: string): string {
    return this.pick(prefixUri).uriOf(prefixUri, key);
  }
  keyOf(uri: string): string {
    return this.pick(uri).keyOf(uri);
  }
}
