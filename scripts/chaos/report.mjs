// The printed report of `pnpm chaos` (scripts/chaos.mjs): one row per scenario, the extras some scenarios
// measure, the leak check, and the bars missed.
import { availableParallelism, loadavg } from 'node:os';
import { table } from '../../bench/lib.mjs';

/** Every bar missed, as "scenario: bar (detail)"; empty when the run meets the issue's bar. */
export function missedBars(results, leaks) {
  const missed = results.flatMap((r) =>
    r.bars.filter((b) => !b.met).map((b) => `${r.scenario}: ${b.bar} (${b.detail})`),
  );
  if (!leaks.clean) missed.push('leak check: something of the run was left behind');
  return missed;
}

export function printReport(results, leaks, opts, { servers, target, lagWarnMs }) {
  const rows = [
    [
      'scenario',
      'sent',
      'failed',
      'failed by code',
      'reached upstream',
      'failed, not reached',
      '100 % again after',
      'max latency',
      'worker pid',
      'hub warn/error lines',
      'bar',
    ],
  ];
  for (const r of results) {
    const codes = Object.entries(r.failedByCode)
      .map(([code, n]) => `${n} × ${code}`)
      .join(', ');
    rows.push([
      r.scenario,
      r.sent,
      r.failed,
      codes || '—',
      r.reachedUpstream,
      r.failedNotReached,
      r.recovered ? `${(r.backTo100PctMs / 1_000).toFixed(1)} s` : 'not recovered',
      `${r.latencyMs.maxAfter} ms`,
      r.pidBefore === r.pidAfter ? `${r.pidBefore} (kept)` : `${r.pidBefore} → ${r.pidAfter}`,
      `${r.hubLog.warn}/${r.hubLog.error}`,
      r.met ? 'met' : 'MISSED',
    ]);
  }
  const load = loadavg()[0].toFixed(1);
  console.log(
    `\nFault injection, ${opts.rate} calls/s open loop over ${servers.join(', ')} (faults hit ${target}; ${availableParallelism()} cores, load average ${load} at the end)\n`,
  );
  console.log(table(rows));
  const extras = results.flatMap((r) => {
    const lines = [];
    if (r.runningAgainMs !== undefined) {
      lines.push(
        `${r.scenario}: running again ${r.runningAgainMs === null ? 'never' : `${r.runningAgainMs.toFixed(0)} ms`} after the crash (taken over by ${r.newOwner})`,
      );
    }
    if (r.hubExitCode !== undefined) {
      lines.push(
        `${r.scenario}: hub exit ${r.hubExitCode} after ${r.hubExitMs?.toFixed(0)} ms; long calls ${r.longCallsOk}/${r.longCalls} answered${r.longCallFailures.length > 0 ? `; the others: ${r.longCallFailures.join(' | ')}` : ''}`,
      );
    }
    if (r.faultDurationMs !== null)
      lines.push(`${r.scenario}: fault lasted ${(r.faultDurationMs / 1_000).toFixed(1)} s`);
    if (r.failedBeforeFault > 0) lines.push(`${r.scenario}: ${r.failedBeforeFault} calls sent before the fault failed`);
    if (r.loadLagMs.p99 > lagWarnMs) {
      lines.push(
        `${r.scenario}: the load process fell behind (p99 ${r.loadLagMs.p99} ms, max ${r.loadLagMs.max} ms late): a busy machine`,
      );
    }
    return lines;
  });
  if (extras.length > 0) console.log(`\n${extras.join('\n')}`);
  console.log(
    `\nLeak check: ${leaks.clean ? 'clean' : 'LEFT BEHIND'} (processes ${leaks.processes.length}, runtime/lease/port-lock keys ${leaks.keys.length}, claimed ports ${leaks.ports.length}; exit codes ${Object.entries(
      leaks.exits,
    )
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')})`,
  );
  for (const item of [...leaks.processes, ...leaks.keys, ...leaks.ports.map((p) => `port ${p}`)])
    console.log(`  ${item}`);
  const missed = missedBars(results, leaks);
  console.log(missed.length === 0 ? '\nEvery bar met.' : `\nBars missed:\n${missed.map((m) => `  ${m}`).join('\n')}`);
  return missed;
}
