//! Exact identities of the chain step (the statistics are in `tests/chain_equivalence.rs`).

use super::*;
use crate::model::{Model, Training};
use crate::rng::fill_standard_normal;
use nalgebra::DMatrix;
use rand::SeedableRng;

fn spec(act: Activation, p: usize, ps: usize, n: usize, batch: usize, wd: f64, noise: f64) -> RunSpec {
    RunSpec {
        model: Model::new(
            act,
            (0..p).map(|i| 0.6 + 0.3 * i as f64).collect(),
            vec![1.0; ps],
            noise,
        ),
        training: Training {
            eta: 0.7,
            weight_decay: wd,
            batch,
        },
        n,
        divergence_bound: 1e6,
    }
}

/// Internal-order Gram matrix (teacher rows first) of explicit rows R (d × N): R Rᵀ/N.
fn weight_gram(r: &DMatrix<f64>) -> DMatrix<f64> {
    r * r.transpose() / r.ncols() as f64
}

fn factor_gram(f: &GramFactor) -> DMatrix<f64> {
    let d = f.d();
    DMatrix::from_fn(d, d, |a, b| f.dot(a, b))
}

/// An orthonormal basis U (N × r̃) with R = √N F Uᵀ for rows R (d × N) and factor F (d × r̃).
/// With F = Σ_l σ_l u_l v_lᵀ (SVD, rank ρ), U v_l = Rᵀ u_l/(σ_l √N) for σ_l > 0; the other v_l are
/// directions no row uses, whose image is arbitrary: any orthonormal completion (the chain's own choice
/// is just as arbitrary, which is why it is exact).
fn implied_basis(r: &DMatrix<f64>, f: &DMatrix<f64>, rng: &mut SimRng) -> DMatrix<f64> {
    let (n, w) = (r.ncols(), f.ncols());
    let svd = f.clone().svd(true, true);
    let (uf, vt) = (svd.u.unwrap(), svd.v_t.unwrap());
    let smax = svd.singular_values.max();
    // The image of each right singular vector v_l (columns of `img`), then U = img · V_fᵀ.
    let mut img = DMatrix::<f64>::zeros(n, w);
    let mut used = 0;
    for l in 0..svd.singular_values.len() {
        let sl = svd.singular_values[l];
        if sl > 1e-9 * smax {
            img.set_column(l, &(r.transpose() * uf.column(l) / (sl * (n as f64).sqrt())));
            used += 1;
        }
    }
    // svd sorts singular values in decreasing order: complete the remaining columns.
    for l in used..w {
        let mut v = nalgebra::DVector::from_fn(n, |_, _| standard_normal(rng));
        for _ in 0..2 {
            for j in 0..l {
                let proj = img.column(j).dot(&v);
                v -= img.column(j) * proj;
            }
        }
        img.set_column(l, &(v.normalize()));
    }
    img * vt.rows(0, w)
}

