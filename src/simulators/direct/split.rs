//! The split step: one run's N columns on several threads, with the numbers of a single thread.
//!
//! When a study has fewer runs than cores (one run at large N, say), seeds alone cannot fill the
//! machine. The AVX-512 fused pass of a B = 1 step is then cut into column segments, each a whole
//! number of [`CHUNK`]s, run in parallel:
//! * the input stream is sequential, so segment s starts from the step's generator state advanced
//!   by the blocks before it, with a jump-ahead ([`crate::rng::jump`]: 256 generator steps,
//!   whatever the distance) instead of generating them;
//! * the projections are sums over chunks, accumulated in chunk order: segment 0 accumulates into
//!   the step's accumulators as the single-thread pass does; the other segments keep each chunk's
//!   partial sums apart, and after the join they are added in chunk order, the same additions in
//!   the same order (0 + part = part exactly: the accumulators never hold −0, since they start at
//!   +0, so adding a partial sum that is −0 or its +0 image gives the same result);
//! * the final chunk, whose tail (N not a multiple of 16) adds scalar products straight into the
//!   accumulators, runs after the join on the calling thread, from the last segment's end state.
//!
//! So a split run is bit-identical to the unsplit one (tested), and results do not depend on the
//! number of threads. The pending update touches only each segment's own columns, so segments
//! share nothing they write. Threads come from the current rayon pool (`rayon::join`, no
//! allocation per step); the cost of a split is two jumps' worth of generator steps (~1 µs) and the
//! join per step, so it is used from [`SPLIT_MIN_N`] on.
#![cfg(target_arch = "x86_64")]

use super::avx512::{self, Pass, CHUNK};
use super::kernel::Acc;
use super::Padded;
use crate::rng::{jump::Jump, FastNormal, NORMAL_BLOCK, NORMAL_LANES};

/// Smallest N for which [`super::DirectSimulator::with_split`] splits a step: below it the join
/// and the jumps cost more than half a step saves (measured: docs/performance.md).
pub const SPLIT_MIN_N: usize = 32_768;

/// Generator state of the eight lanes (the layout of [`FastNormal`]).
type State = [[u64; NORMAL_LANES]; 4];

/// One segment: columns `begin..end` (whole chunks), the jump from the step's first block to
/// its own, its generator state at the end.
#[derive(Debug, Clone)]
struct Segment {
    begin: usize,
    end: usize,
    jump: Jump,
    end_state: State,
}

/// A split of the fused pass into segments (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Split {
    segments: Vec<Segment>,
    /// Per-chunk partial sums of segments 1.. (p + p* accumulators per chunk, chunk order).
    parts: Padded<Acc>,
    /// The first column of the final chunk.
    last: usize,
}

/// A raw pointer that may cross threads (each thread writes only its own part of what it points
/// to, see [`Split::step`]).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: see the type's documentation.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl Split {
    /// A split of N columns with `rows` = p + p* accumulators into at most `threads` segments, or
    /// `None` if there is nothing to split (one thread, or N below [`SPLIT_MIN_N`]).
    pub(crate) fn new(n: usize, rows: usize, threads: usize) -> Option<Split> {
        let chunks = n.div_ceil(CHUNK);
        // All chunks but the final one are split.
        let body = chunks - 1;
        let t = threads.min(body);
        if t < 2 || n < SPLIT_MIN_N {
            return None;
        }
        let segments: Vec<Segment> = (0..t)
            .map(|s| {
                let (b, e) = (body * s / t * CHUNK, body * (s + 1) / t * CHUNK);
                Segment {
                    begin: b,
                    end: e,
                    jump: FastNormal::block_jump((b / NORMAL_BLOCK) as u64),
                    end_state: [[0; NORMAL_LANES]; 4],
                }
            })
            .collect();
        let split_chunks = (body * CHUNK - segments[0].end) / CHUNK;
        Some(Split {
            segments,
            parts: Padded::new([0.0; 8], split_chunks * rows),
            last: body * CHUNK,
        })
    }

    /// Number of segments (threads used by a step).
    pub(crate) fn threads(&self) -> usize {
        self.segments.len()
    }

    /// The fused pass `a` (all columns, `a.begin == 0`, `a.end == N`), split; `state` is the
    /// generator state of the step's first block and becomes that after its last block.
    ///
    /// # Safety
    /// As [`avx512::run`] for `a`, and `a.p + a.k` must be the `rows` of [`Split::new`].
    pub(crate) unsafe fn step(&mut self, a: &Pass, state: &mut State) {
        let rows = a.p + a.k;
        let start = *state;
        let first_split = self.segments[0].end;
        let parts = Shared(self.parts.as_mut_ptr());
        run_segments(a, &start, &mut self.segments, 0, first_split, parts, rows);
        // The split chunks' partial sums, in chunk order, lane by lane: as `add_partials`.
        let acc = std::slice::from_raw_parts_mut(a.acc, rows);
        for part in self.parts.chunks_exact(rows) {
            for (acc_r, part_r) in acc.iter_mut().zip(part) {
                for (x, y) in acc_r.iter_mut().zip(part_r) {
                    *x += *y;
                }
            }
        }
        let mut st = self.segments.last().expect("two segments or more").end_state;
        avx512::run(
            &Pass {
                begin: self.last,
                end: a.n,
                ..*a
            },
            &mut st,
        );
        *state = st;
    }
}

/// Runs `segs` (whose first is segment number `index`) in parallel by halving (`rayon::join`).
unsafe fn run_segments(
    a: &Pass,
    start: &State,
    segs: &mut [Segment],
    index: usize,
    first_split: usize,
    parts: Shared<Acc>,
    rows: usize,
) {
    if segs.len() > 1 {
        let (left, right) = segs.split_at_mut(segs.len() / 2);
        let mid = index + left.len();
        let a2 = *a;
        rayon::join(
            || run_segments(&a2, start, left, index, first_split, parts, rows),
            || run_segments(&a2, start, right, mid, first_split, parts, rows),
        );
        return;
    }
    let seg = &mut segs[0];
    let mut st = *start;
    if index == 0 {
        // Segment 0 accumulates straight into the step's accumulators, as the unsplit pass.
        avx512::run(
            &Pass {
                begin: seg.begin,
                end: seg.end,
                ..*a
            },
            &mut st,
        );
    } else {
        seg.jump.apply_lanes(&mut st);
        for c in (seg.begin..seg.end).step_by(CHUNK) {
            let slot = parts.0.add((c - first_split) / CHUNK * rows);
            for r in 0..rows {
                *slot.add(r) = [0.0; 8];
            }
            avx512::run(
                &Pass {
                    begin: c,
                    end: c + CHUNK,
                    acc: slot,
                    ..*a
                },
                &mut st,
            );
        }
    }
    seg.end_state = st;
}
