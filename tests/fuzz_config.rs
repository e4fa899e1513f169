//! Config fuzzing (issue 12): valid experiment files (every file of experiments/ and a few small
//! ones) mutated one to three times — keys deleted, lines duplicated, deleted or swapped, values
//! retyped and perturbed (zero, negative, huge, NaN, ±∞, empty, repeated), unknown and misplaced
//! keys inserted, the text truncated, random bytes inserted — and fed through the entry points of
//! the command line: `Experiment::from_toml` (and `Experiment::load` for raw bytes) and the
//! pre-flight of every command (`studies::preflight::plan`).
//!
//! Every case must return without panicking or aborting (an allocation failure would abort the
//! whole test binary), and every rejection must name a field (`invalid value for `x.y``) or a
//! position (`line L, column C`).
//!
//! 10 000 cases by default (`HDSGD_FUZZ_CASES` to change), from a fixed seed (`HDSGD_FUZZ_SEED`);
//! `HDSGD_FUZZ_LOG=FILE` appends every rejection message to FILE (to read what users would see).

use hdsgd::config::Experiment;
use hdsgd::studies::preflight::{plan, Command};
use hdsgd::studies::OutputOptions;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::path::PathBuf;
use std::sync::OnceLock;
use toml::Value;

const SMALL: &str = r#"
name = "fuzz"
[model]
activation = "quadratic"
p = 2
p_star = 1
a = "uniform"
v = "ones"
noise = 0.0
[init]
teacher = "orthonormal"
sigma0 = 1.0
[training]
eta = 0.2
weight_decay = 0.0
batch = 1
[simulation]
simulator = "direct"
n = [100, 200]
seeds = 2
base_seed = 1
divergence_bound = 1e6
[time]
t_max = 2.0
grid = "log"
t_min = 0.01
points = 10
[ode]
initial = "matched"
rtol = 1e-8
atol = 1e-10
gradient_flow = false
[output]
figures = true
plot = ["m_0_0", "norm_m"]
"#;

const EXPLICIT: &str = r#"
[model]
activation = "erf"
p = 2
p_star = 2
[init]
q0 = [[1.0, 0.0], [0.0, 1.0]]
m0 = [[0.1, 0.0], [0.0, 0.1]]
p = [[1.0, 0.0], [0.0, 1.0]]
[training]
eta = 0.5
[time]
t_max = 5.0
times = [0.5, 1.0, 2.0, 5.0]
[ode]
initial = "explicit"
"#;

const STUDIES: &str = r#"
[model]
activation = "quadratic"
p = 2
p_star = 1
a = [0.5, 0.5]
[init]
sigma0 = 0.1
student_mix = [[0.1], [0.0]]
[training]
eta = 0.15
[simulation]
simulator = "chain"
n = [500, 1000]
seeds = 3
[time]
t_max = 10.0
points = 20
[escape]
criterion = "max_overlap"
fraction = 0.5
plateau_tolerance = 0.05
m_threshold = 0.5
[scaling]
windows = [[0.5, 1.0], [2.0, 5.0]]
[geometry]
observables = ["conserved", "selection", "escape"]
widths = [1, 2]
hessian_n = 30
zero_tol = 1e-6
converged_eg = 1e-4
escape_fraction = 0.5
"#;

/// The valid files the mutations start from.
fn seeds() -> &'static Vec<String> {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| {
        let mut v: Vec<String> = vec![SMALL.into(), EXPLICIT.into(), STUDIES.into()];
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "toml") {
                v.push(std::fs::read_to_string(f).unwrap());
            }
        }
        for (i, s) in v.iter().enumerate() {
            Experiment::from_toml(s, "seed").unwrap_or_else(|e| panic!("seed {i} is not valid: {e}"));
        }
        v
    })
}

