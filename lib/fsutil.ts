// The one way torchbert writes a file it must not leave half-written (models, weights, configs,
// tokenizers, caches): into a temporary file in the same folder, flushed to disk, then renamed over the
// target. A crash leaves the old file or the new one; a failed write removes its temporary file.
import * as fs from 'fs';
import * as path from 'path';

type Content = string | Uint8Array;

function tmpFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`);
}

function writeSynced(p: string, data: Content): void {
  const fd = fs.openSync(p, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flushes the temporary file a writer produced and renames it over the target (removing it on failure). */
function settle(tmp: string, file: string, produced: () => void): void {
  try {
    produced();
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Writes `data` (or lets `write` produce the file at the temporary path it is given) atomically. */
export function writeFileAtomicSync(file: string, data: Content | ((tmp: string) => void)): void {
  const tmp = tmpFor(file);
  settle(tmp, file, () => {
    if (typeof data !== 'function') return writeSynced(tmp, data);
    data(tmp);
    fsyncPath(tmp);
  });
}

/** As writeFileAtomicSync, for writers that run off the event loop (native saves). */
export async function writeFileAtomic(file: string, write: Content | ((tmp: string) => Promise<void> | void)): Promise<void> {
  if (typeof write !== 'function') return writeFileAtomicSync(file, write);
  const tmp = tmpFor(file);
  try {
    await write(tmp);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  settle(tmp, file, () => fsyncPath(tmp));
}
