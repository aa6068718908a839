import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The CLI-mode entry of `@modelcontextprotocol/inspector-cli` (its `build/cli.js` only launches this one), run
 * with `node` directly so no shell, npx or browser is involved.
 */
export const INSPECTOR_CLI = fileURLToPath(
  new URL('../node_modules/@modelcontextprotocol/inspector-cli/build/index.js', import.meta.url),
);

/**
 * The CLI reads its own package.json with `existsSync('../package.json')` (relative to the working directory)
 * and then `import('../package.json')` (relative to the module): both agree only when it runs from its build folder.
 */
const INSPECTOR_CWD = dirname(realpathSync(INSPECTOR_CLI));

export interface InspectorRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (what the CLI prints on success), or undefined when it is not JSON. */
  json: unknown;
}

/**
 * Runs the MCP Inspector CLI once against `url`, from its build folder:
 * `cd …/inspector-cli/build && node index.js <url> --transport <http|sse> --method <method> [...extraArgs]`,
 * e.g. extraArgs `['--tool-name', 'echo', '--tool-arg', 'message=hi']` or `['--header', 'Authorization: Bearer …']`.
 * Never rejects: a failed run answers its exit code and output. Killed after `timeoutMs` (default 20 s).
 */
export function runInspector(
  url: string,
  transport: 'http' | 'sse',
  method: string,
  extraArgs: string[] = [],
  timeoutMs = 20_000,
): Promise<InspectorRun> {
  const args = [INSPECTOR_CLI, url, '--transport', transport, '--method', method, ...extraArgs];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: INSPECTOR_CWD, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        let json: unknown;
        try {
          json = JSON.parse(stdout);
        } catch {
          json = undefined;
        }
        resolve({ code, stdout, stderr, json });
      },
    );
  });
}
