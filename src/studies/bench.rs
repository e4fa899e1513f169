//! `hdsgd bench`: throughput of the direct simulator against the machine's floor (issue 5).
//!
//! For each (N, p = p*) the bench measures, on one core and in f64:
//! * the full SGD step of [`DirectSimulator`] (quadratic and erf activations, B = 1): ns per sample
//!   and samples per second, as a run takes its steps (`advance(16)`: the pending update is flushed
//!   once per 16 steps; the JSON also has `step_flushed_ns`, one `step()` with its flush);
//! * every [`Generator`] side by side (default both: the ziggurat and Box–Muller), each with its
//!   own step and floor;
//! * its parts: Gaussian generation per number ([`FastNormal`], and rand_distr's scalar ziggurat
//!   for comparison), the projections of the p + p* rows, the rank-one update of the p student rows;
//! * the floor, defined in issue 5 as (a) generating N Gaussians with the best exact generator
//!   plus (b) one STREAM-like pass reading the p + p* rows and writing the p student rows
//!   ([`kernel::stream_pass`]), and the ratio step ÷ floor;
//! * the throughput of independent seeds on all cores against one core (parallel efficiency).
//!
//! Each quantity is timed in 5 batches of `budget/6` seconds after a warm-up batch; the best batch
//! is reported (on a shared machine interference only slows a batch down, so the minimum is the
//! robust estimate of what the code costs; step and floor are measured alike). One-core times are measured on the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID), so
//! that time the thread spends descheduled on a shared machine is not counted (on an idle machine
//! it equals wall time; the wall-clock figures are in the JSON too). The multi-seed throughput is
//! wall-clock. Results go to a table on stdout and, with `--json FILE`, to JSON.