/// The chain step is the direct SGD step written in coordinates: starting from explicit weights
/// (including an all-zero student, a singular C), decompose the same inputs x_b into the chain's
/// basis (g_b = Uᵀx_b, A from a QR of the orthogonal parts), apply both updates, and compare the Gram
/// matrices, λ and the losses to rounding, over several steps (the basis U implied by the
/// chain's factor is recovered from the weights at each step as U = Rᵀ F (FᵀF)⁻¹/√N).
#[test]
fn step_is_the_direct_update_in_coordinates() {
    for (act, p, ps, batch, zero_student) in [
        (Activation::Quadratic, 2, 1, 1, false),
        (Activation::Erf, 2, 2, 3, false),
        (Activation::Erf, 2, 1, 1, true),
        (Activation::Erf, 3, 2, 2, true),
        (Activation::Linear, 1, 2, 2, false),
    ] {
        let n = 11;
        let d = p + ps;
        let sp = spec(act, p, ps, n, batch, 0.3, 0.2);
        let mut rng = SimRng::seed_from_u64(7);
        // Explicit rows, teacher first.
        let mut r = DMatrix::from_fn(d, n, |_, _| standard_normal(&mut rng));
        if zero_student {
            r.rows_mut(ps, p).fill(0.0);
        }
        let mut sim = chain_of_rows(&sp, &r, if zero_student { ps } else { d }, batch);
        assert!((factor_gram(&sim.factor) - weight_gram(&r)).amax() < 1e-12);
        // From a zero student the rows stay nearly dependent for a few steps (after one step every
        // student row is a multiple of the same vector, then they differ only through g'(λ_i) with
        // λ_i small), so the basis recovered from the weights loses accuracy like ε/σ_min: two steps
        // cover the singular start (r̃ = p* → p* + B with a direction no row uses); the generic
        // cases run six.
        let steps = if zero_student && p > 2 { 2 } else { 6 };
        for step in 0..steps {
            let w = sim.factor.width;
            let s = sim.factor.stride;
            let f = DMatrix::from_fn(d, w, |a, j| sim.factor.f[a * s + j]);
            let u = implied_basis(&r, &f, &mut rng);
            // A direction used by a row with a tiny singular value σ is recovered only to ε|R|/σ (the
            // zero-student runs start nearly rank-deficient), hence the loose check; g's error then
            // enters z = F g multiplied by σ, so z and C are still compared to 1e-12 below.
            assert!(
                (u.transpose() * &u - DMatrix::identity(w, w)).amax() < 1e-6,
                "basis at step {step}: {f}"
            );
            // B fresh inputs and their label noise.
            let x = DMatrix::from_fn(n, batch, |_, _| standard_normal(&mut rng));
            let noise: Vec<f64> = (0..batch).map(|_| standard_normal(&mut rng)).collect();
            load_inputs(&mut sim, &u, &x, &noise);
            let loss = sim.apply();
            let (z, direct_loss) = direct_step(&sp, &mut r, &x, &noise);
            for b in 0..batch {
                for i in 0..d {
                    assert!((sim.scratch.z[b * d + i] - z[(i, b)]).abs() < 1e-12, "z");
                }
            }
            let diff = (factor_gram(&sim.factor) - weight_gram(&r)).amax();
            let scale = 1.0 + weight_gram(&r).amax();
            assert!(
                diff < 1e-12 * scale,
                "{act:?} p={p} p*={ps} B={batch} step {step}: |ΔC| = {diff}"
            );
            assert!((loss - direct_loss).abs() < 1e-12 * (1.0 + loss));
            let expect_width = (w + batch).min(d);
            assert_eq!(sim.factor.width, expect_width);
        }
    }
}

/// A chain simulator whose factor spans the first `rows` rows of `r` (teacher first): F = (QR of
/// those rows)ᵀ/√N, lower trapezoidal; the other rows must be zero.
fn chain_of_rows(sp: &RunSpec, r: &DMatrix<f64>, rows: usize, batch: usize) -> ChainSimulator {
    let (p, ps, n) = (sp.model.p(), sp.model.p_star(), r.ncols());
    let qr = r.rows(0, rows).transpose().qr();
    let mut fac = GramFactor::zeros(p, ps, n, batch);
    let t = qr.r().transpose() / (n as f64).sqrt();
    for a in 0..rows {
        for j in 0..rows {
            fac.f[a * fac.stride + j] = t[(a, j)];
        }
    }
    fac.width = rows;
    let chi = ChiTable::new(n, p + ps + batch);
    ChainSimulator::from_factor(sp.clone(), fac, chi, 1)
}

/// Puts the inputs `x` (N × B) into the chain's scratch in its coordinates: g_b = Uᵀx_b in the
/// basis `u`, and A, the lower-triangular coordinates of the orthogonal parts ξ_b = Σ_j A_bj e_j
/// (from their QR), with the label noise `noise`.
fn load_inputs(sim: &mut ChainSimulator, u: &DMatrix<f64>, x: &DMatrix<f64>, noise: &[f64]) {
    let (w, s, batch) = (sim.factor.width, sim.factor.stride, x.ncols());
    let g = u.transpose() * x;
    let xi_perp = x - u * &g;
    let a = xi_perp.qr().r().transpose(); // B × B lower triangular
    for b in 0..batch {
        for j in 0..w {
            sim.scratch.g[b * s + j] = g[(j, b)];
        }
        for j in 0..batch {
            sim.scratch.a[b * s + j] = if j <= b { a[(b, j)] } else { 0.0 };
        }
        sim.scratch.xi[b] = noise[b];
    }
    sim.scratch.bp = batch;
}

