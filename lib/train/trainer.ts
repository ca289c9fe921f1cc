// A small Trainer in the spirit of HF's: AdamW with HF weight-decay groups, a linear warmup schedule,
// gradient accumulation and clipping, a time or step budget, periodic evaluation, a progress bar on a
// terminal (plain log lines otherwise) and a JSONL metrics log. Every FLOP runs in libtorch.
import * as fs from 'fs';
import * as tb from '../core';
import { Tensor } from '../core';
import type { BertPreTrainedModel, BertInputs } from '../models/bert';
import { AdamW, clipGradNormAsync, weightDecayGroups } from './optim';
import { GradScaler } from './amp';
import { getScheduler, ScheduleName, LRScheduler } from './schedules';
import { saveFile, loadFile } from '../safetensors';
import * as path from 'path';
import type { Batch } from './collate';
import { checkCpuBf16 } from '../cpu';
import * as dist from '../distributed/process-group';
import { DistributedDataParallel } from '../distributed/ddp';
import { rDropLoss } from './rdrop';

export interface TrainerOptions {
  /** write a checkpoint every saveSteps optimizer steps into outputDir/checkpoint-<step> */
  saveSteps?: number;
  outputDir?: string;
  /** keep only the newest saveTotalLimit checkpoints */
  saveTotalLimit?: number;
  /** resume from this checkpoint folder (model, optimizer, scheduler, RNG and step); 'latest': the newest
   * checkpoint in outputDir if there is one (what a run restarted by `torchbert run --max-restarts` wants) */
  resumeFrom?: string;
  learningRate?: number;
  weightDecay?: number;
  adamEpsilon?: number;
  warmupRatio?: number;
  warmupSteps?: number;
  maxSteps: number;
  gradientAccumulationSteps?: number;
  maxGradNorm?: number;
  schedule?: ScheduleName;
  /** stop early (after the current step) once this many seconds have passed */
  timeBudgetSec?: number;
  /**
   * With timeBudgetSec: the learning-rate schedule is fitted to the steps the budget holds at the pace
   * measured (re-estimated after 16, 32, 64, ... steps), at most maxSteps, so a slower machine runs a
   * shorter but complete schedule (warmup and decay to the end) instead of stopping mid-decay.
   */
  fitScheduleToTimeBudget?: boolean;
  /** milliseconds now, for the time budget and the pace (default Date.now); a fake clock makes a budgeted run reproducible */
  clock?: () => number;
  loggingSteps?: number;
  evalSteps?: number;
  logFile?: string;
  seed?: number;
  name?: string;
  log?: (line: string) => void;
  /** the eval metric that picks the best model (HF's metric_for_best_model), e.g. 'accuracy' or 'f1' */
  metricForBestModel?: string;
  /** default: true, unless the metric's name contains 'loss' */
  greaterIsBetter?: boolean;
  /** at the end, restore the weights of the best evaluation (HF's load_best_model_at_end) */
  loadBestModelAtEnd?: boolean;
  /** stop after this many evaluations without improvement (HF's EarlyStoppingCallback) */
  earlyStoppingPatience?: number;
  /** an improvement must exceed this (absolute) to count */
  earlyStoppingThreshold?: number;
  /** draw the loss and eval curves to this SVG file at the end */
  plotFile?: string;
  /** bfloat16 autocast for forward and loss (HF's bf16), on the model's device: CUDA, or a CPU */
  bf16?: boolean;
  /** float16 autocast with dynamic loss scaling (HF's fp16); needs a CUDA device */
  fp16?: boolean;
  /**
   * Models trained beside the main one by the same optimizer, schedule and clipping, e.g. ELECTRA's
   * generator: the loss (lossFn) reads them; checkpoints keep each in a subfolder by its name. One process only.
   */
  companions?: Record<string, BertPreTrainedModel>;
  /**
   * R-Drop's weight (rDropLoss): each batch runs twice, with different dropout, and the loss adds this times
   * the symmetric KL divergence of the two predictions to their cross-entropy. Classification heads only;
   * about 1.7 times the compute of a step. Default 0 (the model's own loss).
   */
  rDrop?: number;
}

