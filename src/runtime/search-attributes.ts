/**
 * The pipeline's custom search attributes must exist in the namespace before any run upserts
 * them; a worker checks at start-up and refuses to run without them, saying what to run.
 */
import { SearchAttributeType } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../common/constants';

const INDEXED: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  [SearchAttributeType.KEYWORD]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  [SearchAttributeType.DOUBLE]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
};
const CLI_TYPE: Record<string, string> = { [SearchAttributeType.KEYWORD]: 'Keyword', [SearchAttributeType.DOUBLE]: 'Double' };

export class MissingSearchAttributesError extends Error {
  override readonly name = 'MissingSearchAttributesError';
}

/** The commands (one per type: the CLI takes one type per call) that register every pipeline search attribute. */
export function registerCommand(namespace: string): string {
  const byType = new Map<string, string[]>();
  for (const key of Object.values(SEARCH_ATTRIBUTES))
    byType.set(CLI_TYPE[key.type]!, [...(byType.get(CLI_TYPE[key.type]!) ?? []), key.name]);
  return [...byType]
    .map(
      ([type, names]) =>
        `temporal operator search-attribute create --namespace ${namespace} ${names.map((n) => `--name ${n}`).join(' ')} --type ${type}`,
    )
    .join(' && ');
}

type ListSearchAttributes = (req: { namespace: string }) => Promise<{ customAttributes?: Record<string, unknown> | null }>;

/**
 * Throws MissingSearchAttributesError naming what is missing or mistyped and the command that
 * fixes it. A server that does not let this identity list them (Temporal Cloud API keys without
 * the operator role) is reported through `warn` and not held against the worker.
 */
export async function checkSearchAttributes(list: ListSearchAttributes, namespace: string, warn: (message: string) => void): Promise<void> {
  let found: Record<string, unknown>;
  try {
    found = (await list({ namespace })).customAttributes ?? {};
  } catch (err) {
    const code = (err as { code?: number }).code;
    // gRPC PERMISSION_DENIED (7) and UNIMPLEMENTED (12): the check cannot be made here.
    if (code === 7 || code === 12) {
      warn(`could not list the search attributes of namespace '${namespace}' (${(err as Error).message}); not checked`);
      return;
    }
    throw err;
  }
  const problems = Object.values(SEARCH_ATTRIBUTES).flatMap((key) => {
    const have = found[key.name];
    if (have === undefined) return [`${key.name} (${CLI_TYPE[key.type]}) is missing`];
    return have === INDEXED[key.type] ? [] : [`${key.name} has another type than ${CLI_TYPE[key.type]}`];
  });
  if (problems.length) {
    throw new MissingSearchAttributesError(
      `namespace '${namespace}' lacks the pipeline's search attributes: ${problems.join('; ')}. Register them with:\n  ` +
        `${registerCommand(namespace)}\n(on Temporal Cloud: tcld namespace search-attributes add)`,
    );
  }
}
