//! The pass of a step over the weights, and the ways it traverses them.
//!
//! A pass generates x_{t+1}, applies the pending update of step t to the student rows and
//! accumulates the projections of x_{t+1} on the updated rows (see
//! `DirectSimulator::step_fused`). Every traversal performs the same floating-point operations
//! on every element, in the same order within a row: chunks of [`CHUNK`] numbers, element j of a
//! row into lane j mod 8 of its accumulator, each chunk's products summed from zero and then
//! added to the accumulator. So they give the same numbers bit for bit (tested) and differ only
//! in the order in which memory is visited, and in threads; [`DirectSimulator::traversal`] picks
//! the fastest that applies.

use super::kernel::{self, Acc};
use super::DirectSimulator;
use crate::isa::Isa;
use crate::rng::{FastNormal, Generator, NORMAL_BLOCK};
use std::ops::Range;
use std::slice;

/// The chunk of a B = 1 pass: x_t and x_{t+1} over it stay in L1 while every row streams past.
/// Chunk partial sums are part of the numbers (see the module documentation), so every B = 1
/// traversal uses this one.
pub(crate) const CHUNK: usize = 512;

/// Super-chunk of a B = 1 step with more than [`SUPER_MIN_ROWS`] rows (see
/// [`Pass::super_chunks`]): a multiple of the chunk; x_{t+1} and x_t over it (2 × 512 KiB) stay
/// in L2/L3 while the rows stream from memory (measured: docs/performance.md).
pub(super) const SUPER_CHUNK: usize = 65536;
/// Rows (p + p*) above which a B = 1 step streams rows over super-chunks.
const SUPER_MIN_ROWS: usize = 8;
/// The most rows (p + p*) the AVX-512F fused pass takes (its partial sums stay in registers).
#[cfg(target_arch = "x86_64")]
pub(super) use super::avx512::MAX_ROWS as FUSED_MAX_ROWS;
#[cfg(not(target_arch = "x86_64"))]
pub(super) const FUSED_MAX_ROWS: usize = 0;

/// Chunk of the input of a B > 1 step: a multiple of [`NORMAL_BLOCK`] small enough for the B
/// input chunks (new and previous) to stay in L1 while every weight row streams past them.
fn chunk_len(batch: usize) -> usize {
    ((2048 / batch).clamp(64, 512) / NORMAL_BLOCK) * NORMAL_BLOCK
}

/// How a step's pass traverses the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Traversal {
    /// B = 1, p + p* ≤ 8 on AVX-512F: generation, update and projections in one sweep
    /// ([`super::avx512`]), split over threads if the simulator has a split.
    Fused,
    /// B = 1: chunk after chunk, each generated and then streamed past by every row
    /// ([`Pass::chunks`]); split over threads on AVX2 if the simulator has a split.
    Chunks,
    /// B = 1, more than [`SUPER_MIN_ROWS`] rows: [`Pass::super_chunks`].
    SuperChunks,
    /// B > 1: chunk after chunk, row after row, with the rank-B update.
    Batch,
}

impl DirectSimulator {
    /// The traversal of this simulator's steps: the only place where one is chosen.
    pub(super) fn traversal(&self) -> Traversal {
        let rows = self.spec.model.p() + self.spec.model.p_star();
        if self.spec.training.batch > 1 {
            Traversal::Batch
        } else if rows > SUPER_MIN_ROWS && self.scratch.super_chunk > 0 {
            Traversal::SuperChunks
        } else if rows <= FUSED_MAX_ROWS && self.gauss.runs_avx512() {
            Traversal::Fused
        } else {
            Traversal::Chunks
        }
    }

