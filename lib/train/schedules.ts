// Hugging Face's learning-rate schedules (transformers.optimization): each is a pure function of the
// step, applied like torch's LambdaLR (lr = initial lr x factor(step), stepped once at construction).
import type { AdamW } from './optim';

export type ScheduleName = 'linear' | 'cosine' | 'cosine_with_restarts' | 'polynomial' | 'constant' | 'constant_with_warmup' | 'inverse_sqrt';

export interface ScheduleOptions {
  numWarmupSteps?: number;
  numTrainingSteps?: number;
  numCycles?: number;
  lrEnd?: number;
  power?: number;
  timescale?: number;
}

function nonNegInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${String(v)}`);
  return v;
}

/** The multiplicative factor of a schedule at a step (what HF's lr_lambda returns). */
export function scheduleFactor(name: ScheduleName, opts: ScheduleOptions, initialLr = 1): (step: number) => number {
  const warm = opts.numWarmupSteps === undefined ? 0 : nonNegInt('numWarmupSteps', opts.numWarmupSteps);
  const needTotal = () => {
    const t = nonNegInt('numTrainingSteps', opts.numTrainingSteps);
    if (t < warm) throw new RangeError(`numTrainingSteps (${t}) must be at least numWarmupSteps (${warm})`);
    return t;
  };
  switch (name) {
    case 'constant':
      return () => 1;
    case 'constant_with_warmup':
      return (s) => (s < warm ? s / Math.max(1, warm) : 1);
    case 'linear': {
      const total = needTotal();
      return (s) => (s < warm ? s / Math.max(1, warm) : Math.max(0, (total - s) / Math.max(1, total - warm)));
    }
    case 'cosine': {
      const total = needTotal();
      const cycles = opts.numCycles ?? 0.5;
      return (s) => {
        if (s < warm) return s / Math.max(1, warm);
        const p = (s - warm) / Math.max(1, total - warm);
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * p)));
      };
    }
    case 'cosine_with_restarts': {
      const total = needTotal();
      const cycles = opts.numCycles ?? 1;
      return (s) => {
        if (s < warm) return s / Math.max(1, warm);
        const p = (s - warm) / Math.max(1, total - warm);
        if (p >= 1) return 0;
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * p) % 1))));
      };
    }
    case 'polynomial': {
      const total = needTotal();
      const lrEnd = opts.lrEnd ?? 1e-7;
      const power = opts.power ?? 1;
      if (!(initialLr > lrEnd)) throw new RangeError(`lrEnd (${lrEnd}) must be smaller than the initial lr (${initialLr})`);
      return (s) => {
        if (s < warm) return s / Math.max(1, warm);
        if (s > total) return lrEnd / initialLr;
        const remaining = 1 - (s - warm) / (total - warm);
        return ((initialLr - lrEnd) * remaining ** power + lrEnd) / initialLr;
      };
    }
    case 'inverse_sqrt': {
      const timescale = opts.timescale ?? (warm || 10000);
      const shift = timescale - warm;
      return (s) => (s < warm ? s / Math.max(1, warm) : 1 / Math.sqrt((s + shift) / timescale));
    }
    default:
      throw new RangeError(`unknown schedule '${String(name)}'`);
  }
}

/** A LambdaLR over an AdamW: step() after each optimizer step, getLastLr(), and state. */
export class LRScheduler {
  lastEpoch = -1;
  readonly factors: ((step: number) => number)[];
  #lastLr: number[] = [];

  constructor(readonly optimizer: AdamW, readonly name: ScheduleName, readonly opts: ScheduleOptions = {}) {
    this.factors = optimizer.paramGroups.map((g) => scheduleFactor(name, opts, g.initialLr));
    this.step();
  }
  step(): void {
    this.lastEpoch++;
    this.#lastLr = this.optimizer.paramGroups.map((g, i) => {
      g.lr = g.initialLr * this.factors[i](this.lastEpoch);
      return g.lr;
    });
  }
  getLastLr(): number[] {
    return this.#lastLr.slice();
  }
  stateDict(): { last_epoch: number; name: ScheduleName; opts: ScheduleOptions; _last_lr: number[] } {
    return { last_epoch: this.lastEpoch, name: this.name, opts: this.opts, _last_lr: this.getLastLr() };
  }
  loadStateDict(s: { last_epoch: number }): void {
    this.lastEpoch = s.last_epoch - 1;
    this.step();
  }
}

export function getScheduler(name: ScheduleName, optimizer: AdamW, opts: ScheduleOptions = {}): LRScheduler {
  return new LRScheduler(optimizer, name, opts);
}
/** get_linear_schedule_with_warmup */
export function getLinearScheduleWithWarmup(optimizer: AdamW, opts: { numWarmupSteps: number; numTrainingSteps: number }): LRScheduler {
  return new LRScheduler(optimizer, 'linear', opts);
}
export function getCosineScheduleWithWarmup(optimizer: AdamW, opts: { numWarmupSteps: number; numTrainingSteps: number; numCycles?: number }): LRScheduler {
  return new LRScheduler(optimizer, 'cosine', opts);
}
export function getCosineWithHardRestartsScheduleWithWarmup(optimizer: AdamW, opts: { numWarmupSteps: number; numTrainingSteps: number; numCycles?: number }): LRScheduler {
  return new LRScheduler(optimizer, 'cosine_with_restarts', opts);
}
export function getPolynomialDecayScheduleWithWarmup(optimizer: AdamW, opts: { numWarmupSteps: number; numTrainingSteps: number; lrEnd?: number; power?: number }): LRScheduler {
  return new LRScheduler(optimizer, 'polynomial', opts);
}
export function getConstantSchedule(optimizer: AdamW): LRScheduler {
  return new LRScheduler(optimizer, 'constant');
}
export function getConstantScheduleWithWarmup(optimizer: AdamW, opts: { numWarmupSteps: number }): LRScheduler {
  return new LRScheduler(optimizer, 'constant_with_warmup', opts);
}
export function getInverseSqrtSchedule(optimizer: AdamW, opts: { numWarmupSteps: number; timescale?: number }): LRScheduler {
  return new LRScheduler(optimizer, 'inverse_sqrt', opts);
}
