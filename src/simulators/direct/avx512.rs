//! The AVX-512F fused pass of a B = 1 step: generation of x_{t+1}, the pending rank-one update
//! of step t and the projections λ, ν in one sweep over the weight rows, sixteen numbers at a time.
//!
//! Why: the AVX2 step generates a 512-number chunk of x and then streams the rows past it, so the
//! core alternates between arithmetic-bound generation and load-bound streaming. Here each block of
//! 16 Gaussians is generated one block ahead of the updates and dot products of every row that
//! consume it (passing through L1, where it is stored as x_{t+1} anyway), so the out-of-order core
//! overlaps the generator's arithmetic with the row loads and stores. (Software prefetching of the
//! rows was measured and made no difference: with at most 8 rows the hardware prefetchers keep up.)
//!
//! Bit-identical to the AVX2 path ([`super::avx2`] kernels over chunks of [`CHUNK`] numbers, with
//! the generator's [`crate::rng::FastNormal::fill`]): the generator is the same stream; a row's 8
//! lanes (element j into lane j mod 8) live in one zmm register instead of two ymm registers and
//! receive the same FMAs in the same order; as in the AVX2 kernels, each chunk's products are summed
//! from zero in a partial register that is added to the row's [`super::kernel::Acc`] at the end of the chunk, and
//! the last chunk's tail (N not a multiple of 8) follows the AVX2 kernels' 4-wide and scalar steps.
//! The update is w ← c·x_t + w (or c·x_t + decay·w) with one FMA, as in [`super::avx2`].
#![cfg(target_arch = "x86_64")]

use super::traverse::{Pass, Update, CHUNK};
use crate::rng::{avx512 as gen, Generator, ZigPending, NORMAL_BLOCK, NORMAL_LANES};
use std::arch::x86_64::*;

/// The most rows (p + p*) the pass takes: their partial sums stay in registers. With more rows,
/// the many concurrent row streams of a block-by-block pass are slower than the chunk-then-rows
/// order of the other traversals (docs/performance.md), which the simulator then uses.
pub const MAX_ROWS: usize = 8;

/// The updated 8 numbers of a student row segment (see [`Update`]).
#[inline(always)]
unsafe fn updated<const U: u8>(wv: __m512d, xp: __m512d, c: __m512d, d: __m512d) -> __m512d {
    match U {
        0 => wv,
        1 => _mm512_fmadd_pd(c, xp, wv),
        _ => _mm512_fmadd_pd(c, xp, _mm512_mul_pd(d, wv)),
    }
}

/// The pass, generic over the update (U: 0 none, 1 plain, 2 decay); `part` holds the p + k
/// partial sums of the current chunk. Inlined into fixed-size callers, where the row loops unroll
/// and the partial sums stay in registers.
#[inline(always)]
unsafe fn pass<const U: u8, const Z: bool>(a: &Pass, st: &mut [__m512i; 4], p: usize, k: usize, part: &mut [__m512d]) {
    let n = a.end;
    let d = _mm512_set1_pd(a.decay);
    let zero = _mm512_setzero_pd();
    // A local copy of the coefficients: the compiler cannot tell that the raw row stores leave
    // `a.c` unchanged, and would reload and re-broadcast c_r in every block.
    let mut cv = [0.0f64; MAX_ROWS];
    if U != 0 {
        for r in 0..p {
            cv[r] = *a.c.add(r);
        }
    }
    // Software-pipelined by one block: block g = i + 1 is generated (and stored to x_{t+1})
    // before the rows consume block i, which they load back from L1. The rows' loads and FMAs
    // thus find their x ready and leave the schedulers at once instead of waiting there behind
    // the Box–Muller chain, and x need not stay in registers between the two, which leaves the
    // generator's constants in registers (the variants measured are in docs/performance.md).
    // Blocks are still generated, and consumed, in order; the last, partial block is generated
    // by the time `tail` needs it, since every full block generates one.
    let blocks = n.div_ceil(NORMAL_BLOCK);
    let mut g = a.begin / NORMAL_BLOCK;
    let mut pend = ZigPending::new();
    generate::<Z>(a, st, &mut g, blocks, &mut pend);
    let mut j0 = a.begin;
    while j0 < n {
        let len = CHUNK.min(n - j0);
        for q in part.iter_mut() {
            *q = zero;
        }
        let end16 = j0 + len / NORMAL_BLOCK * NORMAL_BLOCK;
        let mut j = j0;
        while j < end16 {
            generate::<Z>(a, st, &mut g, blocks, &mut pend);
            let (x0, x1) = (_mm512_loadu_pd(a.xn.add(j)), _mm512_loadu_pd(a.xn.add(j + 8)));
            rows::<U>(a, &cv, p, k, d, part, j, x0, x1);
            j += NORMAL_BLOCK;
        }
        if end16 < j0 + len {
            if Z {
                pend.complete();
            }
            tail::<U>(a, p, k, part, j0, j, j0 + len);
        } else {
            add_partials(a, p + k, part);
        }
        j0 += len;
    }
    if Z {
        pend.complete();
    }
}

