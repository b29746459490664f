/** `npm run stack -- up|down|status`: the local Temporal, MLflow, SeaweedFS (S3) and moto (SageMaker API) services. */
import { resolve } from 'node:path';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp, type ServiceStatus } from '../src/stack/services';

const USAGE = 'usage: npm run stack -- up|down|status';

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
      if (statuses.some((s) => s.state !== 'running')) process.exitCode = 3;
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
