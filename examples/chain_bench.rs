//! Throughput of the Gram-chain simulator on one core (issue 4):
//! `cargo run --release --example chain_bench [samples]`.
//!
//! Quadratic and erf committees with p + p* = 3 (2, 1), 4 (2, 2) and 8 (4, 4), η = 0.01 (stable),
//! at N = 10⁴ and 10⁷ (the cost does not depend on N), B = 1 and 4.

use hdsgd::model::{Activation, Model, Training};
use hdsgd::simulators::{chain::bench_chain, RunSpec};

fn main() {
    let samples: u64 = std::env::args()
        .nth(1)
        .map_or(20_000_000, |s| s.parse().expect("samples"));
    println!("activation  p  p*  p+p*         N  B   samples/s");
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
                    let rate = bench_chain(spec, samples, 1);
                    println!(
                        "{:<10} {p:>2} {ps:>3} {:>5} {n:>9} {batch:>2} {rate:>11.3e}",
                        act.name(),
                        p + ps
                    );
                }
            }
        }
    }
}
