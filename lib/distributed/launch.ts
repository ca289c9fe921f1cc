// `torchbert run`: torchrun's launcher for Node ranks. It starts nprocPerNode processes per node with
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT, TORCHELASTIC_RESTART_COUNT, OMP_NUM_THREADS). When a rank fails (crash, kill -9), every
// rank of that attempt is stopped and, within maxRestarts, all start again (torchelastic's behaviour; a
// Trainer with resumeFrom: 'latest' continues from the last checkpoint); past it the launcher fails,
// naming the rank and how it ended.
import { spawn, ChildProcess } from 'child_process';
import * as os from 'os';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  maxRestarts?: number;
  /** intra-op threads per rank (default: cores / nprocPerNode) */
  threads?: number;
  /** the address this node's ranks listen on (TORCHBERT_LOCAL_ADDR), e.g. 127.0.0.2 for a second loopback "node" */
  localAddr?: string;
  log?: (s: string) => void;
}

export class LaunchError extends Error {
  constructor(
    message: string,
    readonly rank: number,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
  }
}

/** Runs `cmd args` as the ranks of this node until all exit 0 (resolves) or restarts run out (rejects). */
export async function launch(cmd: string, args: string[], o: LaunchOptions): Promise<void> {
  const nproc = o.nprocPerNode;
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  for (const [k, v, min] of [['--nproc-per-node', nproc, 1], ['--nnodes', nnodes, 1], ['--node-rank', nodeRank, 0], ['--max-restarts', o.maxRestarts ?? 0, 0]] as const) {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`${k} must be an integer >= ${min}, got ${v}`);
  }
  if (nodeRank >= nnodes) throw new RangeError(`--node-rank (${nodeRank}) must be smaller than --nnodes (${nnodes})`);
  const log = o.log ?? ((s: string) => process.stderr.write(`torchbert run: ${s}\n`));
  const threads = o.threads ?? Math.max(1, Math.floor(os.availableParallelism() / nproc));
  const maxRestarts = o.maxRestarts ?? 0;
  for (let attempt = 0; ; attempt++) {
    const children: ChildProcess[] = [];
    const failure = await new Promise<{ rank: number; code: number | null; signal: NodeJS.Signals | null } | null>((resolve) => {
      let running = nproc;
      let failed: { rank: number; code: number | null; signal: NodeJS.Signals | null } | null = null;
      for (let local = 0; local < nproc; local++) {
        const rank = nodeRank * nproc + local;
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          RANK: String(rank),
          WORLD_SIZE: String(nnodes * nproc),
          LOCAL_RANK: String(local),
          LOCAL_WORLD_SIZE: String(nproc),
          GROUP_RANK: String(nodeRank),
          MASTER_ADDR: o.masterAddr ?? '127.0.0.1',
          MASTER_PORT: String(o.masterPort ?? 29500),
          TORCHELASTIC_RESTART_COUNT: String(attempt),
          TORCHELASTIC_MAX_RESTARTS: String(maxRestarts),
          OMP_NUM_THREADS: String(threads),
          ...(o.localAddr ? { TORCHBERT_LOCAL_ADDR: o.localAddr } : {}),
        };
        const child = spawn(cmd, args, { env, stdio: 'inherit' });
        children.push(child);
        child.on('error', (e) => {
          log(`rank ${rank} could not start: ${e.message}`);
        });
        child.on('exit', (code, signal) => {
          running--;
          if ((code !== 0 || signal) && !failed) {
            failed = { rank, code, signal };
            // stop the others of this attempt
            for (const c of children) if (c !== child && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
            setTimeout(() => {
              for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
            }, 5000).unref();
          }
          if (running === 0) resolve(failed);
        });
      }
    });
    if (!failure) return;
    const how = failure.signal ? `was killed by ${failure.signal}` : `exited with status ${failure.code}`;
    if (attempt >= maxRestarts) {
      throw new LaunchError(`rank ${failure.rank} ${how}${maxRestarts ? ` (after ${attempt} restart${attempt === 1 ? '' : 's'}, --max-restarts ${maxRestarts})` : ''}`, failure.rank, failure.code, failure.signal);
    }
    log(`rank ${failure.rank} ${how}; restarting all ${nproc} local ranks (restart ${attempt + 1} of ${maxRestarts})`);
  }
}
