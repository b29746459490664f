/** The Temporal SDK runtime for the whole mocha process: installed once, logging errors only. */
import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

export function installQuietRuntime(): void {
  if (installed) return;
  // Only the first call in a process can install it; the first Worker or test server creates it otherwise.
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  installed = true;
}
