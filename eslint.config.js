// Lint configuration: typescript-eslint's recommended rules over the sources and tests, and the
// layer rules of docs/design.md ("Layers and seams"): which folder of src/ may import which.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Folders of src/ and what each holds (the README's picture). */
const MODEL_LAYERS = ['guest', 'vmm', 'host'];
const ABOVE = ['platform', 'cli', 'serve'];

/**
 * An import-boundary rule: files under `src/<dir>` may not import from the folders `banned`
 * (matched as a path segment of the import specifier, so `../../host/x.js` is caught).
 */
function layer(dir, banned, why) {
  return {
    files: [`src/${dir}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `(^|/)(${banned.join('|')})/`,
              message: `src/${dir} may not import ${banned.map((b) => `src/${b}`).join(', ')}: ${why} (docs/design.md, Layers and seams).`,
            },
          ],
        },
      ],
    },
  };
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-bitwise': 'off',
    },
  },
  layer('guest', ['host', 'uapi', 'vmm', ...ABOVE], 'the guest sees the machine only through MMIO, guest RAM and IRQs'),
  layer('vmm', ['host', 'guest', ...ABOVE], 'the VMM reaches the host only through the uAPI and its syscalls'),
  layer('host', ['vmm', 'guest', ...ABOVE], 'the host knows nothing of the VMM or the guest above it'),
  layer('uapi', [...MODEL_LAYERS, ...ABOVE], 'the uAPI is the seam both sides share'),
  layer('arch', [...MODEL_LAYERS, ...ABOVE, 'uapi'], 'architecture facts are shared by every layer'),
  layer('cli', [...MODEL_LAYERS], 'the CLI drives machines through src/platform'),
  // The web view's server is an edge like the CLI: machines through src/platform only.
  layer('serve', [...MODEL_LAYERS, 'cli'], 'the web view drives machines through src/platform'),
  // The page runs in the browser and talks to the server over HTTP: it imports only web/ and the
  // API's types (src/serve/api.ts), and no node: built-in.
  {
    files: ['web/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(node:|\\.\\./(?!src/serve/api\\.js$))',
              message: 'web/ may not import node: built-ins or anything outside web/ but src/serve/api.js: the page reaches the model over HTTP (docs/design.md, Web view).',
            },
          ],
        },
      ],
    },
  },
  // The kit is flat and self-contained: nothing outside src/kit (node: built-ins are fine).
  {
    files: ['src/kit/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ regex: '^\\.\\./', message: 'src/kit imports only src/kit (docs/design.md, Layers and seams).' }] },
      ],
    },
  },
);
