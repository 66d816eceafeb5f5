// exp for f32, as a SIMD version and a scalar twin that perform the same f32 operations lane for lane, so they agree
// bit for bit. Used by softmax, where the exp was the largest cost of attention (a library expf per score).
//
// exp(x) = 2^n * exp(r), n = nearest(x / ln2), r = x - n*ln2 with ln2 split in two parts (Cody-Waite) so that r is
// accurate; exp(r) on |r| <= ln2/2 by its Taylor polynomial to degree 7 (truncation < 1e-8 relative), in Horner form.
// The result is (2p) * 2^(n-1), with 2^(n-1) built in the exponent bits: for x in [-86.6, 88.72], n - 1 lies in
// [-126, 127], so the power of two is a normal number. Below -86.6 the result is 0 (exp < 2.4e-38 there), above 88.72
// it is +inf (exp(88.7228) is the f32 maximum), NaN stays NaN. Measured error against float64 exp: within 2 ulp
// (test/kernels.test.ts).

const LOG2E: f32 = 1.44269504;
const LN2_HI: f32 = 0.693145751953125; // ln2 rounded to 12 significant bits: n*LN2_HI is exact for |n| < 2^11
const LN2_LO: f32 = 1.428606765330187e-6; // ln2 - LN2_HI
const X_MIN: f32 = -86.6;
const X_MAX: f32 = 88.72;
const C2: f32 = 0.5;
const C3: f32 = 0.16666667;
const C4: f32 = 0.041666668;
const C5: f32 = 0.008333334;
const C6: f32 = 0.0013888889;
const C7: f32 = 0.00019841270;

/** Scalar twin of exp_f32x4. */
@inline export function exp_f32(x: f32): f32 {
  if (isNaN(x)) return x;
  if (x < X_MIN) return 0;
  if (x > X_MAX) return Infinity;
  const c = x;
  const n = nearest(c * LOG2E);
  const r = (c - n * LN2_HI) - n * LN2_LO;
  let p = C7;
  p = p * r + C6;
  p = p * r + C5;
  p = p * r + C4;
  p = p * r + C3;
  p = p * r + C2;
  p = p * r + <f32>1;
  p = p * r + <f32>1;
  return (p + p) * reinterpret<f32>((<i32>n + 126) << 23);
}

/** exp of 4 lanes. */
@inline export function exp_f32x4(x: v128): v128 {
  const keep = f32x4.ge(x, f32x4.splat(X_MIN)); // false for NaN and for x < X_MIN
  const nan = f32x4.ne(x, x);
  const big = f32x4.gt(x, f32x4.splat(X_MAX));
  const c = f32x4.min(f32x4.max(x, f32x4.splat(X_MIN)), f32x4.splat(X_MAX));
  const n = f32x4.nearest(f32x4.mul(c, f32x4.splat(LOG2E)));
  const r = f32x4.sub(f32x4.sub(c, f32x4.mul(n, f32x4.splat(LN2_HI))), f32x4.mul(n, f32x4.splat(LN2_LO)));
  let p = f32x4.splat(C7);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(C6));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(C5));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(C4));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(C3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(C2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(126)), 23);
  const e = v128.and(f32x4.mul(f32x4.add(p, p), scale), keep);
  return v128.bitselect(x, v128.bitselect(f32x4.splat(Infinity), e, big), nan);
}

/** exp of n f32 at src into dst (may alias); the scalar twin below does the same per element. */
export function exp_f32_array(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + (<usize>i << 2), exp_f32x4(v128.load(src + (<usize>i << 2))));
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), exp_f32(load<f32>(src + (<usize>i << 2))));
}

export function exp_f32_array_scalar(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), exp_f32(load<f32>(src + (<usize>i << 2))));
}