use crate::init::TeacherInit;
use crate::isa::Isa;
use crate::model::{Activation, Model, Training};
use crate::rng::{fill_standard_normal, FastNormal, Generator, SimRng, NORMAL_BLOCK};
use crate::simulators::direct::{kernel, DirectSimulator};
use crate::simulators::RunSpec;
use anyhow::Context;
use rand::SeedableRng;
use serde::Serialize;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `hdsgd bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Input dimensions N (default 1000,10000,100000,1000000; with --quick 1000,10000,100000).
    #[arg(long, value_delimiter = ',')]
    pub n: Vec<usize>,
    /// Widths p = p* (default 1,4,16; with --quick 4).
    #[arg(long, value_delimiter = ',')]
    pub p: Vec<usize>,
    /// Activations (quadratic, erf, linear, relu; default quadratic,erf).
    #[arg(long, value_delimiter = ',')]
    pub activation: Vec<String>,
    /// Seconds per measured quantity (default 1.0; with --quick 0.25).
    #[arg(long)]
    pub budget: Option<f64>,
    /// Small grid and short budget.
    #[arg(long)]
    pub quick: bool,
    /// Threads for the multi-seed throughput (default: all cores; 1 skips it).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Kernels: auto (best available), avx2 or portable.
    #[arg(long, default_value = "auto")]
    pub isa: String,
    /// Input generators, each measured side by side (ziggurat, box-muller; default both).
    #[arg(long, value_delimiter = ',')]
    pub generator: Vec<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One (activation, N, p) cell of the bench. Times in nanoseconds; "per sample" = per SGD step with B = 1.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCell {
    /// The input generator of the step and of the floor ("ziggurat" or "box-muller").
    pub generator: String,
    pub activation: String,
    pub n: usize,
    pub p: usize,
    pub p_star: usize,
    /// Code path of the step ("avx512f fused pass" for p + p* ≤ 8 on AVX-512F CPUs, else the kernels).
    pub kernel: String,
    /// Full step (generation, fused update + projections, residual), thread CPU time.
    pub step_ns: f64,
    /// The same on the wall clock.
    pub step_wall_ns: f64,
    /// One step followed by a flush of its pending update (`DirectSimulator::step`), thread CPU
    /// time; `step_ns` is the cost of a step inside a run (flushes amortised over 16 steps).
    pub step_flushed_ns: f64,
    pub samples_per_s: f64,
    /// FastNormal with this cell's generator, per number.
    pub gauss_ns_per_number: f64,
    /// rand_distr's ziggurat StandardNormal over xoshiro256++, per number.
    pub ziggurat_ns_per_number: f64,
    /// Projections of the p + p* rows on x (one sample).
    pub dots_ns: f64,
    /// Rank-one update of the p student rows (one sample).
    pub update_ns: f64,
    /// Floor part (a): N numbers from FastNormal (this cell's generator).
    pub floor_gauss_ns: f64,
    /// Floor part (b): STREAM-like pass reading p + p* rows, writing p rows.
    pub floor_stream_ns: f64,
    pub floor_ns: f64,
    pub step_over_floor: f64,
    /// Multi-seed throughput: threads, total samples/s, speed-up over one core, efficiency, all on
    /// the wall clock (speed-up against the one-core wall-clock rate).
    pub par_threads: usize,
    pub par_samples_per_s: Option<f64>,
    pub par_speedup: Option<f64>,
    pub par_efficiency: Option<f64>,
    /// The same with each thread's rate on its own CPU clock, summed (against the one-core CPU rate):
    /// what is left when other processes do not compete for the cores (memory and cache sharing).
    pub par_cpu_samples_per_s: Option<f64>,
    pub par_cpu_speedup: Option<f64>,
    pub par_cpu_efficiency: Option<f64>,
    /// One run with each step split over `par_threads` threads
    /// ([`crate::simulators::direct::DirectSimulator::with_split`]): its step's wall-clock speed-up
    /// over the same run on one thread (`None` where no split applies: one thread, N below
    /// `SPLIT_MIN_N`, no AVX-512 pass).
    pub split_speedup: Option<f64>,
}

/// The whole bench, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub cpu: String,
    /// Kernels of the step's projections, updates and stream pass (see also each cell's `kernel`:
    /// with AVX-512F, the fused pass of p + p* ≤ 8 rows replaces them in the step).
    pub isa: String,
    /// Code path of the Gaussian generators (same stream on all paths).
    pub generator_path: String,
    pub cores: usize,
    pub budget_s: f64,
    /// Clock of the one-core times.
    pub clock: String,
    pub load_average_start: String,
    pub load_average_end: String,
    pub cells: Vec<BenchCell>,
}

/// CPU time of the calling thread, in seconds (wall time where unavailable).
pub fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A timing: ns per unit on the thread's CPU clock and on the wall clock (best of 5 batches).
#[derive(Debug, Clone, Copy)]
struct Timing {
    cpu: f64,
    wall: f64,
}

/// Best of 5 batches of the time per unit (ns), after a warm-up batch; `f` performs some work
/// and returns how many units it did. A batch lasts budget/6 of CPU time.
///
/// The thread CPU clock is a system call (about 0.3–0.5 µs in this VM, as much as a tenth of a
/// step at N = 10³), so it is read only every `reps` calls of `f`, with `reps` chosen in the
/// warm-up so that the work between two reads lasts at least 50 µs.
fn time_per_unit(budget: f64, mut f: impl FnMut() -> u64) -> Timing {
    let batch = budget / 6.0;
    let mut reps = 1u64;
    let mut run = |f: &mut dyn FnMut() -> u64, calibrate: bool| {
        let (c0, t0) = (thread_cpu_seconds(), Instant::now());
        let mut units = 0u64;
        let mut calls = 0u64;
        loop {
            for _ in 0..reps {
                units += f();
            }
            calls += reps;
            let dc = thread_cpu_seconds() - c0;
            if calibrate && calls >= reps && dc > 0.0 {
                reps = reps.max(((50e-6 / (dc / calls as f64)).ceil() as u64).min(1 << 20));
            }
            if dc >= batch {
                let dt = t0.elapsed().as_secs_f64();
                return (dc * 1e9 / units as f64, dt * 1e9 / units as f64);
            }
        }
    };
    run(&mut f, true);
    let v: Vec<(f64, f64)> = (0..5).map(|_| run(&mut f, false)).collect();
    Timing {
        cpu: v.iter().map(|t| t.0).fold(f64::INFINITY, f64::min),
        wall: v.iter().map(|t| t.1).fold(f64::INFINITY, f64::min),
    }
}

fn parse_activation(s: &str) -> anyhow::Result<Activation> {
    Ok(match s {
        "quadratic" => Activation::Quadratic,
        "erf" => Activation::Erf,
        "linear" => Activation::Linear,
        "relu" => Activation::Relu,
        _ => anyhow::bail!("--activation: unknown activation {s:?} (quadratic, erf, linear, relu)"),
    })
}

/// The benchmarked run: p = p*, averaging second layers, η = 0.01 (stable for the bench's few
/// thousand steps), no noise, B = 1, Gaussian teacher and student rows (σ₀ = 1).
fn simulator(act: Activation, n: usize, p: usize, seed: u64, isa: Isa, gen: Generator) -> DirectSimulator {
    let spec = RunSpec {
        model: Model::new(act, vec![1.0 / p as f64; p], vec![1.0 / p as f64; p], 0.0),
        training: Training {
            eta: 0.01,
            weight_decay: 0.0,
            batch: 1,
        },
        n,
        divergence_bound: 1e6,
    };
    DirectSimulator::new(spec, TeacherInit::Gaussian, 1.0, seed)
        .with_generator(gen)
        .with_isa(isa)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Samples per second of `threads` independent seeds run concurrently for about `budget` seconds:
/// (wall-clock total, sum over threads of each thread's rate on its own CPU clock). The second
/// discounts time-sharing with other processes and keeps the cost of sharing caches and memory.
///
/// Each thread builds and warms up its own simulator, as the experiment runner's workers do: its
/// buffers then come from that thread's heap arena and share no cache line with another thread's.
fn parallel_rate(
    act: Activation,
    n: usize,
    p: usize,
    threads: usize,
    budget: f64,
    isa: Isa,
    gen: Generator,
) -> (f64, f64) {
    let barrier = std::sync::Barrier::new(threads);
    let results: Vec<(u64, f64, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut sim = simulator(act, n, p, 100 + t as u64, isa, gen);
                    // Warm-up: page faults, caches, branch predictors (about 1/20 of the budget).
                    let (w0, mut warm) = (Instant::now(), 0u64);
                    while w0.elapsed().as_secs_f64() < budget / 20.0 {
                        black_box(sim.advance(STEPS_PER_CALL));
                        warm += STEPS_PER_CALL;
                    }
                    black_box(warm);
                    barrier.wait();
                    let (t0, c0) = (Instant::now(), thread_cpu_seconds());
                    let mut done = 0u64;
                    while t0.elapsed().as_secs_f64() < budget {
                        black_box(sim.advance(STEPS_PER_CALL));
                        done += STEPS_PER_CALL;
                    }
                    (done, t0.elapsed().as_secs_f64(), thread_cpu_seconds() - c0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    let time = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let cpu_rate: f64 = results.iter().map(|r| r.0 as f64 / r.2).sum();
    (total as f64 / time, cpu_rate)
}

/// Steps per timed call of the full step and of the multi-seed loop: `advance(16)`, i.e. steps as
/// `Simulator::run` takes them, the pending update being flushed once per call (a run flushes it
/// every N/16 steps, to check the divergence bound, and at records).
const STEPS_PER_CALL: u64 = 16;

/// Measures one (N, p) for the given activations.
/// The per-(N, p, generator) costs every activation's step is compared with (ns): N Gaussians
/// from the step's generator and from rand_distr's ziggurat (per number), a STREAM-like pass, the
/// row dot products and the rank-one update.
struct Floors {
    npad: usize,
    gauss: f64,
    ziggurat: f64,
    stream: f64,
    dots: f64,
    update: f64,
}

fn floors(n: usize, p: usize, budget: f64, isa: Isa, gen: Generator) -> Floors {
    let npad = n.div_ceil(NORMAL_BLOCK) * NORMAL_BLOCK;
    let mut rng = SimRng::seed_from_u64(1);
    let mut w = vec![0.0; p * n];
    let mut ws = vec![0.0; p * n];
    fill_standard_normal(&mut rng, &mut w);
    fill_standard_normal(&mut rng, &mut ws);
    let mut x = vec![0.0; npad];
    let mut x2 = vec![0.0; npad];
    let mut gauss = FastNormal::with_isa(2, isa).generator(gen);
    gauss.fill(&mut x2);
    // (a) N Gaussians, in the chunks the step uses.
    let gauss = time_per_unit(budget, || {
        gauss.fill(&mut x);
        black_box(&x);
        1
    })
    .cpu;
    let ziggurat = time_per_unit(budget, || {
        fill_standard_normal(&mut rng, &mut x[..n]);
        black_box(&x);
        n as u64
    })
    .cpu;
    // (b) STREAM-like pass.
    let stream = time_per_unit(budget, || {
        black_box(kernel::stream_pass(isa, &ws, &mut w));
        1
    })
    .cpu;
    let chunk = 512;
    let mut acc = vec![[0.0; 8]; p];
    let dots = time_per_unit(budget, || {
        for j0 in (0..n).step_by(chunk) {
            let len = chunk.min(n - j0);
            kernel::dot_rows(isa, &w, n, j0, &x[j0..j0 + len], &mut acc);
            kernel::dot_rows(isa, &ws, n, j0, &x[j0..j0 + len], &mut acc);
        }
        black_box(&acc);
        1
    })
    .cpu;
    let c = [1e-9];
    let update = time_per_unit(budget, || {
        for row in w.chunks_exact_mut(n) {
            kernel::axpy_row(isa, row, 1.0, &c, &x2, 0);
        }
        black_box(&w);
        1
    })
    .cpu;
    drop((w, ws));
    Floors {
        npad,
        gauss,
        ziggurat,
        stream,
        dots,
        update,
    }
}

/// The cells of (N, p): every generator, and for each every activation, against that generator's
/// floor (measured just before, so that a generator's step and floor are back to back).
fn bench_np(plan: &BenchPlan, n: usize, p: usize, threads: usize) -> Vec<BenchCell> {
    let mut cells = vec![];
    for &gen in &plan.generators {
        let f = floors(n, p, plan.budget, plan.isa, gen);
        for &act in &plan.acts {
            cells.push(bench_cell(act, n, p, plan.budget, threads, plan.isa, gen, &f));
        }
    }
    cells
}

/// The step of one activation at (N, p) against the floors.
#[allow(clippy::too_many_arguments)]
fn bench_cell(
    act: Activation,
    n: usize,
    p: usize,
    budget: f64,
    threads: usize,
    isa: Isa,
    gen: Generator,
    f: &Floors,
) -> BenchCell {
    let (npad, floor_gauss, zig, floor_stream, dots, update) =
        (f.npad, f.gauss, f.ziggurat, f.stream, f.dots, f.update);
    let mut sim = simulator(act, n, p, 7, isa, gen);
    let kernel = sim.kernel_name().to_string();
    // Steps as a run takes them (`Simulator::run` flushes the pending update only at records):
    // 16 steps per call, so that the flush of `advance` costs 1/16 of a row pass per step.
    let timing = time_per_unit(budget, || {
        black_box(sim.advance(STEPS_PER_CALL));
        STEPS_PER_CALL
    });
    // The public one-step call `step()` (= `advance(1)`), which also flushes every step: one
    // more pass over the p student rows (the bench's `step_us` before 2026-11-26).
    let flushed = time_per_unit(budget, || {
        black_box(sim.advance(1));
        1
    });
    // One run on all threads (split step), against the same run's one-thread wall-clock step.
    let split = (threads > 1)
        .then(|| simulator(act, n, p, 7, isa, gen).with_split(threads))
        .filter(|s| s.step_threads() > 1)
        .map(|mut s| {
            let t = time_per_unit(budget, || {
                black_box(s.advance(STEPS_PER_CALL));
                STEPS_PER_CALL
            });
            timing.wall / t.wall
        });
    let step = timing.cpu;
    let finite = sim.weights().iter().all(|v| v.is_finite());
    if !finite {
        eprintln!("warning: the benchmarked run diverged at N = {n}, p = {p} ({act:?})");
    }
    drop(sim);
    let par = (threads > 1).then(|| parallel_rate(act, n, p, threads, budget, isa, gen));
    // The speed-up compares like with like: the same `advance` loop on one thread.
    let one = (threads > 1).then(|| parallel_rate(act, n, p, 1, budget, isa, gen));
    let single = 1e9 / step;
    BenchCell {
        generator: gen.name().into(),
        activation: act.name().into(),
        n,
        p,
        p_star: p,
        kernel,
        step_ns: step,
        step_wall_ns: timing.wall,
        step_flushed_ns: flushed.cpu,
        samples_per_s: single,
        gauss_ns_per_number: floor_gauss / npad as f64,
        ziggurat_ns_per_number: zig,
        dots_ns: dots,
        update_ns: update,
        floor_gauss_ns: floor_gauss * n as f64 / npad as f64,
        floor_stream_ns: floor_stream,
        floor_ns: floor_gauss * n as f64 / npad as f64 + floor_stream,
        step_over_floor: step / (floor_gauss * n as f64 / npad as f64 + floor_stream),
        par_threads: threads,
        par_samples_per_s: par.map(|r| r.0),
        par_speedup: par.zip(one).map(|(r, o)| r.0 / o.0),
        par_efficiency: par.zip(one).map(|(r, o)| r.0 / o.0 / threads as f64),
        par_cpu_samples_per_s: par.map(|r| r.1),
        par_cpu_speedup: par.zip(one).map(|(r, o)| r.1 / o.1),
        par_cpu_efficiency: par.zip(one).map(|(r, o)| r.1 / o.1 / threads as f64),
        split_speedup: split,
    }
}

fn fmt_us(ns: f64) -> String {
    let us = ns / 1e3;
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// The table printed by `hdsgd bench` (times per sample in µs).
pub fn table(cells: &[BenchCell]) -> String {
    let mut s = String::from(
        "generator  act        N        p  step_us   samples/s  gauss_ns  zig_ns  dots_us  upd_us  floorG_us  floorS_us  floor_us  step/floor  par_x  par_eff  parcpu_x  split_x\n",
    );
    for c in cells {
        s += &format!(
            "{:<10} {:<9} {:>8} {:>3} {:>8} {:>11.0} {:>9.2} {:>7.2} {:>8} {:>7} {:>10} {:>10} {:>9} {:>11.2} {:>6} {:>8} {:>9} {:>8}\n",
            c.generator,
            c.activation,
            c.n,
            c.p,
            fmt_us(c.step_ns),
            c.samples_per_s,
            c.gauss_ns_per_number,
            c.ziggurat_ns_per_number,
            fmt_us(c.dots_ns),
            fmt_us(c.update_ns),
            fmt_us(c.floor_gauss_ns),
            fmt_us(c.floor_stream_ns),
            fmt_us(c.floor_ns),
            c.step_over_floor,
            c.par_speedup.map_or("-".into(), |v| format!("{v:.2}")),
            c.par_efficiency.map_or("-".into(), |v| format!("{:.0}%", 100.0 * v)),
            c.par_cpu_speedup.map_or("-".into(), |v| format!("{v:.2}")),
            c.split_speedup.map_or("-".into(), |v| format!("{v:.2}")),
        );
    }
    s
}

/// The resolved and validated arguments of `hdsgd bench`: the defaults filled in.
struct BenchPlan {
    ns: Vec<usize>,
    ps: Vec<usize>,
    acts: Vec<Activation>,
    budget: f64,
    isa: Isa,
    generators: Vec<Generator>,
}

/// Resolves `args` into a [`BenchPlan`], rejecting a bad value before anything is measured (a
/// bench run can take minutes, so an error should not come at the end).
fn plan(args: &BenchArgs) -> anyhow::Result<BenchPlan> {
    let ns = if !args.n.is_empty() {
        args.n.clone()
    } else if args.quick {
        vec![1000, 10_000, 100_000]
    } else {
        vec![1000, 10_000, 100_000, 1_000_000]
    };
    let ps = if !args.p.is_empty() {
        args.p.clone()
    } else if args.quick {
        vec![4]
    } else {
        vec![1, 4, 16]
    };
    if let Some(&bad) = ns.iter().find(|&&n| n == 0) {
        anyhow::bail!("--n: N must be positive (got {bad})");
    }
    if let Some(&bad) = ps.iter().find(|&&p| p == 0) {
        anyhow::bail!("--p: p must be positive (got {bad})");
    }
    let names = if args.activation.is_empty() {
        vec!["quadratic".to_string(), "erf".to_string()]
    } else {
        args.activation.clone()
    };
    let acts = names
        .iter()
        .map(|s| parse_activation(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let budget = args.budget.unwrap_or(if args.quick { 0.25 } else { 1.0 });
    if !(budget.is_finite() && budget > 0.0) {
        anyhow::bail!("--budget: must be a positive number of seconds (got {budget})");
    }
    let isa = match args.isa.as_str() {
        "auto" => Isa::detect(),
        "portable" => Isa::Portable,
        "avx2" if Isa::Avx2Fma.available() => Isa::Avx2Fma,
        "avx2" => anyhow::bail!("--isa: this CPU has no AVX2/FMA"),
        other => anyhow::bail!("--isa: unknown value {other:?} (auto, avx2, portable)"),
    };
    let generators = if args.generator.is_empty() {
        vec![Generator::Ziggurat, Generator::BoxMuller]
    } else {
        args.generator
            .iter()
            .map(|g| match g.as_str() {
                "ziggurat" => Ok(Generator::Ziggurat),
                "box-muller" => Ok(Generator::BoxMuller),
                other => Err(anyhow::anyhow!(
                    "--generator: unknown value {other:?} (ziggurat, box-muller)"
                )),
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    Ok(BenchPlan {
        ns,
        ps,
        acts,
        budget,
        isa,
        generators,
    })
}

/// Measures every (N, p, activation) cell, echoing each row to stderr as it is done so a long
/// bench shows progress (the full table goes to stdout at the end).
fn measure_all(plan: &BenchPlan, threads: usize) -> Vec<BenchCell> {
    let mut cells = Vec::new();
    for &n in &plan.ns {
        for &p in &plan.ps {
            let c = bench_np(plan, n, p, threads);
            for cell in &c {
                eprint!("{}", table(std::slice::from_ref(cell)).lines().nth(1).unwrap_or(""));
                eprintln!();
            }
            cells.extend(c);
        }
    }
    cells
}

/// The lines under the table: which kernels and clock the numbers are for, and the load before
/// and after (on a shared machine the load says how far to trust them).
fn print_footer(report: &BenchReport) {
    println!(
        "kernels {}, generators on {}{}; one-core times on the thread CPU clock, best of 5 batches",
        report.isa,
        report.generator_path,
        if report.cells.iter().any(|c| c.kernel.starts_with("avx512f")) {
            "; step with p + p* <= 8: avx512f fused pass"
        } else {
            ""
        }
    );
    println!(
        "load average (1, 5, 15 min): {} at start, {} at end",
        report.load_average_start, report.load_average_end
    );
}

/// `hdsgd bench`.
pub fn command(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = plan(args)?;
    let (budget, isa) = (plan.budget, plan.isa);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = if args.threads == 0 { cores } else { args.threads };
    let load_start = load_average();
    eprintln!(
        "hdsgd bench: {} ({} cores), kernels {}, generators on {}, {budget} s per quantity, load average {load_start}",
        cpu_name(),
        cores,
        isa.name(),
        FastNormal::with_isa(0, isa).simd_name()
    );
    let cells = measure_all(&plan, threads);
    print!("{}", table(&cells));
    let report = BenchReport {
        cpu: cpu_name(),
        isa: isa.name().into(),
        generator_path: FastNormal::with_isa(0, isa).simd_name().into(),
        cores,
        budget_s: budget,
        clock: "thread CPU time (CLOCK_THREAD_CPUTIME_ID); par_* on the wall clock".into(),
        load_average_start: load_start,
        load_average_end: load_average(),
        cells,
    };
    print_footer(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(generators: &[&str]) -> BenchArgs {
        BenchArgs {
            n: vec![],
            p: vec![],
            activation: vec![],
            budget: None,
            quick: true,
            threads: 1,
            isa: "portable".into(),
            generator: generators.iter().map(|s| s.to_string()).collect(),
            json: None,
        }
    }

    /// `--generator`: both by default (side by side), one when named, a bad name rejected before
    /// anything is measured.
    #[test]
    fn generator_option() {
        let both = vec![Generator::Ziggurat, Generator::BoxMuller];
        assert_eq!(plan(&args(&[])).unwrap().generators, both);
        assert_eq!(
            plan(&args(&["box-muller"])).unwrap().generators,
            vec![Generator::BoxMuller]
        );
        let e = plan(&args(&["polar"])).err().expect("rejected").to_string();
        assert!(e.contains("--generator") && e.contains("ziggurat"), "{e}");
    }
}
