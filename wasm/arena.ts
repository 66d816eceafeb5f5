// Arena allocator over the single imported linear memory.
//
// All allocator state lives in linear memory (a 64-byte header right after __heap_base), never in wasm
// globals, so that several instances sharing one memory (threads, later) see the same arena.
//
// Layout: [header][block][block]...[block] top ... memory end.
// Every block starts with a 16-byte block header followed by its payload:
//   +0  u32 size       total block size in bytes including this header, a multiple of 16; bit 0 = in use
//   +4  u32 prevPhys   address of the physically previous block (0 for the first one)
//   +8  u32 nextFree   free-list links (meaningful only while the block is free)
//   +12 u32 prevFree
// Invariants: free blocks are never physically adjacent (they are coalesced on free), and the last block
// before `top` is always in use (a freed last block is handed back to the untouched tail), so alloc/free
// cycles do not creep upward. Sizes and addresses are u32 (memory may reach 4 GiB - 64 KiB); sums that
// could overflow are computed in u64.

const HDR_BASE: u32 = 0; // u32 address of the first block
const HDR_TOP: u32 = 4; // u32 end of the last block = start of the untouched tail
const HDR_LAST: u32 = 8; // u32 address of the last block (0 if none)
const HDR_FREE: u32 = 12; // u32 head of the free list (0 if empty)
const HDR_LIMIT_END: u32 = 16; // u64 highest address `top` may reach
const HDR_IN_USE: u32 = 24; // f64 payload bytes in use
const HDR_PEAK: u32 = 32; // f64 peak of in-use
const HDR_ALLOCS: u32 = 40; // f64 number of successful allocs
const HDR_FREES: u32 = 48; // f64 number of frees
const HDR_COPIED: u32 = 56; // f64 bytes moved by arena_copy (KV growth copies)
const HDR_SIZE: u32 = 64;

const BLOCK_HDR: u32 = 16;
const USED: u32 = 1;
const PAGE: u64 = 65536;
const MAX_END: u64 = 65535 * PAGE; // 4 GiB - 64 KiB: keeps every address and size representable in u32

@inline function hdr(): usize {
  return (__heap_base + 63) & ~(<usize>63);
}

@inline function bSize(b: usize): u32 { return load<u32>(b) & ~USED; }
@inline function bUsed(b: usize): bool { return (load<u32>(b) & USED) != 0; }
@inline function bPrev(b: usize): usize { return load<u32>(b, 4); }
@inline function setBlock(b: usize, size: u32, used: bool, prevPhys: usize): void {
  store<u32>(b, size | (used ? USED : 0));
  store<u32>(b, <u32>prevPhys, 4);
}

function freeListPush(b: usize): void {
  const h = hdr();
  const head = load<u32>(h, HDR_FREE);
  store<u32>(b, head, 8);
  store<u32>(b, 0, 12);
  if (head != 0) store<u32>(head, <u32>b, 12);
  store<u32>(h, <u32>b, HDR_FREE);
}

function freeListRemove(b: usize): void {
  const next = load<u32>(b, 8);
  const prev = load<u32>(b, 12);
  if (prev != 0) store<u32>(prev, next, 8);
  else store<u32>(hdr(), next, HDR_FREE);
  if (next != 0) store<u32>(next, prev, 12);
}

/** Sets up the arena header after __heap_base and forgets every previous allocation.
 *  limit_bytes (as u32): most bytes the arena may span; 0 = as far as memory can grow (4 GiB - 64 KiB). */
export function arena_init(limit_bytes: u32): void {
  const h = hdr();
  const base: usize = h + HDR_SIZE + 48; // so that the first payload (base + 16) is 64-byte aligned
  let limitEnd: u64 = limit_bytes == 0 ? MAX_END : <u64>base + <u64>limit_bytes;
  if (limitEnd > MAX_END) limitEnd = MAX_END;
  const have = <u64>memory.size() * PAGE;
  if (have < <u64>base) memory.grow(<i32>((<u64>base - have + PAGE - 1) / PAGE));
  store<u32>(h, <u32>base, HDR_BASE);
  store<u32>(h, <u32>base, HDR_TOP);
  store<u32>(h, 0, HDR_LAST);
  store<u32>(h, 0, HDR_FREE);
  store<u64>(h, limitEnd, HDR_LIMIT_END);
  store<f64>(h, 0, HDR_IN_USE);
  store<f64>(h, 0, HDR_PEAK);
  store<f64>(h, 0, HDR_ALLOCS);
  store<f64>(h, 0, HDR_FREES);
  store<f64>(h, 0, HDR_COPIED);
}

