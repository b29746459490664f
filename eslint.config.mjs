// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    // Workflow code runs in Temporal's deterministic sandbox: no Node built-ins, no I/O libraries.
    files: ['src/workflows/**/*.ts', 'src/common/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'Workflow code must not use Node built-ins; do I/O in an activity.' },
            { group: ['@aws-sdk/*'], message: 'Workflow code must not call AWS; do it in an activity.' },
            { group: ['@tensorflow/*'], message: 'Workflow code must not load TensorFlow; do it in an activity.' },
            { group: ['@temporalio/activity', '@temporalio/worker', '@temporalio/client'], message: 'Not available inside workflows.' },
            {
              group: ['../activities/*', '../tracking/*', '../storage/*', '../ml/*', '../serving/*', '../data/*'],
              allowTypeImports: true,
              message: 'Workflows may import activity types only (import type).',
            },
          ],
          paths: ['fs', 'path', 'os', 'http', 'https', 'child_process', 'crypto', 'net', 'stream', 'util', 'events', 'process'].map(
            (name) => ({
              name,
              message: 'Workflow code must not use Node built-ins; do I/O in an activity.',
            }),
          ),
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-unused-expressions': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
