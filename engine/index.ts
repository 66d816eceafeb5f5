/** bmc-llm: GGUF Llama inference in TypeScript + WebAssembly. */
export { loadModel, Model, planMemory, resolveSource } from './model.js';
export type { LoadOptions, ModelInfo, ModelSource, ProgressInfo, MemoryPlan, TensorSummary } from './model.js';
export { Session } from './session.js';
export type { EvalOptions } from './session.js';
export type { GenerateOptions, Generation, GenerationPiece, GenerationStats, StopReason } from './generate/generate.js';
export type { SamplingOptions } from './generate/sampling.js';
export type { KVOptions, KVPolicyName } from './kv/options.js';
export { parseKVFlag } from './kv/options.js';
export type { KVStats, KVGrowthRule } from './kv/cache.js';
export { BmcError, GGUFFormatError, UnsupportedError, OptionError, OutOfMemoryError, SourceError, DisposedError } from './errors.js';
export { readGGUFHeader } from './gguf/reader.js';
export { createOpenAIServer } from './server/openai.js';
export type { OpenAIServer, ServerOptions } from './server/openai.js';
export { ChatTemplate, DEFAULT_CHAT_TEMPLATE } from './chat/template.js';
export type { ChatMessage } from './chat/template.js';
export type { GGUFHeader, GGUFTensorInfo, GGUFValue } from './gguf/reader.js';
export { bytesSource, streamSource, responseSource, urlSource } from './gguf/source.js';
export type { ByteSource } from './gguf/source.js';
