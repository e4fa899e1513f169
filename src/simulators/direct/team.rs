//! A small team of threads that runs one parallel job per SGD step, spinning between steps.
//!
//! Why not rayon: a split step at N = 10⁵ lasts ~100 µs per thread, and a rayon worker that went
//! to sleep between two steps is woken through the kernel, which in this VM took long enough to
//! eat a third of the gain (docs/performance.md). The team's workers busy-wait for the next step for a bounded time (the
//! gap between steps is a few hundred nanoseconds of scalar work), then park until woken, so an
//! idle simulator does not hold a core.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Busy-wait iterations (`spin_loop` hints, ~10–40 ns each) before a worker parks.
const SPINS: u32 = 1 << 16;

/// The job of one step: called once with each member index 0..size (0 on the calling thread).
type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped by the leader to start a job.
    epoch: AtomicU64,
    /// Workers done with the current job.
    done: AtomicUsize,
    /// The current job (a `*const Job` behind a thin pointer, valid while `run` waits).
    job: AtomicPtr<&'static Job>,
    stop: AtomicBool,
    /// Set by a worker whose job panicked (it still counts itself done, so the leader never
    /// waits forever; the leader then panics too).
    panicked: AtomicBool,
}

/// A leader (the calling thread) and `size − 1` worker threads.
pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({})", self.size())
    }
}

impl Team {
    /// A team of `size` ≥ 1 members (spawns `size − 1` threads).
    pub(crate) fn new(size: usize) -> Team {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let workers = (1..size.max(1))
            .map(|index| {
                let sh = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("hdsgd-split-{index}"))
                    .spawn(move || worker(&sh, index))
                    .expect("spawning a split-step thread")
            })
            .collect();
        Team { shared, workers }
    }

    /// Members, the calling thread included.
    pub(crate) fn size(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `job(i)` for every member i (0 here, the others on the workers) and returns when all
    /// are done. (`&mut self`: one job at a time.)
    ///
    /// # Panics
    /// If the job panicked on a worker.
    pub(crate) fn run<'a>(&mut self, job: &'a (dyn Fn(usize) + Sync + 'a)) {
        let sh = &*self.shared;
        // SAFETY: the workers dereference the job only between the epoch bump below and their
        // `done` increment, and this function does not return before every worker has done so:
        // the borrow outlives every use, although its lifetime is erased for the pointer.
        let erased: &'static Job = unsafe { std::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static Job>(job) };
        let slot = &erased as *const &'static Job as *mut &'static Job;
        sh.done.store(0, Ordering::Relaxed);
        sh.panicked.store(false, Ordering::Relaxed);
        sh.job.store(slot, Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
        job(0);
        let want = self.workers.len();
        while sh.done.load(Ordering::Acquire) < want {
            std::hint::spin_loop();
        }
        assert!(!sh.panicked.load(Ordering::Acquire), "a split-step thread panicked");
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in self.workers.drain(..) {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

fn worker(sh: &Shared, index: usize) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        loop {
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if sh.stop.load(Ordering::Acquire) {
                return;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::park_timeout(Duration::from_millis(1));
            }
        }
        // SAFETY: see `Team::run`: the job slot is valid until `done` reaches the team size.
        let job = unsafe { *sh.job.load(Ordering::Relaxed) };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(index))).is_err() {
            sh.panicked.store(true, Ordering::Release);
        }
        sh.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member runs every job exactly once, job after job, including after the workers had
    /// time to park.
    #[test]
    fn runs_each_member_once_per_job() {
        let mut team = Team::new(3);
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for round in 1..=200 {
            team.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            if round == 100 {
                thread::sleep(Duration::from_millis(20));
            }
            for h in &hits {
                assert_eq!(h.load(Ordering::Relaxed), round);
            }
        }
    }

    /// A job that panics on a worker makes `run` panic instead of waiting forever.
    #[test]
    fn a_panicking_worker_is_reported() {
        let mut team = Team::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(&|i| assert!(i != 1, "member 1 fails (expected in this test)"))
        }));
        assert!(r.is_err());
    }
}