/// Key names, real and not, to insert anywhere.
const KEYS: &[&str] = &[
    "name",
    "activation",
    "p",
    "p_star",
    "a",
    "v",
    "noise",
    "teacher",
    "sigma0",
    "student_mix",
    "q0",
    "m0",
    "eta",
    "weight_decay",
    "batch",
    "simulator",
    "n",
    "seeds",
    "base_seed",
    "divergence_bound",
    "t_max",
    "grid",
    "points",
    "t_min",
    "times",
    "initial",
    "rtol",
    "atol",
    "gradient_flow",
    "dir",
    "figures",
    "plot",
    "criterion",
    "fraction",
    "windows",
    "observables",
    "widths",
    "hessian_n",
    "bogus",
    "model",
    "simulation",
    "time",
];

const WORDS: &[&str] = &[
    "quadratic",
    "erf",
    "relu",
    "linear",
    "tanh",
    "uniform",
    "ones",
    "twos",
    "log",
    "direct",
    "chain",
    "matched",
    "explicit",
    "orthonormal",
    "gaussian",
    "conserved",
    "selection",
    "escape",
    "eg",
    "max_overlap",
    "m_0_0",
    "q_9_9",
    "tr_q",
    "norm_m",
    "",
    " ",
    "/",
    "a/b",
    "..",
    "é",
    "\u{0}",
];

