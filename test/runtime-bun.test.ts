/** Bun (npm package `bun`) runs the one-file CLI and the library build. */
import { runtimeSuite } from './runtimes/runtime-suite.js';

runtimeSuite('bun');
