//! Throughput of the Gram-chain simulator on one core (issue 4):
//! `cargo run --release --example chain_bench [samples]`.
//!
//! Quadratic and erf committees with p + p* = 3 (2, 1), 4 (2, 2) and 8 (4, 4), η = 0.01 (stable),
//! at N = 10⁴ and 10⁷ (the cost does not depend on N), B = 1 and 4. Prints samples per second of
//! wall time (what [`bench_chain`] returns) and of this thread's CPU time (read from
//! /proc/thread-self/stat on Linux, robust when other processes share the core).

use hdsgd::model::{Activation, Model, Training};
use hdsgd::simulators::{chain::bench_chain, RunSpec};

/// CPU time of the calling thread in seconds (utime + stime), if /proc is available.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ = 100 on Linux
}

fn main() {
    let samples: u64 = std::env::args()
        .nth(1)
        .map_or(20_000_000, |s| s.parse().expect("samples"));
    println!("activation  p  p*  p+p*         N  B  samples/s(wall)  samples/s(cpu)");
    for act in [Activation::Quadratic, Activation::Erf] {
        for (p, ps) in [(2, 1), (2, 2), (4, 4)] {
            for n in [10_000usize, 10_000_000] {
                for batch in [1usize, 4] {
                    let spec = RunSpec {
                        model: Model::new(act, vec![1.0 / p as f64; p], vec![1.0 / ps as f64; ps], 0.0),
                        training: Training {
                            eta: 0.01,
                            weight_decay: 0.0,
                            batch,
                        },
                        n,
                        divergence_bound: 1e6,
                    };
                    let cpu0 = thread_cpu_seconds();
                    let rate = bench_chain(spec, samples, 1);
                    // bench_chain runs samples/10 of warm-up first.
                    let cpu = match (cpu0, thread_cpu_seconds()) {
                        (Some(a), Some(b)) if b > a => format!("{:.3e}", 1.1 * samples as f64 / (b - a)),
                        _ => "n/a".into(),
                    };
                    println!(
                        "{:<10} {p:>2} {ps:>3} {:>5} {n:>9} {batch:>2} {rate:>16.3e} {cpu:>15}",
                        act.name(),
                        p + ps
                    );
                }
            }
        }
    }
}