/**
 * Removes a checkpoint folder without ever leaving a partial one under its name: it is renamed away
 * first (atomic), then deleted, so a crash mid-delete leaves only a `.deleting-*` folder.
 */
function discard(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const trash = path.join(path.dirname(dir), `.deleting-${path.basename(dir)}-${process.pid}-${Date.now()}`);
  fs.renameSync(dir, trash);
  fs.rmSync(trash, { recursive: true, force: true });
}

export interface TrainResult {
  steps: number;
  seconds: number;
  losses: { step: number; loss: number; lr: number }[];
  evals: { step: number; metrics: Record<string, number> }[];
  /** the best evaluation by metricForBestModel */
  best?: { step: number; metric: string; value: number };
  stoppedEarly?: boolean;
  /** the schedule's length in steps: maxSteps, or what fitScheduleToTimeBudget fitted it to */
  scheduledSteps?: number;
}

export class Trainer {
  readonly optimizer: AdamW;
  /** loss scaling when fp16 (a disabled pass-through otherwise) */
  readonly scaler: GradScaler;
  readonly #amp: { device: 'cpu' | 'cuda'; dtype: 'bfloat16' | 'float16'; enabled: boolean };
  /** rank 0 (or the only process): logs, progress, checkpoints, curves; data-parallel when a process group of several ranks is initialised */
  readonly isMain: boolean = true;
  readonly opts: Required<Pick<TrainerOptions, 'learningRate' | 'weightDecay' | 'adamEpsilon' | 'warmupRatio' | 'gradientAccumulationSteps' | 'maxGradNorm' | 'schedule' | 'loggingSteps' | 'seed' | 'name' | 'maxSteps'>> & TrainerOptions;

  constructor(readonly model: BertPreTrainedModel, opts: TrainerOptions) {
    if (!Number.isInteger(opts.maxSteps) || opts.maxSteps <= 0) throw new RangeError(`Trainer: maxSteps must be a positive integer, got ${opts.maxSteps}`);
    if ((opts.loadBestModelAtEnd || opts.earlyStoppingPatience) && !opts.metricForBestModel) throw new TypeError('Trainer: loadBestModelAtEnd and earlyStoppingPatience need metricForBestModel');
    if (opts.earlyStoppingPatience !== undefined && (!Number.isInteger(opts.earlyStoppingPatience) || opts.earlyStoppingPatience < 1)) throw new RangeError(`Trainer: earlyStoppingPatience must be a positive integer, got ${opts.earlyStoppingPatience}`);
    this.opts = { learningRate: 5e-5, weightDecay: 0, adamEpsilon: 1e-8, warmupRatio: 0, gradientAccumulationSteps: 1, maxGradNorm: 1, schedule: 'linear', loggingSteps: 50, seed: 42, name: 'train', ...opts };
    const companions = Object.entries(opts.companions ?? {});
    for (const [name, c] of companions) {
      if (!/^[A-Za-z0-9_-]+$/.test(name) || c === model) throw new TypeError(`Trainer: companion ${JSON.stringify(name)} must be another model, named with letters, digits, _ or -`);
    }
    const named = [...model.namedParameters(), ...companions.flatMap(([name, c]) => c.namedParameters().map(([n, p]): [string, Tensor] => [`${name}.${n}`, p]))];
    this.optimizer = new AdamW(weightDecayGroups(named, this.opts.weightDecay), { lr: this.opts.learningRate, eps: this.opts.adamEpsilon });
    if (opts.rDrop !== undefined && !(opts.rDrop >= 0 && Number.isFinite(opts.rDrop))) throw new RangeError(`Trainer: rDrop must be a non-negative number, got ${opts.rDrop}`);
    if (opts.bf16 && opts.fp16) throw new TypeError('Trainer: choose bf16 or fp16, not both');
    const device = model.parameters()[0].device.startsWith('cuda') ? 'cuda' : 'cpu';
    if (opts.fp16 && device !== 'cuda') throw new TypeError('Trainer: fp16 mixed precision needs the model on a CUDA device (on the CPU use bf16)');
    if ((opts.bf16 || opts.fp16) && model.parameters()[0].dtype !== 'float32') throw new TypeError(`Trainer: mixed precision keeps float32 master weights; the model is ${model.parameters()[0].dtype}`);
    if (opts.bf16 && device === 'cpu') checkCpuBf16('Trainer({ bf16 })');
    this.#amp = { device, dtype: opts.fp16 ? 'float16' : 'bfloat16', enabled: !!(opts.bf16 || opts.fp16) };
    this.scaler = new GradScaler({ enabled: !!opts.fp16 });
    if (dist.isInitialized() && dist.getWorldSize() > 1) this.isMain = dist.getRank() === 0;
  }

