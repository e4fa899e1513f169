//! Activation functions g and their derivatives g' (theory.md §1).
// Cody's published coefficients are kept digit for digit.
#![allow(clippy::excessive_precision)]

use serde::{Deserialize, Serialize};
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// The activation g of both networks.
///
/// * `Quadratic`: g(z) = z², g'(z) = 2z (the first-class case: closed-form ODEs).
/// * `Linear`: g(z) = z.
/// * `Erf`: g(z) = erf(z/√2) (Saad–Solla convention), g'(z) = √(2/π) e^{−z²/2}.
/// * `Relu`: g(z) = max(z, 0), g'(z) = 1{z > 0}.
///
/// ```
/// use hdsgd::model::Activation;
/// assert_eq!(Activation::Quadratic.g(3.0), 9.0);
/// assert!((Activation::Erf.g(1e9) - 1.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Quadratic,
    Linear,
    Erf,
    Relu,
}

impl Activation {
    /// g(z).
    #[inline(always)]
    pub fn g(self, z: f64) -> f64 {
        match self {
            Activation::Quadratic => z * z,
            Activation::Linear => z,
            Activation::Erf => erf(z * FRAC_1_SQRT_2),
            Activation::Relu => z.max(0.0),
        }
    }

    /// g'(z).
    #[inline(always)]
    pub fn dg(self, z: f64) -> f64 {
        match self {
            Activation::Quadratic => 2.0 * z,
            Activation::Linear => 1.0,
            Activation::Erf => (2.0 / PI).sqrt() * (-0.5 * z * z).exp(),
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Name as written in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Quadratic => "quadratic",
            Activation::Linear => "linear",
            Activation::Erf => "erf",
            Activation::Relu => "relu",
        }
    }
}

/// Error function, to full f64 precision.
///
/// The standard library has no `erf`; this is W. J. Cody's rational Chebyshev approximation
/// (Math. Comp. 23, 631 (1969)), the one used by most libms, with relative error below 1e-15.
/// Hand-written because pulling a special-functions crate for one function is not worth it.
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    if ax < 0.5 {
        const A: [f64; 5] = [
            3.161_123_743_870_565_6,
            1.138_641_541_510_501_6e2,
            3.774_852_376_853_020_2e2,
            3.209_377_589_138_469_5e3,
            1.857_777_061_846_031_5e-1,
        ];
        const B: [f64; 4] = [
            2.360_129_095_234_412_1e1,
            2.440_246_379_344_441_7e2,
            1.282_616_526_077_372_3e3,
            2.844_236_833_439_170_6e3,
        ];
        let z = x * x;
        let mut num = A[4] * z;
        let mut den = z;
        for i in 0..3 {
            num = (num + A[i]) * z;
            den = (den + B[i]) * z;
        }
        return x * (num + A[3]) / (den + B[3]);
    }
    let s = if x < 0.0 { -1.0 } else { 1.0 };
    if ax >= 6.0 {
        return s;
    }
    s * (1.0 - erfc_pos(ax))
}

/// erfc(x) for x ≥ 0.5 (Cody's second and third ranges).
fn erfc_pos(x: f64) -> f64 {
    let r = if x <= 4.0 {
        const C: [f64; 9] = [
            5.641_884_969_886_700_9e-1,
            8.883_149_794_388_375_9,
            6.611_919_063_714_163e1,
            2.986_351_381_974_001_3e2,
            8.819_522_212_417_691e2,
            1.712_047_612_634_070_7e3,
            2.051_078_377_826_071_6e3,
            1.230_339_354_797_997_2e3,
            2.153_115_354_744_038_3e-8,
        ];
        const D: [f64; 8] = [
            1.574_492_611_070_983_5e1,
            1.176_939_508_913_125e2,
            5.371_811_018_620_098_6e2,
            1.621_389_574_566_690_2e3,
            3.290_799_235_733_459_6e3,
            4.362_619_090_143_247e3,
            3.439_367_674_143_721_6e3,
            1.230_339_354_803_749_4e3,
        ];
        let mut num = C[8] * x;
        let mut den = x;
        for i in 0..7 {
            num = (num + C[i]) * x;
            den = (den + D[i]) * x;
        }
        (num + C[7]) / (den + D[7])
    } else {
        const P: [f64; 6] = [
            3.053_266_349_612_323_4e-1,
            3.603_448_999_498_044_4e-1,
            1.257_817_261_112_292_6e-1,
            1.608_378_514_874_227_5e-2,
            6.587_491_615_298_378_4e-4,
            1.631_538_713_730_709_6e-2,
        ];
        const Q: [f64; 5] = [
            2.568_520_192_289_822_4,
            1.872_952_849_923_460_4,
            5.279_051_029_514_284_1e-1,
            6.051_834_131_244_131_9e-2,
            2.335_204_976_268_691_8e-3,
        ];
        let z = 1.0 / (x * x);
        let mut num = P[5] * z;
        let mut den = z;
        for i in 0..4 {
            num = (num + P[i]) * z;
            den = (den + Q[i]) * z;
        }
        let r = z * (num + P[4]) / (den + Q[4]);
        (1.0 / PI.sqrt() - r) / x
    };
    // exp(-x²) split to keep precision (Cody's trick).
    let xs = (x * 16.0).trunc() / 16.0;
    let del = (x - xs) * (x + xs);
    (-xs * xs).exp() * (-del).exp() * r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_reference_values() {
        // Reference values from Abramowitz & Stegun table 7.1 / high-precision evaluation.
        let cases = [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (4.5, 0.999_999_999_803_383_0),
        ];
        for (x, e) in cases {
            assert!((erf(x) - e).abs() < 1e-15, "erf({x}) = {} vs {e}", erf(x));
            assert!((erf(-x) + e).abs() < 1e-15);
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [
            Activation::Quadratic,
            Activation::Linear,
            Activation::Erf,
            Activation::Relu,
        ] {
            for &z in &[-1.7, -0.3, 0.4, 1.9] {
                let h = 1e-6;
                let fd = (act.g(z + h) - act.g(z - h)) / (2.0 * h);
                assert!((fd - act.dg(z)).abs() < 1e-8, "{act:?} at {z}");
            }
        }
    }
}
