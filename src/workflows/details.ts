/** The markdown shown as the workflow's "current details" in the Temporal Web UI. */
import type { PipelineStatus } from './messages';

export function renderDetails(status: PipelineStatus): string {
  const lines = [`**Stage:** ${status.stage}`, '', '| model | state | val accuracy | val AUC | version |', '|---|---|---|---|---|'];
  for (const m of status.models) {
    const v = m.validation;
    lines.push(`| ${m.modelClass} | ${m.state} | ${v ? v.accuracy.toFixed(4) : ''} | ${v ? v.auc.toFixed(4) : ''} | ${m.version ?? ''} |`);
  }
  if (status.selection)
    lines.push('', `**Selected:** ${status.selection.winner} v${status.selection.version} (${status.selection.reason})`);
  const serving = status.deployments.at(-1);
  if (serving) lines.push('', `**Serving:** ${serving.registeredModelName} v${serving.version} at ${serving.url}`);
  return lines.join('\n');
}