function noteAlloc(payload: u32): void {
  const h = hdr();
  const inUse = load<f64>(h, HDR_IN_USE) + <f64>payload;
  store<f64>(h, inUse, HDR_IN_USE);
  if (inUse > load<f64>(h, HDR_PEAK)) store<f64>(h, inUse, HDR_PEAK);
  store<f64>(h, load<f64>(h, HDR_ALLOCS) + 1, HDR_ALLOCS);
}

/** Carves a used block of `need` bytes (header included) whose payload starts at `p`, out of free block `b`.
 *  The leading gap (if any) stays a free block; a trailing remainder becomes a new free block. */
function carveFree(b: usize, p: usize, need: u32): void {
  const size = bSize(b);
  const nb: usize = p - BLOCK_HDR;
  const gap = <u32>(nb - b);
  const rest = size - gap - need;
  const after: usize = b + size; // physically next block (always in use, never the tail)
  if (gap == 0) freeListRemove(b);
  else setBlock(b, gap, false, bPrev(b)); // still linked in the free list, now smaller
  setBlock(nb, need, true, gap == 0 ? bPrev(b) : b);
  let nextPrev: usize = nb;
  if (rest != 0) {
    const rb: usize = nb + need;
    setBlock(rb, rest, false, nb);
    freeListPush(rb);
    nextPrev = rb;
  }
  store<u32>(after, <u32>nextPrev, 4);
}

/** Allocates `size` bytes aligned to `align` (a power of two, at least 16 is used). Returns the address, or 0
 *  when the arena limit would be exceeded or memory cannot grow. Contents are undefined (zero only when fresh). */
export function arena_alloc(size: u32, align: u32): usize {
  if (align < 16) align = 16;
  if ((align & (align - 1)) != 0) return 0;
  const payload64: u64 = (<u64>(size == 0 ? 1 : size) + 15) & ~(<u64>15);
  if (payload64 + <u64>BLOCK_HDR > MAX_END) return 0;
  const need = <u32>(payload64 + BLOCK_HDR);
  const amask: usize = align - 1;
  const h = hdr();

  // 1. First fit in the free list.
  let b: usize = load<u32>(h, HDR_FREE);
  while (b != 0) {
    const bsize = bSize(b);
    const p: u64 = (<u64>b + BLOCK_HDR + <u64>amask) & ~(<u64>amask);
    if (p - BLOCK_HDR + <u64>need <= <u64>b + <u64>bsize) {
      carveFree(b, <usize>p, need);
      noteAlloc(need - BLOCK_HDR);
      return <usize>p;
    }
    b = load<u32>(b, 8);
  }

  // 2. Extend from the untouched tail.
  const top: usize = load<u32>(h, HDR_TOP);
  const p: u64 = (<u64>top + BLOCK_HDR + <u64>amask) & ~(<u64>amask);
  const newTop: u64 = p + payload64;
  if (newTop > load<u64>(h, HDR_LIMIT_END)) return 0;
  const have: u64 = <u64>memory.size() * PAGE;
  if (newTop > have) {
    // Grow in large steps (at least 1/8 of the memory or 16 MiB, within the limit): every memory.grow replaces the
    // JS ArrayBuffer and costs V8 a garbage collection, and a cache growing a few rows at a time would grow on most steps.
    const needPages = <i32>((newTop - have + PAGE - 1) / PAGE);
    const cur = memory.size();
    const maxPages = <i32>min<u64>((load<u64>(h, HDR_LIMIT_END) + PAGE - 1) / PAGE, 65536);
    const want = min(max(needPages, max(cur >> 3, 256)), maxPages - cur);
    if (want < needPages || memory.grow(want) < 0) {
      if (memory.grow(needPages) < 0) return 0;
    }
  }
  let prev: usize = load<u32>(h, HDR_LAST);
  const nb: usize = <usize>(p - BLOCK_HDR);
  if (nb != top) { // alignment gap at the tail becomes a free block
    setBlock(top, <u32>(nb - top), false, prev);
    freeListPush(top);
    prev = top;
  }
  setBlock(nb, need, true, prev);
  store<u32>(h, <u32>nb, HDR_LAST);
  store<u32>(h, <u32>newTop, HDR_TOP);
  noteAlloc(need - BLOCK_HDR);
  return <usize>p;
}

