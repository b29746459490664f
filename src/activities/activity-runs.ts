/**
 * MLflow runs made by an activity: tagged with the workflow run and activity id, so a retried
 * attempt finds the run an earlier attempt made instead of starting another.
 */
import type { Context } from '@temporalio/activity';
import type { MlflowClient, RunInfo } from '../tracking/mlflow';

export function activityRunTags(ctx: Context, workflowId = ctx.info.workflowExecution?.workflowId ?? ''): Record<string, string> {
  return {
    'temporal.workflow_id': workflowId,
    'temporal.workflow_run_id': ctx.info.workflowExecution?.runId ?? '',
    'temporal.activity_id': ctx.info.activityId,
  };
}

/** The run an earlier attempt of this activity made (named `runName`, when given), if any. */
export async function findActivityRun(
  mlflow: MlflowClient,
  experimentId: string,
  tags: Record<string, string>,
  runName?: string,
): Promise<RunInfo | undefined> {
  const filter =
    (runName ? `attributes.run_name = '${runName}' and ` : '') +
    `tags."temporal.workflow_run_id" = '${tags['temporal.workflow_run_id']}' and tags."temporal.activity_id" = '${tags['temporal.activity_id']}'`;
  return (await mlflow.searchRuns(experimentId, filter))[0];
}
