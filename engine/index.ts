/** bmc-llm: GGUF Llama inference in TypeScript + WebAssembly. */
export { loadModel, Model, planMemory, resolveSource } from './model.js';
export type { LoadOptions, SessionOptions, ModelInfo, ModelSource, ProgressInfo, MemoryPlan, TensorSummary } from './model.js';
export { Session } from './session.js';
export type { EvalOptions } from './session.js';
export type { GenerateOptions, Generation, GenerationPiece, GenerationStats, SpeculationStats, StopReason } from './generate/generate.js';
export type { DraftOptions } from './spec/options.js';
export type { Draft, Drafter } from './spec/drafter.js';
export { PromptLookupDrafter } from './spec/lookup.js';
export { ControlledDrafter } from './spec/controlled.js';
export type { SamplingOptions, TokenDist } from './generate/sampling.js';
export type { KVOptions, KVPolicyName } from './kv/options.js';
export { parseKVFlag } from './kv/options.js';
export type { KVStats, KVGrowthRule } from './kv/cache.js';
export { BmcError, GGUFFormatError, UnsupportedError, OptionError, OutOfMemoryError, SourceError, DisposedError, VocabMismatchError } from './errors.js';
export { readGGUFHeader } from './gguf/reader.js';
export type { GGUFHeader, GGUFTensorInfo, GGUFValue } from './gguf/reader.js';
export { blobSource, bytesSource, streamSource, responseSource, urlSource } from './gguf/source.js';
export type { ByteSource } from './gguf/source.js';
