/** Deno (npm package `deno`) runs the one-file CLI and the library build. */
import { runtimeSuite } from './runtimes/runtime-suite.js';

runtimeSuite('deno');