/// Generates block g of x_{t+1} into `a.xn` and advances g, unless all `blocks` are done (the
/// generator makes whole blocks: `xn` is padded to a multiple of 16, see `step_pass`). `Z`: the
/// ziggurat stream, else Box–Muller (see [`crate::rng::Generator`]). A ziggurat block is left in
/// `pend` with its rejected numbers to complete: the next call completes it (so block g − 1 is
/// whole when the rows consume it, after this call), or [`ZigPending::complete`]. (A
/// function rather than a closure: closures do not inherit the caller's target features, and an
/// AVX-512 closure compiled without them runs ~30× slower.)
#[inline(always)]
unsafe fn generate<const Z: bool>(
    a: &Pass,
    st: &mut [__m512i; 4],
    g: &mut usize,
    blocks: usize,
    pend: &mut ZigPending,
) {
    if *g < blocks {
        let out = a.xn.add(*g * NORMAL_BLOCK);
        if Z {
            gen::zig_block(st, out, pend);
        } else {
            let (y0, y1) = gen::next_block(st);
            _mm512_storeu_pd(out, y0);
            _mm512_storeu_pd(out.add(8), y1);
        }
        *g += 1;
    } else if Z {
        pend.complete();
    }
}

/// The 16 numbers j..j+16 of every row: update the student rows with x_t (U ≠ 0), then
/// part_r += w_r[j..j+8]·x0 and part_r += w_r[j+8..j+16]·x1 (lane by lane, in this order).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn rows<const U: u8>(
    a: &Pass,
    cv: &[f64; MAX_ROWS],
    p: usize,
    k: usize,
    d: __m512d,
    part: &mut [__m512d],
    j: usize,
    x0: __m512d,
    x1: __m512d,
) {
    let n = a.n;
    let (p0, p1) = if U != 0 {
        (_mm512_loadu_pd(a.xp.add(j)), _mm512_loadu_pd(a.xp.add(j + 8)))
    } else {
        (_mm512_setzero_pd(), _mm512_setzero_pd())
    };
    for r in 0..p {
        let row = a.w.add(r * n + j);
        let cr = _mm512_set1_pd(*cv.get_unchecked(r));
        let w0 = updated::<U>(_mm512_loadu_pd(row), p0, cr, d);
        let w1 = updated::<U>(_mm512_loadu_pd(row.add(8)), p1, cr, d);
        if U != 0 {
            _mm512_storeu_pd(row, w0);
            _mm512_storeu_pd(row.add(8), w1);
        }
        let q = part.get_unchecked_mut(r);
        *q = _mm512_fmadd_pd(w1, x1, _mm512_fmadd_pd(w0, x0, *q));
    }
    for r in 0..k {
        let row = a.ws.add(r * n + j);
        let q = part.get_unchecked_mut(p + r);
        *q = _mm512_fmadd_pd(
            _mm512_loadu_pd(row.add(8)),
            x1,
            _mm512_fmadd_pd(_mm512_loadu_pd(row), x0, *q),
        );
    }
}

/// acc_r += part_r for every row (the end of a chunk, as `add_to` in the AVX2 kernels).
#[inline(always)]
unsafe fn add_partials(a: &Pass, rows: usize, part: &[__m512d]) {
    for r in 0..rows {
        let acc = (*a.acc.add(r)).as_mut_ptr();
        _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), *part.get_unchecked(r)));
    }
}

/// The last, partial block of the last chunk (elements j..end, fewer than 16; already generated
/// into x_{t+1} by [`pass`]), in the AVX2 kernels' order: a full group of 8 if there is one, then
/// a group of 4 into lanes 0–3 of the partial sums, then the partial sums are added to the
/// accumulators, then the remaining elements one by one (scalar FMAs into lane t mod 8 of the
/// accumulators).
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn tail<const U: u8>(a: &Pass, p: usize, k: usize, part: &mut [__m512d], j0: usize, mut j: usize, end: usize) {
    let n = a.n;
    let d = _mm512_set1_pd(a.decay);
    if end - j >= 8 {
        tail_step::<U>(a, p, k, d, part, j, 0xFF);
        j += 8;
    }
    if end - j >= 4 {
        tail_step::<U>(a, p, k, d, part, j, 0x0F);
        j += 4;
    }
    add_partials(a, p + k, part);
    for t in j..end {
        let lane = (t - j0) % NORMAL_LANES;
        let (xn, xp) = (*a.xn.add(t), *a.xp.add(t));
        for r in 0..p {
            let wp = a.w.add(r * n + t);
            if U != 0 {
                let base = if U == 2 { a.decay * *wp } else { *wp };
                *wp = (*a.c.add(r)).mul_add(xp, base);
            }
            let acc = &mut *a.acc.add(r);
            acc[lane] = (*wp).mul_add(xn, acc[lane]);
        }
        for r in 0..k {
            let acc = &mut *a.acc.add(p + r);
            acc[lane] = (*a.ws.add(r * n + t)).mul_add(xn, acc[lane]);
        }
    }
}