    /// The pass of one step (see the module documentation), into zeroed accumulators.
    pub(super) fn pass(&mut self) {
        self.scratch.acc.iter_mut().for_each(|a| *a = [0.0; 8]);
        let traversal = self.traversal();
        if traversal == Traversal::Batch {
            return self.batch_pass();
        }
        let (a, isa) = (self.operands(), self.isa);
        // SAFETY: `operands` checked the extents of `a`, and the simulator is borrowed mutably
        // for the pass; the kernels run on their instruction set only where the CPU has it
        // (`isa` is Avx2Fma only there, and the generator's AVX-512F state exists only there);
        // a split was built for these p + p* rows.
        unsafe {
            match traversal {
                #[cfg(target_arch = "x86_64")]
                Traversal::Fused => {
                    let state = self.gauss.avx512_state().expect("the fused pass runs on AVX-512F");
                    match &mut self.split {
                        Some(sp) => sp.step_avx512(&a, state),
                        None => super::avx512::run(&a, state),
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Traversal::Chunks if isa == Isa::Avx2Fma && self.split.is_some() => {
                    let sp = self.split.as_mut().expect("checked above");
                    sp.step_avx2(&a, &mut self.gauss)
                }
                Traversal::SuperChunks => a.super_chunks(isa, &mut self.gauss, self.scratch.super_chunk),
                _ => a.chunks(isa, &mut self.gauss),
            }
        }
    }

    /// The operands of a B = 1 pass over all N columns, after checking every extent that the
    /// raw-pointer kernels rely on.
    fn operands(&mut self) -> Pass {
        let (p, k, n) = (self.spec.model.p(), self.spec.model.p_star(), self.spec.n);
        let s = &mut self.scratch;
        let w = self.w.as_slice_mut().expect("standard layout");
        let w_star = self.w_star.as_slice().expect("standard layout");
        assert!(w.len() == p * n && w_star.len() == k * n && s.acc.len() == p + k && s.coef.len() == p);
        assert!(s.x_prev.len() >= n && s.x_new.len() >= n.div_ceil(NORMAL_BLOCK) * NORMAL_BLOCK);
        Pass {
            w: w.as_mut_ptr(),
            p,
            ws: w_star.as_ptr(),
            k,
            n,
            begin: 0,
            end: n,
            update: match (s.pending, s.decay == 1.0) {
                (false, _) => Update::None,
                (true, true) => Update::Plain,
                (true, false) => Update::Decay,
            },
            decay: s.decay,
            c: s.coef.as_ptr(),
            xp: s.x_prev.as_ptr(),
            xn: s.x_new.as_mut_ptr(),
            acc: s.acc.as_mut_ptr(),
            generator: self.gauss.generator_kind(),
        }
    }

    /// The pass of a B > 1 step: chunk by chunk (B input chunks in L1), each student row gets
    /// its rank-B update and then its B projections, then each teacher row its B projections.
    fn batch_pass(&mut self) {
        let model = &self.spec.model;
        let (p, n, batch) = (model.p(), self.spec.n, self.spec.training.batch);
        let (isa, s) = (self.isa, &mut self.scratch);
        let npad = s.npad;
        let w = self.w.as_slice_mut().expect("standard layout");
        let w_star = self.w_star.as_slice().expect("standard layout");
        let (acc_s, acc_t) = s.acc.split_at_mut(p * batch);
        let ch = chunk_len(batch);
        for j0 in (0..n).step_by(ch) {
            let len = ch.min(n - j0);
            let glen = len.div_ceil(NORMAL_BLOCK) * NORMAL_BLOCK;
            for b in 0..batch {
                self.gauss.fill(&mut s.x_new[b * npad + j0..b * npad + j0 + glen]);
            }
            for (i, row) in w.chunks_exact_mut(n).enumerate() {
                if s.pending {
                    let c = &s.coef[i * batch..(i + 1) * batch];
                    kernel::axpy_row(isa, &mut row[j0..j0 + len], s.decay, c, &s.x_prev[j0..], npad);
                }
                for b in 0..batch {
                    let xn = &s.x_new[b * npad + j0..b * npad + j0 + len];
                    kernel::dot_rows(isa, row, n, j0, xn, &mut acc_s[i * batch + b..][..1]);
                }
            }
            for (r, row) in w_star.chunks_exact(n).enumerate() {
                for b in 0..batch {
                    let xn = &s.x_new[b * npad + j0..b * npad + j0 + len];
                    kernel::dot_rows(isa, row, n, j0, xn, &mut acc_t[r * batch + b..][..1]);
                }
            }
        }
    }
}

/// Whether (and how) a pass applies the pending update of the previous step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// No pending update: projections only.
    None,
    /// w ← c·x_t + w.
    Plain,
    /// w ← c·x_t + decay·w.
    Decay,
}

/// The operands of a B = 1 pass over the columns `begin..end` of the rows, as raw pointers (the
/// caller has checked every extent). `begin` is a multiple of [`CHUNK`]; every column index is
/// absolute (into the rows and into x_t, x_{t+1}), so that several passes over disjoint column
/// ranges, on different threads, make up one step (the split step).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    /// Student rows, p × n, row-major (updated in place).
    pub w: *mut f64,
    pub p: usize,
    /// Teacher rows, k × n.
    pub ws: *const f64,
    pub k: usize,
    /// Row length (and stride).
    pub n: usize,
    /// The columns of this pass.
    pub begin: usize,
    pub end: usize,
    pub update: Update,
    pub decay: f64,
    /// c_r of the pending update (p numbers).
    pub c: *const f64,
    /// x_t (≥ n numbers; read only with an update).
    pub xp: *const f64,
    /// x_{t+1}, written (n rounded up to a multiple of NORMAL_BLOCK numbers).
    pub xn: *mut f64,
    /// p + k accumulators: students then teachers.
    pub acc: *mut Acc,
    /// The generator's map (the fused pass generates x_{t+1} itself).
    pub generator: Generator,
}

