import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, type Worker } from '@temporalio/worker';
import { chromium, type Browser, type Page } from 'playwright-core';
import { TASK_QUEUES } from '../../src/common/constants';
import { cnnSkinCancerWorkflow, scheduledRetrainingWorkflow } from '../../src/workflows';
import { approveUpdate, finishSignal } from '../../src/workflows/messages';
import type { PipelineResult } from '../../src/workflows/pipeline';
import { ROOT, useTestStack } from '../helpers/global';
import { seededDataset, testS3 } from '../helpers/services';
import { createPipelineWorkers, startDevServer, statusWhen } from '../helpers/temporal';

useTestStack();

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-output', 'web-ui');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('Temporal Web UI in a real browser (headless Chromium on the dev server UI, a finished demo-size run)', function () {
  this.timeout(600_000);
  let env: TestWorkflowEnvironment;
  let browser: Browser;
  let page: Page;
  let uiPort: number;
  let stopWorkers: () => void = () => undefined;
  let running: Promise<unknown> = Promise.resolve();
  let runId: string;
  let result: PipelineResult;
  let dataUri: string;
  const workflowId = 'web-ui-demo';
  const summary = 'Web UI check: Basic, ResNet50, CrossVal at 24 px -> endpoint web-ui-endpoint';
  const input = {
    imageSize: 24,
    epochs: 8,
    batchSize: 16,
    learningRate: 1e-3,
    crossValFolds: 2,
    registeredModelName: 'web-ui-model',
    experimentName: 'web-ui',
    endpointName: 'web-ui-endpoint',
    lifetimeSeconds: 0,
  };

  before(async function () {
    if (!existsSync(CHROMIUM))
      throw new Error(
        `no Chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium; scripts/setup.sh --browser does it as root) or set CHROMIUM_PATH`,
      );
    uiPort = await freePort();
    env = await startDevServer({ uiPort });
    const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: new DefaultLogger('WARN') });
    dataUri = await seededDataset(testS3(), { trainPerClass: 60, testPerClass: 10, size: 32 });
    // The UI reads Current Details through a query, which a live worker answers: they stay up.
    const workers: Worker[] = await createPipelineWorkers(env.nativeConnection, bundle);
    const stopped = new Promise<void>((resolve) => (stopWorkers = resolve));
    running = Promise.all(workers.map((w) => w.runUntil(stopped)));
    const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId,
      staticSummary: summary,
      args: [{ ...input, dataUri }],
    });
    runId = handle.firstExecutionRunId;
    result = await handle.result();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
    mkdirSync(SHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    stopWorkers();
    await running;
    await env?.teardown();
  });

  // What the browser showed when a check failed, beside the other screenshots.
  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) await shot(`failed-${this.currentTest.title.split(':')[0]!.replace(/\W+/g, '-')}`);
  });

  const open = async (tab: string) => {
    await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/workflows/${workflowId}/${runId}/${tab}`);
    await page.getByText(workflowId, { exact: true }).first().waitFor();
  };
  /**
   * Markdown (summary, current details) is rendered in frames of its own: looks in every frame.
   * The UI replaces those frames as it re-renders, so a frame can be detached between listing it
   * and reading it: that frame shows nothing, and the next look lists the new one.
   */
  const sees = async (text: string | RegExp): Promise<void> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      for (const frame of page.frames())
        if (
          await frame
            .getByText(text)
            .first()
            .isVisible()
            .catch(() => false)
        )
          return;
      if (Date.now() > deadline) throw new Error(`the page never showed ${String(text)}`);
      await page.waitForTimeout(250);
    }
  };
  const frameText = async (marker: string): Promise<string> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      for (const frame of page.frames()) {
        const body = await frame
          .locator('body')
          .innerText()
          .catch(() => '');
        if (body.includes(marker)) return body;
      }
      if (Date.now() > deadline) throw new Error(`no frame shows ${marker}`);
      await page.waitForTimeout(250);
    }
  };
  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  it('event history: the run completed, and each activity carries its summary', async () => {
    await open('history');
    await sees('Completed');
    await sees(`Preprocess ${'s3://'}`);
    for (const model of ['Basic', 'ResNet50', 'CrossVal']) await sees(`Train ${model}: 8 epochs, batch 16, lr 0.001`);
    const served = `web-ui-model v${result.version}`;
    await sees(`Deploy ${served} to local endpoint web-ui-endpoint`);
    await sees(`Promote ${served} (${result.model}) to champion`);
    // The list scrolls inside the page: the shot shows the trainings' rows, not the page's top.
    await page
      .getByText('Train Basic:')
      .first()
      .evaluate((el) => el.scrollIntoView({ block: 'center', inline: 'nearest' }));
    await page.screenshot({ path: join(SHOTS, '1-event-history.png') });
  });

  it('user metadata: the summary it was started with, and the current details: models, decision, what serves', async () => {
    await open('user-metadata');
    await sees(summary);
    await sees('Stage:');
    const details = await frameText('Stage:');
    assert.match(details, /Stage:\s*finished/);
    for (const model of ['Basic', 'ResNet50', 'CrossVal'])
      assert.match(details, new RegExp(`${model}: trained · val accuracy \\d\\.\\d{4} · val AUC \\d\\.\\d{4} · v\\d+`), details);
    assert.match(details, new RegExp(`Selected:\\s*${result.model} v${result.version}`));
    assert.match(details, /Champion\/challenger:\s*promote \(no champion yet\)/);
    assert.match(details, new RegExp(`Serving:\\s*web-ui-model v${result.version} at ${result.deployment!.url.replace(/[.]/g, '\\.')}`));
    await shot('2-current-details');
  });

  it("search attributes: the run's stage, best model and metric, and its endpoint", async () => {
    await open('search-attributes');
    await sees('"PipelineStage": "finished"');
    await sees(`"BestModel": "${result.model}"`);
    await sees('"EndpointName": "web-ui-endpoint"');
    await sees(`"BestMetric": ${result.metrics.validation.accuracy}`);
    await shot('3-search-attributes');
  });

  it('the workflow list filtered by a search attribute finds the run', async () => {
    const query = encodeURIComponent(`PipelineStage = "finished" AND EndpointName = "web-ui-endpoint"`);
    await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/workflows?query=${query}`);
    await page.getByRole('link', { name: workflowId }).first().waitFor({ timeout: 30_000 });
    await shot('4-workflows-by-stage');
  });

  it("the Schedules page shows a retraining schedule for the run's endpoint, with its workflow type", async () => {
    const scheduleId = 'retrain-web-ui-demo';
    const schedule = await env.client.schedule.create({
      scheduleId,
      spec: { cronExpressions: ['0 3 * * 1'] },
      action: {
        type: 'startWorkflow',
        workflowType: scheduledRetrainingWorkflow,
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: scheduleId,
        args: [{ endpointWorkflowId: workflowId }],
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
      // Paused: the finished run would fail a tick, and the page is what is checked.
      state: { paused: true, note: 'checked by the Web UI test' },
    });
    try {
      await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/schedules`);
      await page.getByText(scheduleId).first().waitFor({ timeout: 30_000 });
      await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/schedules/${scheduleId}`);
      await page.getByText('scheduledRetrainingWorkflow').first().waitFor({ timeout: 30_000 });
      await shot('5-retraining-schedule');
    } finally {
      await schedule.delete();
    }
  });

  it('a model awaiting approval: the workflow list by stage finds it, and its Current Details give the command that approves it', async () => {
    const id = 'web-ui-approval';
    const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: id,
      args: [
        {
          ...input,
          dataUri,
          models: ['Basic'],
          epochs: 2,
          registeredModelName: 'web-ui-approval-model',
          endpointName: 'web-ui-approval',
          lifetimeSeconds: 3600,
          approval: { required: true, timeoutHours: 72, onTimeout: 'reject' },
        },
      ],
    });
    try {
      const waiting = await statusWhen(handle, (st) => st.stage === 'awaiting-approval', 'awaiting approval', 120_000);
      const version = waiting.approval!.pending!.version;
      const query = encodeURIComponent(`PipelineStage = "awaiting-approval"`);
      await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/workflows?query=${query}`);
      await page.getByRole('link', { name: id }).first().waitFor({ timeout: 30_000 });
      await shot('6-awaiting-approval-list');
      await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/workflows/${id}/${handle.firstExecutionRunId}/user-metadata`);
      const details = await frameText('Awaiting approval:');
      assert.match(details, /Stage:\s*awaiting-approval/);
      assert.match(details, new RegExp(`Awaiting approval:\\s*web-ui-approval-model v${version} \\(Basic: `));
      assert.ok(
        details.includes(`temporal workflow update execute --workflow-id ${id} --name approve \\\n  --input '{"version": "${version}"`),
        details,
      );
      await shot('6-awaiting-approval-details');
      await handle.executeUpdate(approveUpdate, { args: [{ version, approver: 'web-ui-test', reason: 'checked in the Web UI' }] });
      await statusWhen(handle, (st) => st.stage === 'serving', 'serving once approved', 60_000);
    } finally {
      await handle.signal(finishSignal);
      await handle.result().catch(() => undefined);
    }
  });
});
