import { strict as assert } from 'node:assert';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SEARCH_ATTRIBUTES } from '../../src/common/constants';
import { checkSearchAttributes, MissingSearchAttributesError, registerCommand } from '../../src/runtime/search-attributes';
import { startDevServer } from '../helpers/temporal';

describe('checkSearchAttributes (real dev server)', function () {
  let env: TestWorkflowEnvironment;
  before(async () => {
    // A namespace as a new cluster has it: none of the pipeline's attributes registered.
    env = await startDevServer({ withSearchAttributes: false });
  });
  after(async () => {
    await env?.teardown();
  });

  const list = () => (req: { namespace: string }) => env.connection.operatorService.listSearchAttributes(req);

  it('refuses a namespace without them, naming each and the command that registers them', async () => {
    await assert.rejects(
      checkSearchAttributes(list(), 'default', () => undefined),
      (err: unknown) =>
        err instanceof MissingSearchAttributesError &&
        /PipelineStage \(Keyword\) is missing; BestModel \(Keyword\) is missing; BestMetric \(Double\) is missing/.test(err.message) &&
        err.message.includes(registerCommand('default')),
    );
  });

  it('passes once the printed command has been run', async () => {
    // The same registration the command makes, through the operator API.
    await env.connection.operatorService.addSearchAttributes({
      namespace: 'default',
      searchAttributes: { PipelineStage: 2, BestModel: 2, EndpointName: 2, BestMetric: 4 },
    });
    await checkSearchAttributes(list(), 'default', () => undefined);
    assert.equal(
      registerCommand('default'),
      'temporal operator search-attribute create --namespace default --name PipelineStage --name BestModel --name EndpointName --type Keyword' +
        ' && temporal operator search-attribute create --namespace default --name BestMetric --type Double',
    );
    assert.equal(Object.keys(SEARCH_ATTRIBUTES).length, 4);
  });
});