/** Frees a block returned by arena_alloc (0 is ignored). Coalesces with free neighbours; a free block that
 *  ends at the top goes back to the untouched tail. */
export function arena_free(ptr: usize): void {
  if (ptr == 0) return;
  const h = hdr();
  let b: usize = ptr - BLOCK_HDR;
  if (!bUsed(b)) return; // double free: ignore rather than corrupt the lists
  let size = bSize(b);
  store<f64>(h, load<f64>(h, HDR_IN_USE) - <f64>(size - BLOCK_HDR), HDR_IN_USE);
  store<f64>(h, load<f64>(h, HDR_FREES) + 1, HDR_FREES);
  const top: usize = load<u32>(h, HDR_TOP);

  let next: usize = b + size;
  if (next < top && !bUsed(next)) { // merge the next block into this one
    freeListRemove(next);
    size += bSize(next);
    next = b + size;
  }
  const prev = bPrev(b);
  if (prev != 0 && !bUsed(prev)) { // merge this block into the previous one
    freeListRemove(prev);
    size += bSize(prev);
    b = prev;
  }
  if (next >= top) { // last block: give it back to the tail (its previous block is in use by the invariant)
    store<u32>(h, <u32>b, HDR_TOP);
    store<u32>(h, <u32>bPrev(b), HDR_LAST);
    return;
  }
  setBlock(b, size, false, bPrev(b));
  freeListPush(b);
  store<u32>(next, <u32>b, 4);
}

/** Usable payload bytes of an allocated block (at least the size asked for). */
export function arena_size_of(ptr: usize): u32 {
  return ptr == 0 ? 0 : bSize(ptr - BLOCK_HDR) - BLOCK_HDR;
}

export function arena_bytes_in_use(): f64 { return load<f64>(hdr(), HDR_IN_USE); }
export function arena_bytes_peak(): f64 { return load<f64>(hdr(), HDR_PEAK); }
/** Bytes of linear memory the arena currently spans (from its base to the top of its last block). */
export function arena_bytes_reserved(): f64 {
  const h = hdr();
  return <f64>(load<u32>(h, HDR_TOP) - load<u32>(h, HDR_BASE));
}
export function arena_alloc_count(): f64 { return load<f64>(hdr(), HDR_ALLOCS); }
export function arena_free_count(): f64 { return load<f64>(hdr(), HDR_FREES); }
export function arena_reset_peak(): void {
  const h = hdr();
  store<f64>(h, load<f64>(h, HDR_IN_USE), HDR_PEAK);
}
/** Most bytes the arena may span (the effective limit after arena_init). */
export function arena_limit(): f64 {
  const h = hdr();
  return <f64>(load<u64>(h, HDR_LIMIT_END) - <u64>load<u32>(h, HDR_BASE));
}

/** Copies n bytes from src to dst (memory.copy, overlap allowed) and adds n to the arena's copied-bytes counter.
 *  Used for KV cache growth (moving live rows to a larger block), so that the copy traffic a policy causes can be
 *  read back with arena_bytes_copied. */
export function arena_copy(dst: usize, src: usize, n: usize): void {
  memory.copy(dst, src, n);
  const h = hdr();
  store<f64>(h, load<f64>(h, HDR_COPIED) + <f64>n, HDR_COPIED);
}
export function arena_bytes_copied(): f64 { return load<f64>(hdr(), HDR_COPIED); }
