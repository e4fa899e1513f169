//! CPU-feature dispatch: which instruction set the hot kernels (generator, fused SGD step) run on.
//!
//! A leaf of the core: the generator in `rng` and the kernels in `simulators::direct` both
//! dispatch on [`Isa`], so it lives below both. It is chosen once per simulator, never per call.

/// The instruction set a hot kernel runs on, chosen once at run time.
///
/// The default `cargo build --release` targets baseline x86-64, so the AVX2/FMA kernels are compiled
/// with `#[target_feature]` and selected by [`Isa::detect`]. Setting the environment variable
/// `HDSGD_PORTABLE=1` forces the portable kernels (to compare, or to work around a suspected CPU issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 with AVX2 and FMA (explicit `std::arch` kernels).
    Avx2Fma,
    /// Plain Rust, any target.
    Portable,
}

impl Isa {
    /// The best instruction set of this CPU (honouring `HDSGD_PORTABLE`).
    pub fn detect() -> Isa {
        if std::env::var_os("HDSGD_PORTABLE").is_some_and(|v| v != "0") {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// Whether this instruction set can run here (Avx2Fma only on a CPU that has it).
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma => false,
        }
    }

    /// Short name for reports ("avx2+fma" or "portable").
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2Fma => "avx2+fma",
            Isa::Portable => "portable",
        }
    }
}

/// Whether the AVX-512F versions of the kernels may be used: the CPU has AVX-512F and
/// `HDSGD_NO_AVX512` is unset (set it to measure or test the AVX2 path on an AVX-512 machine).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::env::var_os("HDSGD_NO_AVX512").is_none_or(|v| v == "0") && is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An instruction set whose tests must not pass silently where it is missing.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdFeature {
    /// AVX2 + FMA (required in CI by `HDSGD_REQUIRE_AVX2=1`).
    Avx2,
    /// AVX-512F (required in CI by `HDSGD_REQUIRE_AVX512=1`).
    Avx512,
}

/// Test support: whether the tests of `feature` can run here (`available`). When they cannot, it
/// prints `SKIPPED <test>: …` (visible with `--nocapture` and in CI logs) and returns false, unless
/// `HDSGD_REQUIRE_AVX2=1` / `HDSGD_REQUIRE_AVX512=1` says that this machine must run them (`.ci/run`
/// sets them when /proc/cpuinfo lists the feature): then it panics, so that a CPU with the feature
/// never skips its tests silently (e.g. with `HDSGD_PORTABLE` or `HDSGD_NO_AVX512` left set).
#[doc(hidden)]
pub fn simd_tests_enabled(feature: SimdFeature, available: bool, test: &str) -> bool {
    if available {
        return true;
    }
    let (name, var) = match feature {
        SimdFeature::Avx2 => ("AVX2/FMA", "HDSGD_REQUIRE_AVX2"),
        SimdFeature::Avx512 => ("AVX-512F", "HDSGD_REQUIRE_AVX512"),
    };
    if std::env::var_os(var).is_some_and(|v| v != "0") {
        panic!(
            "{test}: {name} is not usable here (CPU, or HDSGD_PORTABLE / HDSGD_NO_AVX512 set), but {var}=1 requires its tests"
        );
    }
    eprintln!("SKIPPED {test}: no {name} on this CPU (or disabled); set {var}=1 to make this an error");
    false
}
