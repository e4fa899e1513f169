//! The teacher–student model of theory.md §1: activations, widths, second layers (fixed, or the
//! student's trained by SGD: [`SecondLayerSgd`]) and label noise.
//!
//! Student: ŷ = Σ_i a_i g(λ_i), λ_i = w_i·x/√N (i < p). Teacher: y = Σ_k v_k g(ν_k) + √Δ ξ,
//! ν_k = w*_k·x/√N (k < p*). Loss per sample ℓ = ½(y − ŷ)².

mod activation;

pub use activation::{erf, Activation};

use serde::{Deserialize, Serialize};

/// How a second layer is specified in an experiment file.
///
/// * `"uniform"`: every weight equal to 1/width (the averaging committee);
/// * `"ones"`: every weight 1;
/// * an explicit list of `width` numbers;
/// * a table `{ init = <one of the above>, train = true, eta = η_a, weight_decay = ℓ_a }`: the
///   student's second layer starting at `init` and trained by SGD ([`SecondLayerSgd`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SecondLayer {
    Named(SecondLayerKind),
    Explicit(Vec<f64>),
    Table(SecondLayerTable),
}

/// The table form of [`SecondLayer`] (`[model] a = { init = "uniform", train = true, eta = 0.5 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondLayerTable {
    /// Initial weights: "uniform", "ones" or a list. Default "uniform".
    #[serde(default = "uniform_layer")]
    pub init: Box<SecondLayer>,
    /// Whether SGD trains this layer. Default false (then `eta` and `weight_decay` must be absent).
    #[serde(default)]
    pub train: bool,
    /// Second-layer learning rate η_a > 0 (required when `train = true`).
    pub eta: Option<f64>,
    /// Second-layer weight decay ℓ_a ≥ 0. Default 0.
    pub weight_decay: Option<f64>,
}

fn uniform_layer() -> Box<SecondLayer> {
    Box::new(SecondLayer::Named(SecondLayerKind::Uniform))
}

