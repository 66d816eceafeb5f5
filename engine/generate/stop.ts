/**
 * Stop strings over streamed text: text is released as soon as it can no longer be the start of a stop string,
 * and generation ends at the first complete match (the match itself is not emitted).
 */
export class StopMatcher {
  private pending = '';
  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what can be released now and whether a stop string was completed. */
  push(text: string): { text: string; stopped: boolean } {
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return { text: out, stopped: true };
    }
    // Hold back the longest tail that is a proper prefix of some stop string.
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) { hold = k; break; }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text: out, stopped: false };
  }

  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }
}
