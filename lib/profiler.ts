// tb.profile(): PyTorch's profiler (Kineto) around a piece of JS work, with the per-operator summary
// Python users read from torch.profiler's key_averages().table(). The events come from libtorch;
// this file only nests and sums them.
import { native } from './binding';

export interface ProfileOptions {
  /** Record each operator's input shapes (key averages can then be grouped by them). */
  recordShapes?: boolean;
  /** Also write a Chrome trace (chrome://tracing, Perfetto) to this file. */
  tracePath?: string;
}

/** One recorded event: an operator, a TorchScript method or a user scope, on one thread. */
export interface ProfileEvent {
  name: string;
  thread: number;
  device: string;
  /** Microseconds from the first event. */
  startUs: number;
  durationUs: number;
  /** durationUs less the events nested inside it on the same thread. */
  selfUs: number;
  /** Input shapes, with recordShapes. */
  shapes: string;
}

/** Events of one name (and shapes, when grouped by them) summed, as torch.profiler's key_averages(). */
export interface OpSummary {
  name: string;
  shapes: string;
  calls: number;
  totalUs: number;
  selfUs: number;
}

export class Profile {
  constructor(readonly events: ProfileEvent[]) {}

  /** Per operator: calls, total and self microseconds; largest self time first. */
  keyAverages(opts: { groupByShapes?: boolean } = {}): OpSummary[] {
    const by = new Map<string, OpSummary>();
    for (const e of this.events) {
      const shapes = opts.groupByShapes ? e.shapes : '';
      const key = `${e.name}\u0000${shapes}`;
      let s = by.get(key);
      if (!s) by.set(key, (s = { name: e.name, shapes, calls: 0, totalUs: 0, selfUs: 0 }));
      s.calls++;
      s.totalUs += e.durationUs;
      s.selfUs += e.selfUs;
    }
    return [...by.values()].sort((a, b) => b.selfUs - a.selfUs);
  }

  /** Self time of all events: the wall time the profiled threads spent in libtorch. */
  get selfUs(): number {
    return this.events.reduce((t, e) => t + e.selfUs, 0);
  }

  /** The summary as a text table, like key_averages().table(). */
  table(opts: { rows?: number; groupByShapes?: boolean } = {}): string {
    const ops = this.keyAverages(opts).slice(0, opts.rows ?? 20);
    const total = this.selfUs || 1;
    const ms = (us: number) => (us / 1e3).toFixed(3);
    const rows = ops.map((o) => [o.name.length > 60 ? `${o.name.slice(0, 57)}...` : o.name, `${((100 * o.selfUs) / total).toFixed(1)}%`,
      ms(o.selfUs), ms(o.totalUs), String(o.calls), (o.selfUs / o.calls).toFixed(1), ...(opts.groupByShapes ? [o.shapes] : [])]);
    const head = ['name', 'self %', 'self ms', 'total ms', 'calls', 'self us/call', ...(opts.groupByShapes ? ['shapes'] : [])];
    const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (r: string[]) => r.map((c, i) => (i === 0 || i === 6 ? c.padEnd(width[i]) : c.padStart(width[i]))).join('  ').trimEnd();
    return [line(head), ...rows.map(line), `self time in total: ${ms(total)} ms`].join('\n');
  }
}

/** Self times: per thread, each event's duration less that of the events directly inside it. */
function nest(events: Omit<ProfileEvent, 'selfUs'>[]): ProfileEvent[] {
  const out: ProfileEvent[] = events.map((e) => ({ ...e, selfUs: e.durationUs }));
  const byThread = new Map<string, ProfileEvent[]>();
  for (const e of out) {
    const k = `${e.device}:${e.thread}`;
    const list = byThread.get(k) ?? [];
    list.push(e);
    byThread.set(k, list);
  }
  for (const list of byThread.values()) {
    // Parents first: earlier start, then the longer of two that start together.
    list.sort((a, b) => a.startUs - b.startUs || b.durationUs - a.durationUs);
    const open: ProfileEvent[] = [];
    for (const e of list) {
      while (open.length && open[open.length - 1].startUs + open[open.length - 1].durationUs <= e.startUs) open.pop();
      if (open.length) open[open.length - 1].selfUs -= e.durationUs;
      open.push(e);
    }
  }
  for (const e of out) e.selfUs = Math.max(0, e.selfUs);
  return out;
}

/**
 * Runs `work` under PyTorch's profiler and returns what libtorch did meanwhile (torch.profiler.profile).
 * Async calls started inside `work` (forwards, backward, collectives) are recorded on the threads they run
 * on; wait for them before `work` returns. One profile at a time.
 *
 *   const prof = await tb.profile(() => model.forward(batch));
 *   console.log(prof.table({ rows: 10 }));
 */
export async function profile(work: () => unknown, opts: ProfileOptions = {}): Promise<Profile> {
  native.profilerStart(opts.recordShapes ?? false);
  let raw;
  try {
    await work();
  } finally {
    raw = native.profilerStop(opts.tracePath);
  }
  const events = raw.name.map((name, i) => ({ name, thread: raw.thread[i], device: raw.device[i], startUs: raw.startUs[i], durationUs: raw.durationUs[i], shapes: raw.shapes[i] }));
  return new Profile(nest(events));
}
