//! The split step: one run's N columns on several threads, with the numbers of a single thread.
//!
//! When a study has fewer runs than cores (one run at large N, say), seeds alone cannot fill the
//! machine. A B = 1 step with p + p* ≤ 8 (the AVX-512F fused pass, or the AVX2 chunk loop) is then
//! cut into column segments, each a whole number of [`CHUNK`]s, run in parallel:
//! * the input stream is sequential, so segment s starts from the step's generator state advanced
//!   by the blocks before it, with a jump-ahead ([`crate::rng::jump`]: 256 generator steps,
//!   whatever the distance) instead of generating them;
//! * the projections are sums over chunks, accumulated in chunk order: segment 0 accumulates into
//!   the step's accumulators as the single-thread pass does; the other segments keep each chunk's
//!   partial sums apart, and after the join they are added in chunk order, the same additions in
//!   the same order (0 + part = part exactly: the accumulators never hold −0, since they start at
//!   +0, so adding a partial sum that is −0 or its +0 image gives the same result);
//! * the final chunk, whose tail (N not a multiple of 8) adds scalar products straight into the
//!   accumulators, runs after the join on the calling thread, from the last segment's end state.
//!
//! So a split run is bit-identical to the unsplit one (tested), and results do not depend on the
//! number of threads. The pending update touches only each segment's own columns, so segments
//! share nothing they write. The threads are the simulator's own [`Team`] (busy-waiting between
//! steps; see there why not rayon); the cost of a split is a jump (256 generator steps, ~1 µs)
//! and the hand-over per step, so it is used from [`SPLIT_MIN_N`] on.
#![cfg(target_arch = "x86_64")]

use super::avx512;
use super::kernel::Acc;
use super::team::Team;
use super::traverse::{Pass, CHUNK};
use super::Padded;
use crate::isa::Isa;
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
#[derive(Debug)]
pub(crate) struct Split {
    segments: Vec<Segment>,
    /// One member per segment.
    team: Team,
    /// Per-chunk partial sums of segments 1.. (p + p* accumulators per chunk, chunk order).
    parts: Padded<Acc>,
    /// The first column of the final chunk.
    last: usize,
}

/// A raw pointer that may cross threads (each thread writes only its own part of what it points
/// to, see [`Split::step`]).
struct Shared<T>(*mut T);
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
// SAFETY: see the type's documentation.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the `Shared`, not its raw field).
    fn ptr(self) -> *mut T {
        self.0
    }
}

impl Clone for Split {
    /// The same split with a team of its own.
    fn clone(&self) -> Self {
        Split {
            segments: self.segments.clone(),
            team: Team::new(self.team.size()),
            parts: self.parts.clone(),
            last: self.last,
        }
    }
}

impl Split {
    /// A split of N columns with `rows` = p + p* accumulators into at most `threads` segments, or
    /// `None` if there is nothing to split (one thread, or N below [`SPLIT_MIN_N`]).
    pub(crate) fn new(n: usize, rows: usize, threads: usize) -> Option<Split> {
        if n < SPLIT_MIN_N {
            return None;
        }
        // All chunks but the final one are split.
        let body = n.div_ceil(CHUNK) - 1;
        let t = threads.min(body);
        if t < 2 {
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
            team: Team::new(segments.len()),
            segments,
            parts: Padded::new([0.0; 8], split_chunks * rows),
            last: body * CHUNK,
        })
    }

    /// Number of segments (threads used by a step).
    pub(crate) fn threads(&self) -> usize {
        self.segments.len()
    }

    /// The AVX-512F fused pass `a` (all columns, `a.begin == 0`, `a.end == N`), split; `state` is
    /// the generator state of the step's first block and becomes that after its last block.
    ///
    /// # Safety
    /// As [`avx512::run`] for `a`, and `a.p + a.k` must be the `rows` of [`Split::new`].
    pub(crate) unsafe fn step_avx512(&mut self, a: &Pass, state: &mut State) {
        self.step(a, state, &|seg: &Pass, st: &mut State| avx512::run(seg, st));
    }

    /// The AVX2 chunk loop of the pass `a` ([`Pass::chunks`], all columns), split; `gauss` is the
    /// step's generator, left after the step's last block.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; as [`Pass::chunks`] for `a`, and `a.p + a.k` must be
    /// the `rows` of [`Split::new`].
    pub(crate) unsafe fn step_avx2(&mut self, a: &Pass, gauss: &mut FastNormal) {
        // Each segment generates with a copy of the step's generator set to its own state.
        let template = gauss.clone();
        let run = |seg: &Pass, st: &mut State| {
            let mut g = template.clone();
            *g.state_mut() = *st;
            seg.chunks(Isa::Avx2Fma, &mut g);
            *st = *g.state_mut();
        };
        let mut state = *gauss.state_mut();
        self.step(a, &mut state, &run);
        *gauss.state_mut() = state;
    }

    /// One split step of the pass `a` (all columns): `run(seg, state)` must do the pass `seg` (a
    /// copy of `a` restricted to some columns and accumulators), generating from `state` (the
    /// stream's state at block seg.begin/16, to be advanced past block ⌈seg.end/16⌉), exactly as
    /// the unsplit pass does on those columns.
    unsafe fn step(&mut self, a: &Pass, state: &mut State, run: &SegmentWork) {
        let rows = a.p + a.k;
        let start = *state;
        let first_split = self.segments[0].end;
        let parts = Shared(self.parts.as_mut_ptr());
        let segs = Shared(self.segments.as_mut_ptr());
        // Member i runs segment i and touches only its columns, its chunks' partial sums and its
        // own `Segment`.
        self.team.run(&|i| {
            let seg = &mut *segs.ptr().add(i);
            let mut st = start;
            if i == 0 {
                // Segment 0 accumulates straight into the step's accumulators, as unsplit.
                run(
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
                    let slot = parts.ptr().add((c - first_split) / CHUNK * rows);
                    for r in 0..rows {
                        *slot.add(r) = [0.0; 8];
                    }
                    run(
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
        });
        // The split chunks' partial sums, in chunk order, lane by lane: as the kernels add a
        // chunk's partial sums to the accumulators.
        let acc = std::slice::from_raw_parts_mut(a.acc, rows);
        for part in self.parts.chunks_exact(rows) {
            for (acc_r, part_r) in acc.iter_mut().zip(part) {
                for (x, y) in acc_r.iter_mut().zip(part_r) {
                    *x += *y;
                }
            }
        }
        let mut st = self.segments.last().expect("two segments or more").end_state;
        run(&Pass { begin: self.last, ..*a }, &mut st);
        *state = st;
    }
}

/// The work of a split step on a column range (see `Split::step`).
type SegmentWork<'a> = dyn Fn(&Pass, &mut State) + Sync + 'a;
