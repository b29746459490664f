// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layers of src/, lowest first. A module imports from its own layer and the ones below, never
 * from above: a back-reference fails `npm test` (lint runs there). config.ts sits with common.
 */
const LAYERS = [
  ['common'],
  ['system'],
  ['storage', 'tracking'],
  ['ml', 'monitoring'],
  ['data', 'training', 'serving', 'sagemaker'],
  ['activities', 'stack', 'runtime'],
  ['workflows'],
  ['workers'],
];
const LAYER_MESSAGE =
  'Layers point one way: workers -> workflows -> activities, stack, runtime -> data, training, serving, sagemaker -> ml, monitoring -> storage, tracking -> system -> common, config. Move the shared code down.';

/** Temporal's deterministic sandbox: what workflow code (and the common code it imports) may not use. */
const SANDBOX = {
  patterns: [
    { group: ['node:*'], message: 'Workflow code must not use Node built-ins; do I/O in an activity.' },
    { group: ['@aws-sdk/*'], message: 'Workflow code must not call AWS; do it in an activity.' },
    { group: ['@tensorflow/*'], message: 'Workflow code must not load TensorFlow; do it in an activity.' },
    { group: ['@temporalio/activity', '@temporalio/worker', '@temporalio/client'], message: 'Not available inside workflows.' },
  ],
  paths: ['fs', 'path', 'os', 'http', 'https', 'child_process', 'crypto', 'net', 'stream', 'util', 'events', 'process'].map((name) => ({
    name,
    message: 'Workflow code must not use Node built-ins; do I/O in an activity.',
  })),
};

function layerRules() {
  const above = (i) => LAYERS.slice(i + 1).flat();
  const relative = (dirs) => dirs.flatMap((d) => [`../${d}`, `../${d}/*`]);
  return [
    ...LAYERS.map((dirs, i) => {
      const upward = above(i).length ? [{ group: relative(above(i)), message: LAYER_MESSAGE }] : [];
      const sandboxed = dirs.includes('common') || dirs.includes('workflows');
      // Workflows take activity types (proxyActivities<...>) but no activity code.
      const typesOnly = dirs.includes('workflows')
        ? [
            {
              group: relative(LAYERS.slice(1, 6).flat()),
              allowTypeImports: true,
              message: 'Workflows may import activity types only (import type).',
            },
          ]
        : [];
      if (!sandboxed && upward.length === 0) return undefined;
      return {
        files: dirs.map((d) => `src/${d}/**/*.ts`),
        rules: {
          'no-restricted-imports': [
            'error',
            sandboxed ? { patterns: [...SANDBOX.patterns, ...typesOnly, ...upward], paths: SANDBOX.paths } : { patterns: upward },
          ],
        },
      };
    }).filter((c) => c !== undefined),
    {
      files: ['src/config.ts'],
      rules: {
        'no-restricted-imports': ['error', { patterns: [{ group: ['./*', '!./common', '!./common/*'], message: LAYER_MESSAGE }] }],
      },
    },
  ];
}

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.venv/', '.venv-bench/', '.stack/', 'eslint.config.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  ...layerRules(),
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-unused-expressions': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
