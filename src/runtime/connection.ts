/** Connection options towards the Temporal frontend: address, TLS (mTLS or server-only) and API key. */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
import type { TemporalConfig } from '../config';

export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig;
  apiKey?: string;
}

/** For NativeConnection.connect (workers) and Connection.connect (clients) alike. */
export function connectionOptions(temporal: TemporalConfig): TemporalConnectionOptions {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read ${what} at ${path}: ${(err as Error).message}`);
    }
  };
  const t = temporal.tls;
  const tls: TLSConfig | undefined = t
    ? {
        ...(t.serverName ? { serverNameOverride: t.serverName } : {}),
        ...(t.caPath ? { serverRootCACertificate: read(t.caPath, 'TEMPORAL_TLS_CA') } : {}),
        ...(t.certPath && t.keyPath
          ? { clientCertPair: { crt: read(t.certPath, 'TEMPORAL_TLS_CERT'), key: read(t.keyPath, 'TEMPORAL_TLS_KEY') } }
          : {}),
      }
    : undefined;
  return { address: temporal.address, ...(tls ? { tls } : {}), ...(temporal.apiKey ? { apiKey: temporal.apiKey } : {}) };
}