/// The direct update (theory.md §2) of the student rows of `r` (teacher rows first) on the inputs
/// `x` with label noise `noise`: the preactivations z = R x/√N (d × B) before the step and the
/// minibatch loss Σ_b ½ res_b².
fn direct_step(sp: &RunSpec, r: &mut DMatrix<f64>, x: &DMatrix<f64>, noise: &[f64]) -> (DMatrix<f64>, f64) {
    let model = &sp.model;
    let (p, ps, n, batch) = (model.p(), model.p_star(), r.ncols(), x.ncols());
    let sqn = (n as f64).sqrt();
    let z = &*r * x / sqn;
    let mut direct_loss = 0.0;
    let mut upd = DMatrix::zeros(p, n);
    for b in 0..batch {
        let nu: Vec<f64> = (0..ps).map(|k| z[(k, b)]).collect();
        let lam: Vec<f64> = (0..p).map(|i| z[(ps + i, b)]).collect();
        let res = model.teacher_output(&nu) + model.noise.sqrt() * noise[b] - model.student_output(&lam);
        direct_loss += 0.5 * res * res;
        for i in 0..p {
            let delta = model.a[i] * model.activation.dg(lam[i]) * res;
            let coef = sp.training.eta / (batch as f64 * sqn) * delta;
            for j in 0..n {
                upd[(i, j)] += coef * x[(j, b)];
            }
        }
    }
    let decay = 1.0 - sp.training.eta * sp.training.weight_decay / n as f64;
    let new_students = r.rows(ps, p) * decay + upd;
    r.rows_mut(ps, p).copy_from(&new_students);
    (z, direct_loss)
}

/// The update of C is theory.md §7's, with x_b·x_c = (ΓΓᵀ + AAᵀ)_bc:
/// Q' = κ²Q + κ Σ_b (k_b λ_bᵀ + λ_b k_bᵀ) + Σ_bc k_b k_cᵀ x_b·x_c,  M' = κM + Σ_b k_b ν_bᵀ,
/// with k_b = η δ_b/(B N) (for B = 1: (η²/N) s δδᵀ with s = ‖x‖²/N). Checked along 2000 random steps.
#[test]
fn gram_update_is_the_exact_finite_n_recursion() {
    for (act, batch) in [(Activation::Quadratic, 1), (Activation::Erf, 1), (Activation::Erf, 4)] {
        let (p, ps, n) = (2, 2, 40);
        let mut sp = spec(act, p, ps, n, batch, 0.5, 0.3);
        if act == Activation::Quadratic {
            sp.training.eta = 0.05; // stable: the run must stay finite for 2000 steps
        }
        let mut sim = ChainSimulator::new(sp.clone(), TeacherInit::Gaussian, 1.0, 3);
        let d = p + ps;
        for _ in 0..2000 {
            let c = factor_gram(&sim.factor);
            let s = sim.factor.stride;
            let w = sim.factor.width;
            sim.draw();
            let gamma = DMatrix::from_fn(batch, w, |b, j| sim.scratch.g[b * s + j]);
            let a = DMatrix::from_fn(batch, batch, |b, j| sim.scratch.a[b * s + j]);
            sim.apply();
            let xx = &gamma * gamma.transpose() + &a * a.transpose();
            let k = DMatrix::from_fn(p, batch, |i, b| sim.scratch.coef[i * batch + b]);
            let z = DMatrix::from_fn(d, batch, |i, b| sim.scratch.z[b * d + i]);
            let lam = z.rows(ps, p).into_owned();
            let nu = z.rows(0, ps).into_owned();
            let kappa = 1.0 - sp.training.eta * sp.training.weight_decay / n as f64;
            let q = c.view((ps, ps), (p, p)).into_owned();
            let m = c.view((ps, 0), (p, ps)).into_owned();
            let q_new =
                &q * kappa * kappa + (&k * lam.transpose() + &lam * k.transpose()) * kappa + &k * &xx * k.transpose();
            let m_new = &m * kappa + &k * nu.transpose();
            let c_new = factor_gram(&sim.factor);
            let dq = (c_new.view((ps, ps), (p, p)) - &q_new).amax();
            assert!(
                dq < 1e-12 * (1.0 + q_new.amax()),
                "{act:?} B={batch}: {dq} {c_new} {q_new}"
            );
            assert!((c_new.view((ps, 0), (p, ps)) - &m_new).amax() < 1e-12 * (1.0 + m_new.amax()));
            assert_eq!(c_new.view((0, 0), (ps, ps)), c.view((0, 0), (ps, ps)));
        }
    }
}