  /**
   * Writes a checkpoint atomically: everything goes into a temporary folder that is renamed into place,
   * so a crash (even kill -9) mid-save leaves earlier checkpoints intact and no partial one.
   */
  async saveCheckpoint(dir: string, sched: LRScheduler, step: number): Promise<void> {
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    await this.model.savePretrained(tmp);
    for (const [name, c] of Object.entries(this.opts.companions ?? {})) await c.savePretrained(path.join(tmp, name));
    const sd = this.optimizer.stateDict();
    const tensors = new Map<string, Tensor>();
    for (const [i, st] of Object.entries(sd.state)) {
      tensors.set(`state.${i}.exp_avg`, st.exp_avg);
      tensors.set(`state.${i}.exp_avg_sq`, st.exp_avg_sq);
      if (st.max_exp_avg_sq) tensors.set(`state.${i}.max_exp_avg_sq`, st.max_exp_avg_sq);
    }
    const rng = tb.getRngState();
    tensors.set('rng_state', rng);
    await saveFile(tensors, path.join(tmp, 'optimizer.safetensors'));
    rng.dispose();
    const steps = Object.fromEntries(Object.entries(sd.state).map(([i, st]) => [i, st.step]));
    fs.writeFileSync(path.join(tmp, 'optimizer.json'), JSON.stringify({ steps, param_groups: sd.param_groups }));
    fs.writeFileSync(path.join(tmp, 'scheduler.json'), JSON.stringify(sched.stateDict()));
    fs.writeFileSync(path.join(tmp, 'trainer_state.json'), JSON.stringify({ global_step: step, name: this.opts.name, ...(this.scaler.enabled ? { scaler: this.scaler.stateDict() } : {}) }));
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    discard(dir);
    fs.renameSync(tmp, dir);
  }

  /** Restores model, optimizer, scheduler and RNG from a checkpoint; returns the step it was taken at. */
  async loadCheckpoint(dir: string, sched: LRScheduler): Promise<number> {
    const companions = Object.entries(this.opts.companions ?? {});
    const need = ['config.json', 'model.safetensors', 'optimizer.safetensors', 'optimizer.json', 'scheduler.json', 'trainer_state.json', ...companions.map(([name]) => path.join(name, 'model.safetensors'))];
    for (const f of need) if (!fs.existsSync(path.join(dir, f))) throw new Error(`${dir}: not a complete checkpoint (missing ${f})`);
    for (const [m, file] of [[this.model, 'model.safetensors'], ...companions.map(([name, c]) => [c, path.join(name, 'model.safetensors')])] as [BertPreTrainedModel, string][]) {
      const weights = await loadFile(path.join(dir, file));
      m.loadStateDict(weights, { strict: false });
      weights.forEach((t) => t.dispose());
    }
    const opt = JSON.parse(fs.readFileSync(path.join(dir, 'optimizer.json'), 'utf8'));
    const tensors = await loadFile(path.join(dir, 'optimizer.safetensors'));
    const state: Record<number, { step: number; exp_avg: Tensor; exp_avg_sq: Tensor; max_exp_avg_sq?: Tensor }> = {};
    for (const [i, step] of Object.entries(opt.steps)) {
      state[Number(i)] = { step: step as number, exp_avg: tensors.get(`state.${i}.exp_avg`)!, exp_avg_sq: tensors.get(`state.${i}.exp_avg_sq`)!, max_exp_avg_sq: tensors.get(`state.${i}.max_exp_avg_sq`) };
    }
    this.optimizer.loadStateDict({ state, param_groups: opt.param_groups });
    sched.loadStateDict(JSON.parse(fs.readFileSync(path.join(dir, 'scheduler.json'), 'utf8')));
    tb.setRngState(tensors.get('rng_state')!);
    tensors.forEach((t) => t.dispose());
    const ts = JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8'));
    if (ts.scaler && this.scaler.enabled) this.scaler.loadStateDict(ts.scaler);
    return ts.global_step;
  }