/// By hand rather than `untagged`, so that a wrong value says what is allowed (an untagged enum
/// says only that no variant matched).
impl<'de> Deserialize<'de> for SecondLayer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecondLayer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""uniform", "ones" or a list of numbers (or a table { init, train, eta, weight_decay })"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecondLayer, E> {
                match v {
                    "uniform" => Ok(SecondLayer::Named(SecondLayerKind::Uniform)),
                    "ones" => Ok(SecondLayer::Named(SecondLayerKind::Ones)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SecondLayer, A::Error> {
                let mut w = Vec::new();
                while let Some(x) = seq.next_element::<f64>()? {
                    w.push(x);
                }
                Ok(SecondLayer::Explicit(w))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SecondLayer, A::Error> {
                SecondLayerTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(SecondLayer::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Named second layers, see [`SecondLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondLayerKind {
    Uniform,
    Ones,
}

impl SecondLayer {
    /// The weights for a layer of `width` units (a table's `init`), or a message if an explicit list
    /// has the wrong length.
    pub fn resolve(&self, width: usize) -> Result<Vec<f64>, String> {
        match self {
            SecondLayer::Table(t) => match &*t.init {
                SecondLayer::Table(_) => Err("`init` must be \"uniform\", \"ones\" or a list, not a table".into()),
                init => init.resolve(width).map_err(|m| format!("init {m}")),
            },
            SecondLayer::Named(SecondLayerKind::Uniform) => Ok(vec![1.0 / width as f64; width]),
            SecondLayer::Named(SecondLayerKind::Ones) => Ok(vec![1.0; width]),
            SecondLayer::Explicit(w) => {
                if w.len() != width {
                    Err(format!("has {} entries, expected {width}", w.len()))
                } else if w.iter().any(|x| !x.is_finite()) {
                    Err("contains a non-finite entry".into())
                } else {
                    Ok(w.clone())
                }
            }
        }
    }

    /// The SGD of this layer: `None` when it is fixed, the rate and decay of a table with
    /// `train = true`, or a message (η_a must be finite and > 0, ℓ_a finite and ≥ 0; a fixed layer
    /// takes neither).
    pub fn sgd(&self) -> Result<Option<SecondLayerSgd>, String> {
        let SecondLayer::Table(t) = self else {
            return Ok(None);
        };
        if !t.train {
            return match (t.eta, t.weight_decay) {
                (None, None) => Ok(None),
                _ => Err("`eta` and `weight_decay` need `train = true`".into()),
            };
        }
        let eta = t
            .eta
            .ok_or("`train = true` needs `eta`, the second-layer learning rate η_a > 0")?;
        if !(eta.is_finite() && eta > 0.0) {
            return Err(format!(
                "`eta` must be a finite number > 0 (got {eta}); for a fixed layer write `train = false`"
            ));
        }
        let weight_decay = t.weight_decay.unwrap_or(0.0);
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(format!("`weight_decay` must be finite and ≥ 0 (got {weight_decay})"));
        }
        Ok(Some(SecondLayerSgd { eta, weight_decay }))
    }
}

/// One-pass SGD on the student's second layer, simultaneous with the first layer's (theory.md §2):
///
/// a_i ← a_i (1 − η_a ℓ_a/N) + (η_a/(B N)) Σ_b r^b g(λ_i^b),
///
/// with the residuals r^b and pre-activations λ^b of the same step (before either layer moves), so
/// that per sample a moves by (η_a/N)(y − ŷ) g(λ_i) (plain SGD on ℓ = ½(y − ŷ)² with step η_a/N)
/// and, at t = samples/N, da_i/dt = (η_a/B)(E[r g(λ_i)] − ℓ_a a_i) as N → ∞. nn2pp's `--lr2` is
/// η_a (its second-layer step is lr2/N per sample).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SecondLayerSgd {
    /// Second-layer learning rate η_a (> 0 from an experiment file; 0 is accepted by the library
    /// and leaves a unchanged).
    pub eta: f64,
    /// Second-layer weight decay ℓ_a ≥ 0 (scaled by η_a, like ℓ₂).
    pub weight_decay: f64,
}

/// A resolved two-layer teacher–student model (theory.md §1).
///
/// ```
/// use hdsgd::model::{Activation, Model};
/// let m = Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0);
/// assert_eq!((m.p(), m.p_star()), (2, 1));
/// // ŷ = Σ a_i g(λ_i):
/// assert_eq!(m.student_output(&[1.0, 3.0]), 5.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// g, shared by student and teacher.
    pub activation: Activation,
    /// Student second layer a (length p).
    pub a: Vec<f64>,
    /// Teacher second layer v (length p*).
    pub v: Vec<f64>,
    /// Label-noise variance Δ: y = Σ v_k g(ν_k) + √Δ ξ.
    pub noise: f64,
    /// SGD on the student's second layer a (`None`: a is fixed). When set, `a` is the current
    /// second layer of a run (its initial value in an experiment's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_a: Option<SecondLayerSgd>,
}

impl Model {
    /// A model from its parts; p = a.len(), p* = v.len().
    pub fn new(activation: Activation, a: Vec<f64>, v: Vec<f64>, noise: f64) -> Self {
        Model {
            activation,
            a,
            v,
            noise,
            train_a: None,
        }
    }

    /// The same model with its student second layer trained by `sgd`.
    pub fn with_trained_a(mut self, sgd: SecondLayerSgd) -> Self {
        self.train_a = Some(sgd);
        self
    }

    /// Student width p.
    pub fn p(&self) -> usize {
        self.a.len()
    }

    /// Teacher width p*.
    pub fn p_star(&self) -> usize {
        self.v.len()
    }

    /// ŷ = Σ_i a_i g(λ_i).
    #[inline]
    pub fn student_output(&self, lambda: &[f64]) -> f64 {
        let g = self.activation;
        self.a.iter().zip(lambda).map(|(a, &l)| a * g.g(l)).sum()
    }

    /// Noise-free teacher output Σ_k v_k g(ν_k).
    #[inline]
    pub fn teacher_output(&self, nu: &[f64]) -> f64 {
        let g = self.activation;
        self.v.iter().zip(nu).map(|(v, &n)| v * g.g(n)).sum()
    }

    /// The coefficients c = (−a, v) over z = (λ, ν), so that the noise-free residual is r = Σ_m c_m g(z_m).
    pub fn signed_coefficients(&self) -> Vec<f64> {
        self.a.iter().map(|a| -a).chain(self.v.iter().copied()).collect()
    }
}

/// The one-pass SGD hyper-parameters of theory.md §2.
///
/// w_i ← w_i (1 − η ℓ₂/N) + (η/(B√N)) Σ_b δ_i^b x^b, δ_i^b = a_i g'(λ_i^b) r^b.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// Learning rate η > 0.
    pub eta: f64,
    /// Weight decay ℓ₂ ≥ 0.
    pub weight_decay: f64,
    /// Mini-batch size B ≥ 1.
    pub batch: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_layers_resolve() {
        let u = SecondLayer::Named(SecondLayerKind::Uniform).resolve(4).unwrap();
        assert_eq!(u, vec![0.25; 4]);
        assert_eq!(
            SecondLayer::Named(SecondLayerKind::Ones).resolve(2).unwrap(),
            vec![1.0, 1.0]
        );
        assert!(SecondLayer::Explicit(vec![1.0]).resolve(2).is_err());
    }

    /// A wrong second layer says which values are allowed; lists of integers are numbers.
    #[test]
    fn second_layer_from_toml() {
        #[derive(Deserialize)]
        struct T {
            #[allow(dead_code)]
            a: SecondLayer,
        }
        let e = toml::from_str::<T>("a = \"twos\"").err().unwrap().to_string();
        assert!(
            e.contains("\"uniform\", \"ones\" or a list of numbers") && e.contains("twos"),
            "{e}"
        );
        assert!(toml::from_str::<T>("a = 3").is_err());
        assert!(toml::from_str::<T>("a = [1, \"x\"]").is_err());
        let t: T = toml::from_str("a = [1, 0.5]").unwrap();
        assert_eq!(t.a, SecondLayer::Explicit(vec![1.0, 0.5]));
    }
}
