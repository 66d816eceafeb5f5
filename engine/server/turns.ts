/**
 * Turns on the model: one evaluation at a time, first come first served. A generation queues for each step (its
 * prompt, then every token), so concurrent generations alternate token by token instead of one running to its end
 * while the others wait; the model's eval is never entered twice at once.
 */
export class TurnQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  /** Runs `step` after every step queued before it. */
  run<T>(step: () => Promise<T>): Promise<T> {
    this.waiting++;
    const p = this.tail.then(() => {
      this.waiting--;
      return step();
    });
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Steps queued and not yet started. */
  get queued(): number {
    return this.waiting;
  }

  /** The scheduling function for GenerateOptions.schedule. */
  readonly schedule = <T>(step: () => Promise<T>): Promise<T> => this.run(step);
}

/**
 * At most `limit` generations at once (each holds a session and its KV cache); later requests wait first come,
 * first served. A waiter whose signal aborts (its client went away) leaves the line.
 */
export class Slots {
  private used = 0;
  private readonly line: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Resolves with the function that frees the slot; rejects with the signal's reason if it aborts first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    let freed = false;
    const release = () => {
      if (freed) return;
      freed = true;
      const next = this.line.shift();
      if (next) next(); // the slot passes straight to the next waiter
      else this.used--;
    };
    if (this.used < this.limit) {
      this.used++;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(release);
      };
      const onAbort = () => {
        const i = this.line.indexOf(grant);
        if (i >= 0) this.line.splice(i, 1);
        reject(signal!.reason);
      };
      if (signal?.aborted) { reject(signal.reason); return; }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.line.push(grant);
    });
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.line.length;
  }
}
