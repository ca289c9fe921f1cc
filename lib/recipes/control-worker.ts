// The main job's control (the same BERT from random weights), fine-tuned in its own process beside the model's
// fine-tuning (ScratchOptions.parallelControl): forked by fromScratch, sent a ControlSpec, it answers with log
// lines, then its result or its error, and exits.
import { runControlSpec, ControlSpec } from './scratch';

const send = (msg: object) => new Promise<void>((resolve) => process.send!(msg, () => resolve()));
let answered = false;
// the job went away (killed, or failed in the model's fine-tuning) before the answer: no one reads the control.
// Killed outright, not process.exit: exit runs libtorch's static destructors while a fine-tuning op may still run
// on another thread (a SIGSEGV in 5 of 12 tries); the control has nothing to save.
process.on('disconnect', () => {
  if (!answered) process.kill(process.pid, 'SIGKILL');
});

process.once('message', (spec: ControlSpec) => {
  runControlSpec(spec, (line) => void send({ log: line }))
    .then((result) => send({ result }), (e: Error) => send({ error: e.message }))
    .finally(() => {
      answered = true;
      process.disconnect();
    });
});