  #prune(): void {
    const o = this.opts;
    if (!o.outputDir || !o.saveTotalLimit) return;
    const cks = fs.readdirSync(o.outputDir).filter((d) => /^checkpoint-\d+$/.test(d)).sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
    for (const d of cks.slice(0, Math.max(0, cks.length - o.saveTotalLimit))) discard(path.join(o.outputDir, d));
  }

  /**
   * Trains for maxSteps optimizer steps (or the time budget), drawing batches from nextBatch.
   * `toInputs` maps a batch to model inputs with labels; `evaluate` runs every evalSteps.
   */
  async train(nextBatch: (step: number) => Batch, toInputs: (b: Batch) => BertInputs, evaluate?: () => Promise<Record<string, number>>, lossFn?: (inputs: BertInputs) => Promise<Tensor>): Promise<TrainResult> {
    const o = this.opts;
    if (o.rDrop && lossFn) throw new TypeError(`${o.name}: rDrop replaces the model's loss, and a lossFn was given: call rDropLoss inside it instead`);
    // The schedule spans `total` steps: maxSteps, or what the time budget holds (fitScheduleToTimeBudget).
    let total = o.maxSteps;
    const schedule = (steps: number) => getScheduler(o.schedule, this.optimizer, { numWarmupSteps: o.warmupSteps ?? Math.ceil(steps * o.warmupRatio), numTrainingSteps: steps });
    let sched = schedule(total);
    const fit = !!(o.fitScheduleToTimeBudget && o.timeBudgetSec);
    let probe = { step: 0, at: 0 };
    // seconds spent evaluating: left out of the pace, and the evaluations still to come are budgeted
    const evalTime = { seconds: 0, count: 0 };
    // Data-parallel: wrapping broadcasts rank 0's weights (after any resume, below, all ranks load the same checkpoint).
    const companions = Object.values(o.companions ?? {});
    if (companions.length && dist.isInitialized() && dist.getWorldSize() > 1) throw new Error(`${o.name}: companion models train in one process only (DistributedDataParallel wraps the main model)`);
    const ddp = dist.isInitialized() && dist.getWorldSize() > 1 ? new DistributedDataParallel(this.model) : null;
    const main = this.isMain;
    const log = main ? (o.log ?? ((s: string) => console.log(s))) : () => {};
    const jsonl = o.logFile && main ? fs.openSync(o.logFile, 'a') : undefined;
    const write = (rec: object) => jsonl !== undefined && fs.writeSync(jsonl, JSON.stringify(rec) + '\n');
    if (ddp) await ddp.ready;
    const bar = main && process.stdout.isTTY ? new (require('cli-progress').SingleBar)({ format: `${o.name} |{bar}| {value}/{total} loss {loss} lr {lr} {rate} steps/s eta {eta_formatted}`, hideCursor: true }, require('cli-progress').Presets.shades_classic) : null;
    bar?.start(o.maxSteps, 0, { loss: '-', lr: '-', rate: '-' });
    const now = o.clock ?? Date.now;
    const start = now();
    const result: TrainResult = { steps: 0, seconds: 0, losses: [], evals: [] };
    this.model.train();
    companions.forEach((c) => c.train());
    let running = 0;
    let count = 0;
    let first = 0;
    // the optimizer's own list: no crossing into native code to re-list the parameters every step
    const params = this.optimizer.paramGroups.flatMap((g) => g.params);
    // A failing evaluation (bad dev data, a tokenizer error) must not cost the trained steps: they are
    // saved as a checkpoint first, and the error says where.
    const runEval = async (step: number): Promise<Record<string, number>> => {
      try {
        const m = await evaluate!();
        // every rank acts on rank 0's metrics (best model, early stopping), so none decides differently
        return ddp ? await dist.broadcastObject(m, 0) : m;
      } catch (e) {
        bar?.stop();
        if (jsonl !== undefined) fs.closeSync(jsonl);
        let saved = ' (no outputDir: the trained weights were not saved)';
        if (o.outputDir && main) {
          const dir = path.join(o.outputDir, `checkpoint-${step}`);
          await this.saveCheckpoint(dir, sched, step);
          saved = `; the ${step} trained steps are saved in ${dir} (resume from it once the evaluation data is fixed)`;
        }
        throw new Error(`${o.name}: evaluation at step ${step} failed: ${(e as Error).message}${saved}`, { cause: e });
      }
    };
    let resumeFrom = o.resumeFrom;
    if (resumeFrom === 'latest') {
      const cks = o.outputDir && fs.existsSync(o.outputDir) ? fs.readdirSync(o.outputDir).filter((d) => /^checkpoint-\d+$/.test(d)).sort((a, b) => Number(b.split('-')[1]) - Number(a.split('-')[1])) : [];
      resumeFrom = cks.length ? path.join(o.outputDir!, cks[0]) : undefined;
    }
    if (resumeFrom) {
      const saved = path.join(resumeFrom, 'scheduler.json');
      if (fit && fs.existsSync(saved)) {
        // the schedule the interrupted run had fitted
        const steps = JSON.parse(fs.readFileSync(saved, 'utf8')).opts?.numTrainingSteps;
        if (Number.isInteger(steps) && steps > 0 && steps <= o.maxSteps) sched = schedule((total = steps));
      }
      first = await this.loadCheckpoint(resumeFrom, sched);
      probe = { step: first, at: 0 };
      result.steps = first;
      this.model.train();
      companions.forEach((c) => c.train());
      log(`${o.name}: resumed from ${resumeFrom} at step ${first}`);
    }
    for (let step = first; step < total; step++) {
      for (let micro = 0; micro < o.gradientAccumulationSteps; micro++) {
        const scope = new tb.DisposeScope();
        const one = () => scope.run(async () => {
          const batch = nextBatch(step * o.gradientAccumulationSteps + micro);
          if (ddp && step === first && micro === 0) {
            const per = batch.inputIds.shape[0];
            log(`${o.name}: data-parallel over ${dist.getWorldSize()} ranks: global batch ${per * dist.getWorldSize() * o.gradientAccumulationSteps} = ${per} per rank x ${dist.getWorldSize()} ranks x ${o.gradientAccumulationSteps} accumulation`);
          }
          const inputs = toInputs(batch);
          // Forward and loss under autocast (when bf16/fp16); backward outside it, as in PyTorch.
          const loss = async () => (lossFn ? lossFn(inputs) : o.rDrop ? rDropLoss(this.model, inputs, o.rDrop) : (await this.model.forward(inputs)).loss!);
          const forward = ddp ? () => ddp.call(loss) : loss;
          const full = await tb.autocast(this.#amp, forward);
          const l = o.gradientAccumulationSteps > 1 ? full.div(o.gradientAccumulationSteps) : full;
          await this.scaler.scale(l).backward();
          return full.item() as number;
        });
        // Accumulation steps keep their gradients local; the last one allreduces the sum (DDP's no_sync).
        const loss = ddp && micro < o.gradientAccumulationSteps - 1 ? await ddp.noSync(one) : await one();
        scope.dispose();
        if (!Number.isFinite(loss)) throw new Error(`${o.name}: loss became ${loss} at step ${step}; lower the learning rate`);
        running += loss;
        count++;
      }
      if (this.scaler.enabled) this.scaler.unscale_(this.optimizer);
      if (o.maxGradNorm > 0) await clipGradNormAsync(params, o.maxGradNorm);
      // With fp16, a step whose gradients overflowed is skipped and the scale backs off (HF skips the
      // scheduler step too).
      const stepped = await this.scaler.step(this.optimizer);
      this.scaler.update();
      if (stepped) sched.step();
      this.optimizer.zeroGrad();
      result.steps = step + 1;
      const elapsed = (now() - start) / 1000;
      // Fit the schedule after 16, 32, 64, ... steps from the pace since the previous fit (the first steps,
      // which compile, tune GEMMs and warm caches, are left out once there is a later window), to end at
      // 98% of the budget so that a slightly slower stretch does not cut the decay short.
      if (fit && step + 1 - first >= 16 && ((step + 1 - first) & (step - first)) === 0 && step + 1 < total) {
        const pace = (step + 1 - probe.step) / Math.max(1e-3, elapsed - evalTime.seconds - probe.at);
        const evalsLeft = evaluate && o.evalSteps && evalTime.count ? Math.floor((total - step - 1) / o.evalSteps) + 1 : 0;
        const left = 0.98 * o.timeBudgetSec! - elapsed - evalsLeft * (evalTime.seconds / Math.max(1, evalTime.count));
        let fitted = Math.max(step + 2, Math.min(o.maxSteps, Math.floor(step + 1 + pace * left)));
        if (ddp) fitted = await dist.broadcastObject(fitted, 0);
        probe = { step: step + 1, at: elapsed - evalTime.seconds };
        if (Math.abs(fitted - total) > 0.01 * total) {
          total = fitted;
          const last = sched.lastEpoch;
          sched = schedule(total);
          sched.loadStateDict({ last_epoch: last });
          bar?.setTotal(total);
          if (!bar) log(`${o.name}: schedule fitted to ${total} steps (${pace.toFixed(2)} steps/s, ${o.timeBudgetSec}s budget)`);
        }
      }
      if ((step + 1) % o.loggingSteps === 0 || step + 1 === total) {
        let mean = running / count;
        if (ddp) {
          const t = tb.tensor([mean], { dtype: 'float64' });
          await dist.allReduce(t, { op: 'avg' });
          mean = t.item() as number;
          t.dispose();
        }
        const rec = { step: step + 1, loss: mean, lr: sched.getLastLr()[0], stepsPerSec: (step + 1) / elapsed };
        result.losses.push(rec);
        write({ type: 'train', name: o.name, ...rec });
        if (bar) bar.update(step + 1, { loss: rec.loss.toFixed(4), lr: rec.lr.toExponential(2), rate: rec.stepsPerSec.toFixed(2) });
        else log(`${o.name} step ${step + 1}/${total} loss ${rec.loss.toFixed(4)} lr ${rec.lr.toExponential(2)} ${rec.stepsPerSec.toFixed(2)} steps/s`);
        running = 0;
        count = 0;
      } else bar?.update(step + 1);
      if (o.saveSteps && o.outputDir && (step + 1) % o.saveSteps === 0) {
        if (main) {
          await this.saveCheckpoint(path.join(o.outputDir, `checkpoint-${step + 1}`), sched, step + 1);
          this.#prune();
        }
        if (ddp) await dist.barrier();
      }
      if (evaluate && o.evalSteps && (step + 1) % o.evalSteps === 0) {
        const t = now();
        const metrics = await runEval(step + 1);
        evalTime.seconds += (now() - t) / 1000;
        evalTime.count++;
        this.model.train();
        result.evals.push({ step: step + 1, metrics });
        write({ type: 'eval', name: o.name, step: step + 1, ...metrics });
        if (!bar) log(`${o.name} eval at step ${step + 1}: ${JSON.stringify(metrics)}`);
        if (this.#track(result, step + 1, metrics, log)) break;
      }
      // Rank 0's clock decides for all, so no rank stops alone; asked every 8 steps (a collective each
      // step would cost more than the few steps a late stop adds).
      if (o.timeBudgetSec && (ddp ? (step + 1) % 8 === 0 && (await dist.broadcastObject(elapsed > o.timeBudgetSec, 0)) : elapsed > o.timeBudgetSec)) {
        log(`${o.name}: time budget of ${o.timeBudgetSec}s reached after ${step + 1} steps`);
        break;
      }
    }
    // The last weights count too: evaluate them when the run did not end on an evaluation step.
    if (evaluate && o.evalSteps && !result.stoppedEarly && result.steps > first && result.evals.at(-1)?.step !== result.steps) {
      const metrics = await runEval(result.steps);
      result.evals.push({ step: result.steps, metrics });
      write({ type: 'eval', name: o.name, step: result.steps, ...metrics });
      if (!bar) log(`${o.name} eval at step ${result.steps}: ${JSON.stringify(metrics)}`);
      this.#track(result, result.steps, metrics, log);
    }
    bar?.stop();
    if (jsonl !== undefined) fs.closeSync(jsonl);
    result.seconds = (now() - start) / 1000;
    result.scheduledSteps = total;
    if (o.loadBestModelAtEnd && this.#best && result.best && result.best.step !== result.steps) {
      this.model.loadStateDict(this.#best, { strict: true });
      log(`${o.name}: loaded the best model (step ${result.best.step}, ${result.best.metric} ${result.best.value.toFixed(4)})`);
    }
    this.#dropBest();
    if (o.plotFile && main) {
      const { curvesSvg } = await import('./plot');
      fs.writeFileSync(o.plotFile, curvesSvg(result, o.name));
    }
    this.model.eval();
    companions.forEach((c) => c.eval());
    ddp?.dispose();
    return result;
  }

  #best: Map<string, Tensor> | null = null;
  #stale = 0;
  #dropBest(): void {
    this.#best?.forEach((t) => t.dispose());
    this.#best = null;
  }

  /** Records an evaluation for the best model and early stopping; true when training should stop. */
  #track(result: TrainResult, step: number, metrics: Record<string, number>, log: (s: string) => void): boolean {
    const o = this.opts;
    if (!o.metricForBestModel) return false;
    const v = metrics[o.metricForBestModel];
    if (typeof v !== 'number') throw new Error(`${o.name}: evaluation returned no '${o.metricForBestModel}' (it gave ${Object.keys(metrics).join(', ')})`);
    const greater = o.greaterIsBetter ?? !o.metricForBestModel.includes('loss');
    const margin = o.earlyStoppingThreshold ?? 0;
    // NaN (a correlation of constant predictions) is never the best, and any number beats it
    const better = !Number.isNaN(v) && (!result.best || Number.isNaN(result.best.value) || (greater ? v > result.best.value + margin : v < result.best.value - margin));
    if (better) {
      result.best = { step, metric: o.metricForBestModel, value: v };
      this.#stale = 0;
      if (o.loadBestModelAtEnd) {
        this.#dropBest();
        this.#best = tb.noGrad(() => new Map(this.model.namedParameters().map(([n, p]) => [n, tb.keep(p.detach().clone())])));
      }
    } else this.#stale++;
    if (o.earlyStoppingPatience && this.#stale >= o.earlyStoppingPatience) {
      result.stoppedEarly = true;
      log(`${o.name}: early stopping at step ${step}: ${o.metricForBestModel} has not improved for ${this.#stale} evaluations (best ${result.best!.value.toFixed(4)} at step ${result.best!.step})`);
      return true;
    }
    return false;
  }
}

/** Runs the model over batches without gradients and returns argmax predictions. */
export async function predictClasses(model: BertPreTrainedModel, batches: Batch[], toInputs: (b: Batch) => BertInputs): Promise<number[]> {
  model.eval();
  const preds: number[] = [];
  for (const b of batches) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const out = await tb.noGrad(() => model.forward(toInputs(b)));
      const p = (out.logits as Tensor).argmax(-1);
      for (const v of (await p.data()) as BigInt64Array) preds.push(Number(v));
    });
    scope.dispose();
  }
  return preds;
}

/** Each row's logits (a regression model's predicted values), batch by batch in eval mode. */
export async function predictLogits(model: BertPreTrainedModel, batches: Batch[], toInputs: (b: Batch) => BertInputs): Promise<number[][]> {
  model.eval();
  const rows: number[][] = [];
  for (const b of batches) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const logits = (await tb.noGrad(() => model.forward(toInputs(b)))).logits as Tensor;
      const [n, k] = logits.shape;
      const v = (await logits.float().data()) as Float32Array;
      for (let i = 0; i < n; i++) rows.push(Array.from(v.subarray(i * k, (i + 1) * k)));
    });
    scope.dispose();
  }
  return rows;
}