// SAFETY: a Pass is a set of extents; the split step hands passes over disjoint column ranges
// (disjoint parts of the rows and of x_{t+1}, and distinct accumulators) to different threads.
unsafe impl Send for Pass {}
unsafe impl Sync for Pass {}

impl Pass {
    /// Chunk after chunk: generate x_{t+1} over the chunk, then the students (update and
    /// projection) and the teachers (projection) stream past it.
    ///
    /// # Safety
    /// The pointers must be valid for the extents documented on [`Pass`], `isa` available, and
    /// nothing else may access the columns `begin..end` of the rows and of x_{t+1}, or the
    /// accumulators, meanwhile.
    pub(crate) unsafe fn chunks(&self, isa: Isa, gauss: &mut FastNormal) {
        let acc = slice::from_raw_parts_mut(self.acc, self.p + self.k);
        let (acc_s, acc_t) = acc.split_at_mut(self.p);
        for c0 in (self.begin..self.end).step_by(CHUNK) {
            let len = CHUNK.min(self.end - c0);
            self.generate(gauss, c0, len);
            self.students(isa, 0..self.p, c0, len, acc_s);
            self.teachers(isa, 0..self.k, c0, len, acc_t);
        }
    }

    /// Super-chunk after super-chunk (`sup` numbers, a multiple of [`CHUNK`]): generate x_{t+1}
    /// over it, then stream each group of 4 rows over it chunk after chunk (rows outer), so that
    /// each row is read in long runs: the hardware prefetcher stops at every 4 KiB page, i.e.
    /// at every chunk, and many interleaved short streams defeat it. The chunks, and so the
    /// numbers, are those of [`Self::chunks`].
    ///
    /// # Safety
    /// As [`Self::chunks`].
    pub(crate) unsafe fn super_chunks(&self, isa: Isa, gauss: &mut FastNormal, sup: usize) {
        let acc = slice::from_raw_parts_mut(self.acc, self.p + self.k);
        let (acc_s, acc_t) = acc.split_at_mut(self.p);
        for j0 in (self.begin..self.end).step_by(sup) {
            let end = (j0 + sup).min(self.end);
            self.generate(gauss, j0, end - j0);
            for r0 in (0..self.p).step_by(4) {
                let rows = r0..(r0 + 4).min(self.p);
                for c0 in (j0..end).step_by(CHUNK) {
                    let len = CHUNK.min(end - c0);
                    self.students(isa, rows.clone(), c0, len, &mut acc_s[rows.clone()]);
                }
            }
            for r0 in (0..self.k).step_by(4) {
                let rows = r0..(r0 + 4).min(self.k);
                for c0 in (j0..end).step_by(CHUNK) {
                    let len = CHUNK.min(end - c0);
                    self.teachers(isa, rows.clone(), c0, len, &mut acc_t[rows.clone()]);
                }
            }
        }
    }

    /// x_{t+1}[c0..c0 + len], rounded up to whole generator blocks (x_{t+1} is padded for it).
    unsafe fn generate(&self, gauss: &mut FastNormal, c0: usize, len: usize) {
        gauss.fill(slice::from_raw_parts_mut(
            self.xn.add(c0),
            len.div_ceil(NORMAL_BLOCK) * NORMAL_BLOCK,
        ));
    }

    /// Student rows `rows` over the columns c0..c0 + len: the pending update (if any), then the
    /// projections on x_{t+1} into `acc` (one accumulator per row).
    unsafe fn students(&self, isa: Isa, rows: Range<usize>, c0: usize, len: usize, acc: &mut [Acc]) {
        let w = self.w.add(rows.start * self.n + c0);
        let xn = slice::from_raw_parts(self.xn.add(c0), len);
        if self.update == Update::None {
            kernel::dot_rows_at(isa, w, self.n, xn, acc);
        } else {
            let c = slice::from_raw_parts(self.c.add(rows.start), rows.len());
            let xp = slice::from_raw_parts(self.xp.add(c0), len);
            kernel::update_dot_rows_at(isa, w, self.n, self.decay, c, xp, xn, acc);
        }
    }

    /// Teacher rows `rows` over the columns c0..c0 + len: projections on x_{t+1} into `acc`.
    unsafe fn teachers(&self, isa: Isa, rows: Range<usize>, c0: usize, len: usize, acc: &mut [Acc]) {
        let xn = slice::from_raw_parts(self.xn.add(c0), len);
        kernel::dot_rows_at(isa, self.ws.add(rows.start * self.n + c0), self.n, xn, acc);
    }
}
