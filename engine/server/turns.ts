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