/// A TOML value of any type, with the edge cases weighted in.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(2),
            Just(3),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(1_000_000_000_000),
            Just(1 << 40),
            any::<i64>(),
            0i64..100
        ]
        .prop_map(Value::Integer),
        prop_oneof![
            Just(0.0f64),
            Just(-0.0),
            Just(-1.0),
            Just(0.5),
            Just(1e-300),
            Just(1e300),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e12),
            any::<f64>()
        ]
        .prop_map(Value::Float),
        prop_oneof![
            proptest::sample::select(WORDS).prop_map(|s| s.to_string()),
            ".{0,12}".prop_map(|s: String| s)
        ]
        .prop_map(Value::String),
        any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(proptest::sample::select(KEYS).prop_map(String::from), inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// How to change a number, a string or an array in place.
#[derive(Debug, Clone)]
enum Perturb {
    Scale(f64),
    Add(i64),
    Negate,
    Empty,
    Repeat,
    Pop,
}

fn perturb() -> impl Strategy<Value = Perturb> {
    prop_oneof![
        proptest::sample::select(vec![0.0, 0.5, 10.0, 1e3, 1e6, 1e12, 1e300, -1.0]).prop_map(Perturb::Scale),
        (-3i64..4).prop_map(Perturb::Add),
        Just(Perturb::Negate),
        Just(Perturb::Empty),
        Just(Perturb::Repeat),
        Just(Perturb::Pop),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    InsertBytes(prop::sample::Index, Vec<u8>),
    DeleteLine(prop::sample::Index),
    DuplicateLine(prop::sample::Index),
    SwapLines(prop::sample::Index, prop::sample::Index),
    DeleteKey(prop::sample::Index),
    Retype(prop::sample::Index, Value),
    Perturb(prop::sample::Index, Perturb),
    InsertKey(prop::sample::Index, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..6)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => any::<Index>().prop_map(Mutation::DeleteKey),
        3 => (any::<Index>(), value()).prop_map(|(i, v)| Mutation::Retype(i, v)),
        4 => (any::<Index>(), perturb()).prop_map(|(i, p)| Mutation::Perturb(i, p)),
        2 => (any::<Index>(), proptest::sample::select(KEYS), value())
            .prop_map(|(i, k, v)| Mutation::InsertKey(i, k.to_string(), v)),
    ]
}

/// Paths (table keys and array indices) of every value in a TOML tree.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Table(t) => {
            for (k, x) in t {
                prefix.push(Seg::Key(k.clone()));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(Seg::Idx(i));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Table(t)) => t.get_mut(k)?,
            (Seg::Idx(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn all_paths(v: &Value) -> Vec<Vec<Seg>> {
    let mut out = vec![];
    paths(v, &mut vec![], &mut out);
    out
}

/// Applies one mutation to the text (None when it does not apply, e.g. TOML that no longer parses
/// for a value-level mutation: the text is then kept).
fn apply(text: &str, m: &Mutation) -> String {
    let lines: Vec<&str> = text.lines().collect();
    match m {
        Mutation::Truncate(i) => {
            let mut cut = i.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        }
        Mutation::InsertBytes(i, b) => {
            let mut bytes = text.as_bytes().to_vec();
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::DeleteLine(i) if !lines.is_empty() => {
            let k = i.index(lines.len());
            lines
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, l)| *l)
                .collect::<Vec<_>>()
                .join("\n")
        }
        Mutation::DuplicateLine(i) if !lines.is_empty() => {
            let k = i.index(lines.len());
            let mut v = lines.clone();
            v.insert(k, lines[k]);
            v.join("\n")
        }
        Mutation::SwapLines(a, b) if !lines.is_empty() => {
            let mut v = lines.clone();
            v.swap(a.index(lines.len()), b.index(lines.len()));
            v.join("\n")
        }
        Mutation::DeleteKey(_) | Mutation::Retype(..) | Mutation::Perturb(..) | Mutation::InsertKey(..) => {
            let Ok(table) = text.parse::<toml::Table>() else {
                return text.to_string();
            };
            let mut root = Value::Table(table);
            let ps = all_paths(&root);
            if ps.is_empty() {
                return text.to_string();
            }
            match m {
                Mutation::DeleteKey(i) => {
                    let p = &ps[i.index(ps.len())];
                    let (last, parent) = p.split_last().expect("non-empty path");
                    match (at(&mut root, parent), last) {
                        (Some(Value::Table(t)), Seg::Key(k)) => {
                            t.remove(k);
                        }
                        (Some(Value::Array(a)), Seg::Idx(j)) => {
                            a.remove(*j);
                        }
                        _ => {}
                    }
                }
                Mutation::Retype(i, v) => {
                    if let Some(x) = at(&mut root, &ps[i.index(ps.len())]) {
                        *x = v.clone();
                    }
                }
                Mutation::Perturb(i, p) => {
                    if let Some(x) = at(&mut root, &ps[i.index(ps.len())]) {
                        perturb_value(x, p);
                    }
                }
                Mutation::InsertKey(i, k, v) => {
                    // Into the root or into the table holding the chosen value.
                    let p = &ps[i.index(ps.len())];
                    let target = at(&mut root, &p[..p.len() - 1]);
                    if let Some(Value::Table(t)) = target {
                        t.insert(k.clone(), v.clone());
                    } else if let Value::Table(t) = &mut root {
                        t.insert(k.clone(), v.clone());
                    }
                }
                _ => unreachable!(),
            }
            match root {
                Value::Table(t) => toml::to_string(&t).unwrap_or_else(|_| text.to_string()),
                _ => text.to_string(),
            }
        }
        _ => text.to_string(),
    }
}

fn perturb_value(x: &mut Value, p: &Perturb) {
    match (x, p) {
        (Value::Integer(i), Perturb::Scale(s)) => *i = (*i as f64 * s) as i64,
        (Value::Integer(i), Perturb::Add(d)) => *i = i.saturating_add(*d),
        (Value::Integer(i), Perturb::Negate) => *i = i.saturating_neg(),
        (Value::Float(f), Perturb::Scale(s)) => *f *= s,
        (Value::Float(f), Perturb::Add(d)) => *f += *d as f64,
        (Value::Float(f), Perturb::Negate) => *f = -*f,
        (Value::String(s), Perturb::Empty) => s.clear(),
        (Value::String(s), Perturb::Repeat) => *s = s.repeat(2),
        (Value::String(s), Perturb::Pop) => {
            s.pop();
        }
        (Value::Array(a), Perturb::Empty) => a.clear(),
        (Value::Array(a), Perturb::Repeat) => {
            if let Some(f) = a.first().cloned() {
                a.push(f);
            }
        }
        (Value::Array(a), Perturb::Pop) => {
            a.pop();
        }
        (Value::Boolean(b), _) => *b = !*b,
        _ => {}
    }
}

/// Whether an error message names a field or a position.
fn names_field_or_position(msg: &str) -> bool {
    let field = msg.contains("invalid value for `");
    let position = msg.contains("line ") && msg.contains("column ");
    field || position
}

fn log(msg: &str) {
    if let Some(path) = std::env::var_os("HDSGD_FUZZ_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{}", msg.replace('\n', " | "));
        }
    }
}

