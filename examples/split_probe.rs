use hdsgd::init::TeacherInit;
use hdsgd::model::{Activation, Model, Training};
use hdsgd::simulators::{direct::DirectSimulator, RunSpec};
use std::hint::black_box;
use std::time::Instant;
fn main() {
    for &n in &[16384usize, 32768, 100_000, 1_000_000] {
        for &p in &[1usize, 4] {
            let spec = RunSpec {
                model: Model::new(Activation::Quadratic, vec![1.0 / p as f64; p], vec![1.0 / p as f64; p], 0.0),
                training: Training { eta: 0.01, weight_decay: 0.0, batch: 1 },
                n,
                divergence_bound: 1e6,
            };
            let mut line = format!("N {n:>8} p {p}");
            for t in [1usize, 2] {
                let mut sim = DirectSimulator::new(spec.clone(), TeacherInit::Gaussian, 1.0, 7).with_split(t);
                let steps = (2e8 as usize / n).max(16) as u64;
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t0 = Instant::now();
                    black_box(sim.advance(steps));
                    best = best.min(t0.elapsed().as_secs_f64() / steps as f64);
                }
                line += &format!("  threads {t} ({}): {:.1} us", sim.step_threads(), best * 1e6);
            }
            println!("{line}");
        }
    }
}