/// Over 10⁶ steps the factor stays exactly in lower-trapezoidal form, C = F Fᵀ stays finite with
/// P unchanged bit for bit, and the accumulated C agrees with the recursion summed in parallel to
/// 1e-9 (no drift from the repeated orthogonal transformations).
#[test]
fn long_runs_keep_the_factor_exact() {
    let (p, ps, n) = (2, 1, 30);
    let mut sp = spec(Activation::Erf, p, ps, n, 1, 0.0, 0.0);
    sp.training.eta = 0.2;
    let mut sim = ChainSimulator::new(sp.clone(), TeacherInit::Orthonormal, 1.0, 9);
    let p0 = sim.overlaps().p;
    let mut c = factor_gram(&sim.factor);
    let d = p + ps;
    for _ in 0..1_000_000 {
        sim.draw();
        let w = sim.factor.width;
        let g2: f64 = sim.scratch.g[..w].iter().map(|x| x * x).sum::<f64>() + sim.scratch.a[0] * sim.scratch.a[0];
        sim.apply();
        // B = 1: C_ss' = C_ss + k λᵀ + λ kᵀ + ‖x‖² k kᵀ, C_st' = C_st + k νᵀ.
        let z: Vec<f64> = sim.scratch.z[..d].to_vec();
        let k: Vec<f64> = sim.scratch.coef[..p].to_vec();
        for i in 0..p {
            for j in 0..p {
                c[(ps + i, ps + j)] += k[i] * z[ps + j] + z[ps + i] * k[j] + g2 * k[i] * k[j];
            }
            for t in 0..ps {
                c[(ps + i, t)] += k[i] * z[t];
                c[(t, ps + i)] = c[(ps + i, t)];
            }
        }
    }
    let diff = (factor_gram(&sim.factor) - &c).amax();
    assert!(diff < 1e-9, "drift {diff}");
    assert_eq!(sim.overlaps().p, p0);
    for i in 0..p {
        for j in ps + i + 1..sim.factor.stride {
            assert_eq!(sim.factor.f[(ps + i) * sim.factor.stride + j], 0.0);
        }
    }
}

/// The chain's initial overlaps have the moments of the direct initialisation: E[Q_ij] = σ₀² δ_ij,
/// Var[Q_ii] = 2σ₀⁴/N, E[M²_ik] = σ₀²/N (orthonormal teacher), over 4000 draws: the mean of Q_ii
/// within 5 standard errors; the two second moments within 15% (their relative standard errors are
/// √(2/4000) ≈ 2.2% and ≈ 2.5%, so 15% is 6 of them).
#[test]
fn initial_moments() {
    let (p, ps, n, sigma0, draws) = (2, 2, 25, 0.8, 4000);
    let sp = spec(Activation::Quadratic, p, ps, n, 1, 0.0, 0.0);
    let mut sum_q = DMatrix::<f64>::zeros(p, p);
    let mut sum_q2 = DMatrix::<f64>::zeros(p, p);
    let mut sum_m2 = DMatrix::<f64>::zeros(p, ps);
    for seed in 0..draws {
        let o = ChainSimulator::new(sp.clone(), TeacherInit::Orthonormal, sigma0, seed).overlaps();
        sum_q += &o.q;
        sum_q2 += o.q.component_mul(&o.q);
        sum_m2 += o.m.component_mul(&o.m);
    }
    let dr = draws as f64;
    let s2 = sigma0 * sigma0;
    let nn = n as f64;
    for i in 0..p {
        let mean = sum_q[(i, i)] / dr;
        let var = sum_q2[(i, i)] / dr - mean * mean;
        assert!((mean - s2).abs() < 5.0 * (2.0 * s2 * s2 / nn / dr).sqrt());
        assert!((var / (2.0 * s2 * s2 / nn) - 1.0).abs() < 0.15, "var {var}");
        for k in 0..ps {
            let m2 = sum_m2[(i, k)] / dr;
            assert!((m2 / (s2 / nn) - 1.0).abs() < 0.15, "E M² {m2}");
        }
    }
}

