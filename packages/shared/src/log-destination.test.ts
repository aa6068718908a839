import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The default destination of every process's logger, exercised in real child processes through the built
// package (what the hub, supervisor and workers run): stdout is a real pipe read by this test.
const SHARED = fileURLToPath(new URL('../dist/index.js', import.meta.url));

interface Run {
  lines: string[];
  code: number | null;
  /** How many `data` chunks the lines came in. */
  chunks: number;
}

/** Runs `body` (ES module code with `createLogger` in scope); `holdMs` leaves the pipe unread that long first. */
async function run(body: string, holdMs = 0): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'log-dest-'));
  const file = join(dir, 'child.mjs');
  writeFileSync(file, `import { createLogger } from ${JSON.stringify(SHARED)};\n${body}\n`);
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (holdMs > 0) {
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), holdMs);
  }
  let text = '';
  let chunks = 0;
  child.stdout.on('data', (d: Buffer) => {
    chunks++;
    text += d.toString('utf8');
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { lines: text.split('\n').filter((l) => l !== ''), code, chunks };
}

function indexes(lines: string[]): number[] {
  return lines
    .map((l) => JSON.parse(l))
    .filter((o) => o.event === 'burst')
    .map((o) => o.i);
}

describe('TurnBatchedDestination (the loggers’ stdout)', () => {
  it('writes every line of a burst, in order, when the process exits right after it', async () => {
    const { lines, code } = await run(`
      const log = createLogger({ service: 'hub' });
      for (let i = 0; i < 20000; i++) log.info({ event: 'burst', i }, 'line');
      process.exit(3);`);
    expect(code).toBe(3);
    const seen = indexes(lines);
    expect(seen).toHaveLength(20000);
    expect(seen.every((v, i) => v === i)).toBe(true);
  });

  it('writes the lines of one turn together, after the turn', async () => {
    const { lines, chunks } = await run(`
      const log = createLogger({ service: 'hub' });
      let turn = 0;
      const tick = () => {
        for (let i = 0; i < 50; i++) log.info({ event: 'burst', i: turn * 50 + i }, 'line');
        if (++turn < 20) setTimeout(tick, 20);
      };
      tick();`);
    expect(indexes(lines)).toHaveLength(1000);
    // Twenty turns of fifty lines: one write per turn, not one per line (a reader may still merge writes).
    expect(chunks).toBeLessThanOrEqual(20);
  });

  for (const nonBlocking of [false, true]) {
    it(`loses no line when stdout is not read for a while (${nonBlocking ? 'non-blocking' : 'blocking'} pipe)`, async () => {
      // process.stdout on a pipe switches the shared fd to non-blocking: writes then meet EAGAIN.
      const { lines, code } = await run(
        `${nonBlocking ? 'void process.stdout.fd;' : ''}
        const log = createLogger({ service: 'hub' });
        const pad = 'x'.repeat(200);
        let turn = 0;
        const tick = () => {
          for (let i = 0; i < 2000; i++) log.info({ event: 'burst', i: turn * 2000 + i, pad }, 'line');
          if (++turn < 10) setImmediate(tick);
          else log.flush(() => process.exit(0));
        };
        tick();`,
        300,
      );
      expect(code).toBe(0);
      const seen = indexes(lines);
      expect(seen).toHaveLength(20000);
      expect(seen.every((v, i) => v === i)).toBe(true);
    });
  }
});
