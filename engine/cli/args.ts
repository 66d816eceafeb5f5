/** A small, strict argument parser: every flag is declared with its type; unknown flags and bad values are errors. */
import { OptionError } from '../errors.js';

export type FlagType = 'string' | 'int' | 'number' | 'bool';
export interface FlagSpec { name: string; short?: string; type: FlagType; help: string }

export function parseArgs(argv: string[], specs: FlagSpec[]): { flags: Record<string, string | number | boolean>; positional: string[] } {
  const flags: Record<string, string | number | boolean> = {};
  const positional: string[] = [];
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    byName.set(`--${s.name}`, s);
    if (s.short) byName.set(`-${s.short}`, s);
  }
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i]!;
    if (a === '--') { positional.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('-') || a === '-') { positional.push(a); continue; }
    let inline: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { inline = a.slice(eq + 1); a = a.slice(0, eq); }
    const spec = byName.get(a);
    if (!spec) throw new OptionError(a, 'unknown option (see --help)');
    if (spec.type === 'bool') { flags[spec.name] = true; continue; }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new OptionError(`--${spec.name}`, 'needs a value');
    if (spec.type === 'string') flags[spec.name] = raw;
    else {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v) || (spec.type === 'int' && !Number.isInteger(v))) {
        throw new OptionError(`--${spec.name}`, `"${raw}" is not ${spec.type === 'int' ? 'an integer' : 'a number'}`);
      }
      flags[spec.name] = v;
    }
  }
  return { flags, positional };
}

export function helpText(specs: FlagSpec[]): string {
  return specs.map((s) => `  ${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : ` <${s.type === 'string' ? 'text' : s.type}>`}`.padEnd(34) + s.help).join('\n');
}