fn out_dir() -> PathBuf {
    std::env::temp_dir().join(format!("hdsgd-fuzz-never-created-{}", std::process::id()))
}

const COMMANDS: [Command; 6] = [
    Command::Run,
    Command::Ode,
    Command::Plateau,
    Command::Escape,
    Command::Scaling,
    Command::Hessian,
];

/// One case: the checks of the module docs. Returns whether the file was accepted.
fn check(text: &str) -> Result<bool, TestCaseError> {
    match Experiment::from_toml(text, "fuzz") {
        Err(e) => {
            let msg = e.to_string();
            log(&msg);
            prop_assert!(
                names_field_or_position(&msg),
                "rejection names no field or position: {msg}\n--- file ---\n{text}"
            );
            Ok(false)
        }
        Ok(exp) => {
            let opts = OutputOptions {
                out: Some(out_dir()),
                threads: 0,
                force: false,
                ..Default::default()
            };
            for c in COMMANDS {
                if let Err(e) = plan(&exp, c, &opts) {
                    let msg = format!("{e:#}");
                    log(&format!("pre-flight {c:?}: {msg}"));
                    prop_assert!(
                        msg.contains("invalid value for `"),
                        "pre-flight of {c:?} names no field: {msg}\n--- file ---\n{text}"
                    );
                }
            }
            Ok(true)
        }
    }
}

fn cases() -> u32 {
    std::env::var("HDSGD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn runner() -> TestRunner {
    let seed = std::env::var("HDSGD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2026);
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 2000,
        ..Config::default()
    })
}

#[test]
fn mutated_experiment_files_are_accepted_or_rejected_with_a_field_or_position() {
    let start = std::time::Instant::now();
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (
        proptest::sample::select((0..seeds().len()).collect::<Vec<_>>()),
        proptest::collection::vec(mutation(), 1..4),
    );
    runner()
        .run(&strategy, |(s, muts)| {
            let mut text = seeds()[s].clone();
            for m in &muts {
                text = apply(&text, m);
            }
            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if check(&text)? {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let (a, t) = (accepted.into_inner(), total.into_inner());
    eprintln!(
        "fuzz_config: {t} mutated files ({a} accepted by the validation, {} rejected) in {:.1} s",
        t - a,
        start.elapsed().as_secs_f64()
    );
    assert!(t >= cases() as usize);
    // The mutations must exercise both outcomes.
    assert!(a > t / 20 && a < t - t / 20, "{a} of {t} accepted");
}

/// Raw bytes (invalid UTF-8 included) through `Experiment::load`, as `hdsgd check FILE` reads them.
#[test]
fn raw_bytes_through_load_name_a_position() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.toml");
    let strategy = (
        proptest::sample::select((0..seeds().len()).collect::<Vec<_>>()),
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 1..8),
    );
    let mut r = TestRunner::new(Config {
        cases: cases() / 10,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(7),
        ..Config::default()
    });
    r.run(&strategy, |(s, i, b)| {
        let mut bytes = seeds()[s].as_bytes().to_vec();
        let k = i.index(bytes.len() + 1);
        bytes.splice(k..k, b);
        std::fs::write(&file, &bytes).unwrap();
        if let Err(e) = Experiment::load(&file) {
            let msg = e.to_string();
            prop_assert!(names_field_or_position(&msg), "{msg}");
        }
        Ok(())
    })
    .unwrap();
}
