/**
 * `npm run stack -- up|down|status|stop-endpoint NAME`: the local Temporal, MLflow, SeaweedFS (S3)
 * and moto (SageMaker API) services; `status` also lists the local endpoints still running.
 */
import { resolve } from 'node:path';
import { loadConfig } from '../src/config';
import { isOurServer, LocalEndpoints } from '../src/serving/local-endpoints';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp, type ServiceStatus } from '../src/stack/services';

const USAGE = 'usage: npm run stack -- up|down|status|stop-endpoint NAME';

/** The local endpoints in PIPELINE_STATE_DIR: a run with lifetimeSeconds 0 leaves its endpoint serving on purpose. */
function localEndpoints(): LocalEndpoints {
  const config = loadConfig(process.env);
  return new LocalEndpoints({ stateDir: config.stateDir, ...config.localEndpoint, env: {} });
}

function printEndpoints(endpoints: LocalEndpoints): void {
  const states = endpoints.names().flatMap((name) => endpoints.read(name) ?? []);
  if (states.length === 0) return;
  console.log('\nlocal endpoints:');
  for (const s of states) {
    const state = isOurServer(s.pid) ? `running    pid ${s.pid}`.padEnd(21) : 'stopped'.padEnd(21);
    console.log(
      `${s.name.padEnd(9)} ${state} ${s.url}  ${s.registeredModelName} v${s.version}` +
        `${s.owner ? `  owner ${s.owner}` : ''}  stop: npm run stack -- stop-endpoint ${s.name}`,
    );
  }
}

function print(statuses: ServiceStatus[]): void {
  for (const s of statuses) {
    const urls = Object.entries(s.urls)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(`${s.name.padEnd(9)} ${s.state.padEnd(10)} ${s.pid ? `pid ${s.pid}`.padEnd(11) : ''.padEnd(11)} ${urls}`);
  }
}

async function main(): Promise<void> {
  const command = process.argv[2];
  const options = stackOptionsFromEnv(process.env, resolve(__dirname, '..', '..'));
  switch (command) {
    case 'up':
      print(await stackUp(options, (line) => console.log(line)));
      break;
    case 'down':
      await stackDown(options, (line) => console.log(line));
      break;
    case 'status': {
      const statuses = await stackStatus(options);
      print(statuses);
      printEndpoints(localEndpoints());
      if (statuses.some((s) => s.state !== 'running')) process.exitCode = 3;
      break;
    }
    case 'stop-endpoint': {
      const name = process.argv[3];
      const endpoints = localEndpoints();
      if (!name || !endpoints.read(name)) {
        console.error(name ? `stack: no local endpoint '${name}' (npm run stack -- status lists them)` : USAGE);
        process.exitCode = 2;
        break;
      }
      const stopped = await endpoints.retire(name);
      console.log(`endpoint ${name}: ${stopped ? 'stopped' : 'was not running'}; its state is removed`);
      break;
    }
    default:
      console.error(USAGE);
      process.exitCode = 2;
  }
}

main().catch((err: Error) => {
  console.error(`stack: ${err.message}`);
  process.exit(1);
});
