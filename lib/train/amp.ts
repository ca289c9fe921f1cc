// Loss scaling for float16 mixed precision (torch.amp.GradScaler): float16 gradients underflow
// without it. Unscaling and the inf/NaN check run as one foreach kernel; the scale update is ATen's
// own (_amp_update_scale_), so growth and backoff follow PyTorch exactly.
import * as tb from '../core';
import { Tensor, op } from '../core';
import type { AdamW } from './optim';

export interface GradScalerOptions {
  /** default 2^16 */
  initScale?: number;
  /** default 2 */
  growthFactor?: number;
  /** default 0.5 */
  backoffFactor?: number;
  /** steps without inf/NaN before the scale grows (default 2000) */
  growthInterval?: number;
  /** false makes every method a pass-through (handy for a flag) */
  enabled?: boolean;
}

/** PyTorch's GradScaler.state_dict() layout. */
export interface GradScalerState {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
}

/**
 * @example
 * const scaler = new GradScaler();
 * const loss = await tb.autocast({ device: 'cuda', dtype: 'float16' }, () => model.forward(batch)).then((o) => o.loss!);
 * await scaler.scale(loss).backward();
 * scaler.unscale_(opt); clipGradNorm(params, 1.0);
 * await scaler.step(opt); scaler.update();
 */
export class GradScaler {
  readonly enabled: boolean;
  #initScale: number;
  #growthFactor: number;
  #backoffFactor: number;
  #growthInterval: number;
  #scale: Tensor | null = null;
  #tracker: Tensor | null = null;
  #foundInf: Tensor | null = null;
  #initTracker = 0;

  constructor(opts: GradScalerOptions = {}) {
    this.enabled = opts.enabled ?? true;
    this.#initScale = opts.initScale ?? 2 ** 16;
    this.#growthFactor = opts.growthFactor ?? 2;
    this.#backoffFactor = opts.backoffFactor ?? 0.5;
    this.#growthInterval = opts.growthInterval ?? 2000;
    const bad = (n: string, ok: boolean, v: number) => {
      if (!ok) throw new RangeError(`GradScaler: invalid ${n}: ${v}`);
    };
    bad('initScale', this.#initScale > 0 && Number.isFinite(this.#initScale), this.#initScale);
    bad('growthFactor', this.#growthFactor > 1, this.#growthFactor);
    bad('backoffFactor', this.#backoffFactor > 0 && this.#backoffFactor < 1, this.#backoffFactor);
    bad('growthInterval', Number.isInteger(this.#growthInterval) && this.#growthInterval > 0, this.#growthInterval);
  }

  #lazyInit(device: string): void {
    if (this.#scale) return;
    this.#scale = tb.keep(tb.full([], this.#initScale, { dtype: 'float32', device }));
    this.#tracker = tb.keep(tb.full([], this.#initTracker, { dtype: 'int32', device }));
  }

  /** loss x scale (a new tensor; call backward on it). */
  scale(loss: Tensor): Tensor {
    if (!this.enabled) return loss;
    this.#lazyInit(loss.device);
    return loss.mul(this.#scale!.to({ dtype: loss.dtype }));
  }

  /** Divides the optimizer's gradients by the scale in place and records whether any is inf/NaN. */
  unscale_(optimizer: AdamW): void {
    if (!this.enabled) return;
    if (this.#foundInf) throw new Error('GradScaler.unscale_ was already called since the last update()');
    if (!this.#scale) throw new Error('GradScaler.unscale_: call scale(loss) (and backward) first');
    tb.noGrad(() => {
      const grads = optimizer.paramGroups.flatMap((g) => g.params.map((p) => p.grad).filter((x): x is Tensor => x !== null));
      const found = tb.keep(tb.zeros([1], { device: this.#scale!.device }));
      const inv = this.#scale!.double().reciprocal().float();
      if (grads.length) op('aten::_amp_foreach_non_finite_check_and_unscale_').inplace(grads, found, inv);
      inv.dispose();
      this.#foundInf = found;
    });
  }

  /** Unscales (unless done) and steps the optimizer, unless a gradient was inf/NaN. Resolves to whether it stepped. */
  async step(optimizer: AdamW): Promise<boolean> {
    if (!this.enabled) {
      await optimizer.step();
      return true;
    }
    if (!this.#foundInf) this.unscale_(optimizer);
    if ((this.#foundInf!.item() as number) !== 0) return false;
    await optimizer.step();
    return true;
  }

  /** Grows the scale after growthInterval clean steps, backs off after an inf/NaN (ATen's _amp_update_scale_). */
  update(): void {
    if (!this.enabled || !this.#scale) return;
    const found = this.#foundInf ?? tb.zeros([1], { device: this.#scale.device });
    tb.noGrad(() => op('aten::_amp_update_scale_').inplace(this.#scale!, this.#tracker!, found,
      this.#growthFactor, this.#backoffFactor, this.#growthInterval));
    found.dispose();
    this.#foundInf = null;
  }

  getScale(): number {
    if (!this.enabled) return 1;
    return this.#scale ? (this.#scale.item() as number) : this.#initScale;
  }

  stateDict(): GradScalerState {
    return {
      scale: this.getScale(), growth_factor: this.#growthFactor, backoff_factor: this.#backoffFactor, growth_interval: this.#growthInterval,
      _growth_tracker: this.#tracker ? (this.#tracker.item() as number) : this.#initTracker,
    };
  }

  loadStateDict(s: GradScalerState): void {
    for (const k of ['scale', 'growth_factor', 'backoff_factor', 'growth_interval', '_growth_tracker'] as const) {
      if (typeof s?.[k] !== 'number') throw new TypeError(`GradScaler.loadStateDict: '${k}' missing or not a number`);
    }
    this.#initScale = s.scale;
    this.#growthFactor = s.growth_factor;
    this.#backoffFactor = s.backoff_factor;
    this.#growthInterval = s.growth_interval;
    this.#initTracker = s._growth_tracker;
    if (this.#scale) {
      this.#scale.fill_(s.scale);
      this.#tracker!.fill_(s._growth_tracker);
    }
  }
}
