// AdamW with torch.optim.AdamW semantics; the update runs natively over all parameters of a group at
// once (ATen's fused AdamW kernel) on the compute thread, never as a TS loop over tensors. Also
// clipGradNorm (foreach kernels) and HF's parameter groups (no decay for biases and LayerNorm weights).
import * as tb from '../core';
import { Tensor, op } from '../core';

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
}
export interface ParamGroup extends AdamWOptions {
  params: Tensor[];
}
type Group = Required<AdamWOptions> & { params: Tensor[]; initialLr: number };
interface ParamState {
  step: Tensor; // float32 scalar, as PyTorch keeps it
  expAvg: Tensor;
  expAvgSq: Tensor;
  /** only with amsgrad (torch.optim.AdamW allocates it only then: a third of the optimizer's memory) */
  maxExpAvgSq?: Tensor;
}

export interface OptimizerStateDict {
  state: Record<number, { step: number; exp_avg: Tensor; exp_avg_sq: Tensor; max_exp_avg_sq?: Tensor }>;
  param_groups: (Required<AdamWOptions> & { params: number[]; initial_lr: number })[];
}

function check(name: string, v: number, ok: boolean): void {
  if (!ok) throw new RangeError(`AdamW: invalid ${name}: ${v}`);
}

/**
 * torch.optim.AdamW. Defaults are PyTorch's (lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 1e-2).
 * @example const opt = new AdamW(model.parameters(), { lr: 2e-5, eps: 1e-8 });
 */
export class AdamW {
  readonly paramGroups: Group[];
  #state = new Map<Tensor, ParamState>();

  constructor(params: Tensor[] | ParamGroup[], opts: AdamWOptions = {}) {
    const defaults: Required<AdamWOptions> = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, amsgrad: false, maximize: false, ...opts };
    const groups: ParamGroup[] = params.length && params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    if (!groups.length || groups.every((g) => !g.params.length)) throw new RangeError('AdamW: got an empty parameter list');
    this.paramGroups = groups.map((g) => {
      const o = { ...defaults, ...g } as Required<AdamWOptions> & { params: Tensor[] };
      check('lr', o.lr, o.lr >= 0);
      check('eps', o.eps, o.eps >= 0);
      check('beta1', o.betas[0], o.betas[0] >= 0 && o.betas[0] < 1);
      check('beta2', o.betas[1], o.betas[1] >= 0 && o.betas[1] < 1);
      check('weightDecay', o.weightDecay, o.weightDecay >= 0);
      for (const p of o.params) if (!p.isFloatingPoint) throw new TypeError(`AdamW: parameters must be floating point, got ${p.dtype}`);
      return { ...o, initialLr: o.lr };
    });
  }

  #stateOf(p: Tensor, amsgrad: boolean): ParamState {
    let s = this.#state.get(p);
    if (!s) {
      s = tb.noGrad(() => ({ step: tb.zeros([], { device: p.device }), expAvg: tb.zerosLike(p), expAvgSq: tb.zerosLike(p) }));
      for (const t of Object.values(s)) tb.keep(t);
      this.#state.set(p, s);
    }
    if (amsgrad && !s.maxExpAvgSq) s.maxExpAvgSq = tb.keep(tb.noGrad(() => tb.zerosLike(p)));
    return s;
  }

  #args(g: Group): { args: unknown[]; temps: Tensor[] } | null {
    const ps: Tensor[] = [];
    const grads: Tensor[] = [];
    for (const p of g.params) {
      const gr = p.grad;
      if (!gr) continue;
      ps.push(p);
      grads.push(gr);
    }
    if (!ps.length) return null;
    const st = ps.map((p) => this.#stateOf(p, g.amsgrad));
    // The fused kernel expects the step already incremented (torch.optim.AdamW does this first).
    op('aten::_foreach_add_.Scalar').inplace(st.map((s) => s.step), 1);
    const args = [ps, grads, st.map((s) => s.expAvg), st.map((s) => s.expAvgSq), g.amsgrad ? st.map((s) => s.maxExpAvgSq!) : [],
      st.map((s) => s.step), g.lr, g.betas[0], g.betas[1], g.weightDecay, g.eps, g.amsgrad, g.maximize, null, null];
    return { args, temps: grads };
  }

  /** One update of every parameter that has a gradient, on the compute thread. */
  async step(): Promise<void> {
    for (const g of this.paramGroups) {
      const a = tb.noGrad(() => this.#args(g));
      if (!a) continue;
      try {
        await op('aten::_fused_adamw_').async(...a.args);
      } finally {
        a.temps.forEach((t) => t.dispose());
      }
    }
  }
  stepSync(): void {
    for (const g of this.paramGroups) {
      const a = tb.noGrad(() => this.#args(g));
      if (!a) continue;
      try {
        op('aten::_fused_adamw_').inplace(...a.args);
      } finally {
        a.temps.forEach((t) => t.dispose());
      }
    }
  }

  /** Clears gradients (set to none, as PyTorch does by default). */
  zeroGrad(setToNone = true): void {
    for (const g of this.paramGroups) for (const p of g.params) {
      if (setToNone) p.grad = null;
      else {
        const gr = p.grad;
        if (gr) {
          gr.zero_();
          gr.dispose();
        }
      }
    }
  }

  /** PyTorch's layout: per-parameter state by index, groups with their hyper-parameters. */
  stateDict(): OptimizerStateDict {
    const state: OptimizerStateDict['state'] = {};
    let i = 0;
    const groups = this.paramGroups.map((g) => {
      const ids: number[] = [];
      for (const p of g.params) {
        const s = this.#state.get(p);
        if (s) state[i] = { step: s.step.item() as number, exp_avg: s.expAvg, exp_avg_sq: s.expAvgSq, ...(g.amsgrad && s.maxExpAvgSq ? { max_exp_avg_sq: s.maxExpAvgSq } : {}) };
        ids.push(i++);
      }
      const { params: _p, initialLr, ...hp } = g;
      return { ...hp, params: ids, initial_lr: initialLr };
    });
    return { state, param_groups: groups };
  }

  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.param_groups.length !== this.paramGroups.length) throw new RangeError(`loadStateDict: ${sd.param_groups.length} groups in the state, ${this.paramGroups.length} here`);
    sd.param_groups.forEach((sg, gi) => {
      const g = this.paramGroups[gi];
      if (sg.params.length !== g.params.length) throw new RangeError(`loadStateDict: group ${gi} has ${sg.params.length} parameters in the state, ${g.params.length} here`);
      Object.assign(g, { lr: sg.lr, betas: sg.betas, eps: sg.eps, weightDecay: sg.weightDecay, amsgrad: sg.amsgrad, maximize: sg.maximize, initialLr: sg.initial_lr ?? sg.lr });
      sg.params.forEach((id, k) => {
        const s = sd.state[id];
        if (!s) return;
        const p = g.params[k];
        const st = this.#stateOf(p, g.amsgrad || !!s.max_exp_avg_sq);
        tb.noGrad(() => {
          st.step.fill_(s.step);
          st.expAvg.copy_(s.exp_avg);
          st.expAvgSq.copy_(s.exp_avg_sq);
          if (s.max_exp_avg_sq) st.maxExpAvgSq!.copy_(s.max_exp_avg_sq);
        });
      });
    });
  }
}