/// Record times, sample counts, training loss and early stop follow the `Simulator` contract.
#[test]
fn run_records_like_the_direct_simulator() {
    let sp = spec(Activation::Quadratic, 2, 1, 100, 4, 0.0, 0.0);
    let mut sim = ChainSimulator::new(sp.clone(), TeacherInit::Orthonormal, 1.0, 5);
    let grid = [0.0, 0.5, 1.0, 2.0];
    let traj = sim.run(&grid, &mut |_| ControlFlow::Continue(()));
    let t: Vec<f64> = traj.records.iter().map(|r| r.t).collect();
    assert_eq!(t, vec![0.0, 0.52, 1.0, 2.0]); // round(0.5·100/4) = 13 steps → t = 0.52
    assert_eq!(traj.samples, 200);
    assert!(traj.records[0].train_loss.is_none() && traj.records[1].train_loss.unwrap() > 0.0);
    let mut sim = ChainSimulator::new(sp, TeacherInit::Orthonormal, 1.0, 5);
    let traj = sim.run(&grid, &mut |r| {
        if r.t >= 1.0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(traj.records.len(), 3);
    assert_eq!(traj.samples, 100);
}

/// A run beyond the stability limit (quadratic, p = p* = 1, a = v = 1, η = 2) reports divergence.
#[test]
fn divergence_is_detected() {
    let mut sp = spec(Activation::Quadratic, 1, 1, 50, 1, 0.0, 0.0);
    sp.model.a = vec![1.0];
    sp.training.eta = 2.0;
    let mut sim = ChainSimulator::new(sp, TeacherInit::Orthonormal, 1.0, 1);
    let traj = sim.run(&[0.0, 10.0, 20.0], &mut |_| ControlFlow::Continue(()));
    let t = traj.diverged_at.expect("diverges");
    assert!(t > 0.0 && t <= 10.0);
}

/// Tiny N: more rows than dimensions (d > N) and batches larger than the complement.
#[test]
fn tiny_dimensions_stay_consistent() {
    let sp = spec(Activation::Erf, 3, 2, 3, 4, 0.1, 0.1);
    let mut sim = ChainSimulator::new(sp, TeacherInit::Gaussian, 1.0, 4);
    assert_eq!(sim.rank(), 3);
    let mut rng = SimRng::seed_from_u64(0);
    let mut v = vec![0.0; 5];
    for _ in 0..1000 {
        assert!(sim.step().is_finite());
        assert!(sim.rank() <= 3);
        // C stays PSD with rank ≤ N = 3: vᵀCv ≥ 0.
        fill_standard_normal(&mut rng, &mut v);
        let c = sim.factor.gram();
        let vv = nalgebra::DVector::from_column_slice(&v);
        assert!((vv.transpose() * &c * &vv)[(0, 0)] >= -1e-12);
    }
}

/// The specialised steps (constant p, p*, B = 1) perform the general step's floating-point
/// operations in the same order: the factor, the losses and the random streams stay equal bit for
/// bit, from a zero student (width growing through the general path), with weight decay and label
/// noise, for quadratic and erf, across the whole (p, p*) table.
#[test]
fn specialised_step_is_bit_identical() {
    for (act, wd, noise, sigma0) in [(Activation::Quadratic, 0.0, 0.0, 1.0), (Activation::Erf, 0.3, 0.1, 0.0)] {
        for p in 1..=MAX_FIXED {
            for ps in 1..=MAX_FIXED {
                let mut s = spec(act, p, ps, 37, 1, wd, noise);
                s.training.eta = 0.01; // stable: the comparison is on finite numbers
                let mut fast = ChainSimulator::new(s.clone(), TeacherInit::Gaussian, sigma0, 9);
                let mut slow = fast.clone();
                slow.fast = None;
                assert!(fast.fast.is_some());
                for t in 0..300 {
                    let (lf, ls) = (fast.step(), slow.step());
                    assert!(
                        lf.is_finite(),
                        "{act:?} p = {p}, p* = {ps}, step {t}: {:?}",
                        slow.factor
                    );
                    assert_eq!(lf.to_bits(), ls.to_bits());
                }
                assert!(fast.factor.f.iter().all(|x| x.is_finite()));
                assert_eq!(fast.factor, slow.factor, "p = {p}, p* = {ps}");
                assert_eq!(fast.rng, slow.rng);
            }
        }
    }
}
