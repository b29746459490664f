/** The markdown shown as the workflow's "current details" in the Temporal Web UI. */
import type { PipelineStatus } from './messages';

/** A NaN metric reaches the workflow as null (JSON): shown, never thrown over. */
const score = (x: number | null): string => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(4) : 'n/a');

export function renderDetails(status: PipelineStatus): string {
  // A list, not a table: the Web UI renders markdown tables without cell padding.
  const lines = [`**Stage:** ${status.stage}`, ''];
  for (const m of status.models) {
    const v = m.validation;
    const scores = v ? ` · val accuracy ${score(v.accuracy)} · val AUC ${score(v.auc)}` : '';
    lines.push(`- **${m.modelClass}**: ${m.state}${scores}${m.version ? ` · v${m.version}` : ''}${m.error ? ` · ${m.error}` : ''}`);
  }
  if (status.selection)
    lines.push('', `**Selected:** ${status.selection.winner} v${status.selection.version} (${status.selection.reason})`);
  const gate = status.selection?.champion;
  if (gate) lines.push('', `**Champion/challenger:** ${gate.outcome} (${gate.reason})`);
  if (status.deployError)
    lines.push('', `**Deployment failed:** ${status.deployError}. Send a \`redeploy\` (signal or update) with a version to retry.`);
  const serving = status.deployments.at(-1);
  if (serving) {
    const sizing = serving.instanceType ? ` on ${serving.instanceCount ?? 1} x ${serving.instanceType}` : '';
    lines.push(
      '',
      `**Serving:** ${serving.registeredModelName} v${serving.version} at ${serving.url}${sizing} (since ${serving.deployedAt})`,
    );
  }
  if (status.endpoint) {
    const e = status.endpoint;
    lines.push('', `**Endpoint check:** ${e.state === 'up' ? 'up' : `**${e.state}**`}: ${e.detail} (${e.checkedAt})`);
  }
  const last = status.redeploys.at(-1);
  if (last)
    lines.push(
      '',
      `**Last redeploy:** ${JSON.stringify(last.request)} by ${last.via}: ${last.outcome}${last.reason ? ` (${last.reason})` : ''}`,
    );
  const pending = status.approval?.pending;
  if (pending)
    lines.push(
      '',
      `**Awaiting approval:** ${pending.registeredModelName} v${pending.version} (${pending.modelClass}: ${pending.reason}), since ${pending.since}; ` +
        `${pending.onTimeout === 'approve' ? 'approved' : 'rejected'} at ${pending.decidesAt} unless someone decides. Approve with`,
      '',
      '```',
      // Two lines, so that the Web UI shows it whole.
      pending.command.replace(' --input ', ' \\\n  --input '),
      '```',
    );
  const decided = status.approval?.last;
  if (decided)
    lines.push('', `**Last approval:** v${decided.version} ${decided.decision} by ${decided.approver} (${decided.reason}), ${decided.at}`);
  if (status.approval?.tagError) lines.push('', `**Approval not recorded in MLflow:** ${status.approval.tagError}`);
  const sched = status.schedule;
  if (sched)
    lines.push(
      '',
      `**Next scheduled retraining:** ${sched.nextTickAt ?? 'none (the schedule is paused or has ended)'} (schedule ${sched.id})`,
    );
  const r = status.retraining;
  if (r) lines.push('', `**Retraining:** ${r.childWorkflowId} (${r.reason}), since ${r.startedAt}`);
  const lr = status.lastRetraining;
  if (lr) lines.push('', `**Last retraining:** ${lr.outcome}${lr.version ? ` v${lr.version}` : ''} (${lr.reason}), ${lr.finishedAt}`);
  const n = status.newImages;
  if (n)
    lines.push(
      '',
      n.error
        ? `**New images:** ${n.error} (${n.checkedAt})`
        : `**New images:** ${n.sinceLastTraining} since the last training, ${n.counted} in all (${n.checkedAt})`,
    );
  const d = status.drift;
  if (d) {
    const figure = d.figures ? `PSI ${d.figures.psi} (threshold ${d.threshold}) over ${d.figures.images} images` : '';
    const outcome = d.outcome === 'drifted' ? '**drifted**' : d.outcome;
    lines.push(
      '',
      `**Drift:** ${outcome}${figure ? `: ${figure}` : ''}${d.detail && d.outcome !== 'drifted' ? ` (${d.detail})` : ''}, ${d.from} to ${d.until}${d.retraining ? `; ${d.retraining}` : ''}`,
    );
  }
  const sent = status.lastNotification;
  if (sent) lines.push('', `**Last notification:** ${sent.kind}: ${sent.outcome} (${sent.at})`);
  const refused = status.refused?.at(-1);
  if (refused) lines.push('', `**Refused requests:** ${status.refusedCount ?? 1}; the last: ${refused.request} (${refused.reason})`);
  return lines.join('\n');
}