/**
 * Rescales gradients so their total norm is at most maxNorm (torch.nn.utils.clip_grad_norm_),
 * with foreach kernels. Returns the total norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  return tb.tidy(() => tb.noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (!grads.length) return 0;
    const norms = op('aten::_foreach_norm.Scalar').ts(grads, normType, null);
    const total = tb.stack(norms).norm(normType);
    const coef = total.add(1e-6).reciprocal().mul(maxNorm).clamp(undefined, 1.0);
    op('aten::_foreach_mul_.Tensor').inplace(grads, coef);
    return total.item() as number;
  }));
}

/**
 * clipGradNorm with both passes over the gradients (the norms, then the scaling) on the compute thread: the
 * event loop stays free during training, as it is during the forward, backward and optimizer step.
 */
export async function clipGradNormAsync(params: Tensor[], maxNorm: number, normType = 2): Promise<number> {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (!grads.length) return 0;
  const held: Tensor[] = [...grads];
  try {
    const norms = ((await op('aten::_foreach_norm.Scalar').async(grads, normType, null)) as Tensor['_handle'][]).map((h) => Tensor._wrap(h));
    held.push(...norms);
    const [total, coef] = tb.tidy(() => tb.noGrad(() => {
      const t = tb.stack(norms).norm(normType);
      return [t, t.add(1e-6).reciprocal().mul(maxNorm).clamp(undefined, 1.0)];
    }));
    held.push(total, coef);
    await op('aten::_foreach_mul_.Tensor').async(grads, coef);
    return total.item() as number;
  } finally {
    held.forEach((t) => t.dispose());
  }
}

/** HF's grouping: weight decay for every parameter except biases and LayerNorm weights. */
export function weightDecayGroups(named: [string, Tensor][], weightDecay: number): ParamGroup[] {
  const noDecay = (n: string) => n.endsWith('.bias') || /LayerNorm\.weight$/.test(n) || /layer_norm\.weight$/.test(n);
  return [
    { params: named.filter(([n]) => !noDecay(n)).map(([, p]) => p), weightDecay },
    { params: named.filter(([n]) => noDecay(n)).map(([, p]) => p), weightDecay: 0 },
  ].filter((g) => g.params.length);
}