/// One vector step of [`tail`] over the rows at element j: `mask` selects the lanes (all 8, or
/// 0–3); the other lanes of the rows and of the partial sums are left untouched.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tail_step<const U: u8>(
    a: &Pass,
    p: usize,
    k: usize,
    d: __m512d,
    part: &mut [__m512d],
    j: usize,
    mask: __mmask8,
) {
    let n = a.n;
    let x = _mm512_maskz_loadu_pd(mask, a.xn.add(j));
    let xp = if U != 0 {
        _mm512_maskz_loadu_pd(mask, a.xp.add(j))
    } else {
        _mm512_setzero_pd()
    };
    for r in 0..p {
        let row = a.w.add(r * n + j);
        let cr = _mm512_set1_pd(if U != 0 { *a.c.add(r) } else { 0.0 });
        let wv = updated::<U>(_mm512_maskz_loadu_pd(mask, row), xp, cr, d);
        if U != 0 {
            _mm512_mask_storeu_pd(row, mask, wv);
        }
        let q = part.get_unchecked_mut(r);
        *q = _mm512_mask3_fmadd_pd(wv, x, *q, mask);
    }
    for r in 0..k {
        let row = a.ws.add(r * n + j);
        let q = part.get_unchecked_mut(p + r);
        *q = _mm512_mask3_fmadd_pd(_mm512_maskz_loadu_pd(mask, row), x, *q, mask);
    }
}

/// The pass for a fixed number of rows: the partial sums are a local array the compiler keeps in
/// registers.
#[target_feature(enable = "avx512f")]
unsafe fn fixed<const P: usize, const K: usize, const U: u8, const Z: bool>(
    a: &Pass,
    state: &mut [[u64; NORMAL_LANES]; 4],
) {
    let mut part = [_mm512_setzero_pd(); MAX_ROWS];
    let mut st = gen::load_state(state);
    pass::<U, Z>(a, &mut st, P, K, &mut part[..P + K]);
    gen::store_state(state, &st);
}

/// The pass for other numbers of rows up to [`MAX_ROWS`] (row loops not unrolled).
#[target_feature(enable = "avx512f")]
unsafe fn any<const U: u8, const Z: bool>(a: &Pass, state: &mut [[u64; NORMAL_LANES]; 4]) {
    let mut part = [_mm512_setzero_pd(); MAX_ROWS];
    let mut st = gen::load_state(state);
    pass::<U, Z>(a, &mut st, a.p, a.k, &mut part[..a.p + a.k]);
    gen::store_state(state, &st);
}

/// The fused pass of one B = 1 step over the columns `a.begin..a.end` (all N of them, or a
/// segment of a split step; see the module documentation and `DirectSimulator::step_fused`):
/// generates x_{t+1}[begin..end] from the generator state `gen_state` (the stream's state at block
/// begin/16, advanced exactly as `FastNormal::fill` on the ⌈end/16⌉ − begin/16 blocks would),
/// applies the pending update w_r ← c_r·x_t + decay·w_r (`a.update`) to those columns of the p
/// student rows and accumulates, in lane j mod 8 of `acc[r]`, the products w_r[j]·x_{t+1}[j] of the
/// p updated student rows and then the k teacher rows.
///
/// # Safety
/// The CPU must support AVX-512F; the pointers of `a` must be valid for the extents documented
/// on [`Pass`] (`w` p × n, `ws` k × n, `c` p, `xp` ≥ n, `xn` ≥ n rounded up to a multiple of 16,
/// `acc` p + k), with p + k ≤ [`MAX_ROWS`], `a.begin` a multiple of [`CHUNK`], `a.end ≤ a.n`;
/// nothing else may access the columns `begin..end` of the rows and of x_{t+1}, or the
/// accumulators, meanwhile.
pub(crate) unsafe fn run(a: &Pass, gen_state: &mut [[u64; NORMAL_LANES]; 4]) {
    debug_assert!(a.p + a.k <= MAX_ROWS && a.begin.is_multiple_of(CHUNK) && a.begin <= a.end && a.end <= a.n);
    macro_rules! go {
        ($u:literal, $z:literal) => {
            match (a.p, a.k) {
                (1, 1) => fixed::<1, 1, $u, $z>(a, gen_state),
                (2, 1) => fixed::<2, 1, $u, $z>(a, gen_state),
                (2, 2) => fixed::<2, 2, $u, $z>(a, gen_state),
                (4, 4) => fixed::<4, 4, $u, $z>(a, gen_state),
                _ => any::<$u, $z>(a, gen_state),
            }
        };
    }
    match (a.update, a.generator) {
        (Update::None, Generator::Ziggurat) => go!(0, true),
        (Update::Plain, Generator::Ziggurat) => go!(1, true),
        (Update::Decay, Generator::Ziggurat) => go!(2, true),
        (Update::None, Generator::BoxMuller) => go!(0, false),
        (Update::Plain, Generator::BoxMuller) => go!(1, false),
        (Update::Decay, Generator::BoxMuller) => go!(2, false),
    }
}
