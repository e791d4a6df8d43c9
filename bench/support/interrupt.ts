/**
 * Ctrl-C and SIGTERM during a benchmark: the first signal stops its tools at once and makes the next
 * `checkpoint()` throw, so the run goes straight to its teardown; a second one only says so (the
 * teardown must run to leave nothing behind).
 */

/** What the run uses: the checkpoint it calls between steps, and the signal that stopped it (if any). */
export interface Interrupt {
  checkpoint(): void;
  signal(): string | undefined;
}

/** Installs the handlers. */
export function onInterrupt(note: (s: string) => void, stopTools: () => Promise<unknown> | void): Interrupt {
  let interrupted: string | undefined;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) return void note(`${sig}: already stopping (the teardown must run to leave nothing behind)`);
      interrupted = sig;
      note(`${sig}: stopping; the teardown follows the step in progress`);
      // The tools go at once (what waits on them fails); a CLI call in progress ends by itself.
      void stopTools();
    });
  }
  return {
    checkpoint: () => {
      if (interrupted) throw new Error(`interrupted by ${interrupted}`);
    },
    signal: () => interrupted,
  };
}
