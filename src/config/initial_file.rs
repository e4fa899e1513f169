//! `[ode] initial = "file"`: the ODE's initial overlaps (and, for a trained second layer, a) read from
//! a file, so that an ODE can continue from any recorded state.
//!
//! * CSV in the format of `trajectories.csv` / `ode.csv`: a header naming the columns `q_i_j` (i ≤ j),
//!   `m_i_k` and optionally `a_i` (other columns such as n, seed, t, eg are ignored); the row
//!   `[ode] initial_row` of the data (0 = the first row after the header) is taken.
//! * JSON: an object `{"q": [[…]], "m": [[…]], "p": [[…]], "a": […]}` with `p` and `a` optional.
//!
//! Every width must match the model's p and p*; entries must be finite.

use nalgebra::DMatrix;
use std::path::Path;

/// What an initial-condition file holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FileInitial {
    pub q: DMatrix<f64>,
    pub m: DMatrix<f64>,
    /// P, when the file has it (JSON only).
    pub p: Option<DMatrix<f64>>,
    /// The second layer, when the file has it.
    pub a: Option<Vec<f64>>,
}

/// Reads `path` (`.json`, otherwise CSV) for a model of widths (p, p*); `row` selects a CSV row.
/// Errors are messages about the file (the caller names the field).
pub(super) fn read(path: &Path, p: usize, k: usize, row: usize) -> Result<FileInitial, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if json {
        from_json(&text, p, k)
    } else {
        from_csv(&text, p, k, row)
    };
    parsed.map_err(|m| format!("{}: {m}", path.display()))
}

fn from_csv(text: &str, p: usize, k: usize, row: usize) -> Result<FileInitial, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("malformed CSV: {e}"))?
        .iter()
        .map(String::from)
        .collect();
    check_columns(&header, p, k)?;
    let record = reader
        .records()
        .nth(row)
        .ok_or_else(|| format!("has no data row {row} (`ode.initial_row` counts from 0 after the header)"))?
        .map_err(|e| format!("malformed CSV: {e}"))?;
    let value = |name: &str| -> Result<f64, String> {
        let i = header.iter().position(|h| h == name).expect("checked column");
        let x: f64 = record[i]
            .trim()
            .parse()
            .map_err(|_| format!("row {row}, column {name}: `{}` is not a number", &record[i]))?;
        finite(x, name)
    };
    let mut q = DMatrix::zeros(p, p);
    for i in 0..p {
        for j in i..p {
            q[(i, j)] = value(&format!("q_{i}_{j}"))?;
            q[(j, i)] = q[(i, j)];
        }
    }
    let mut m = DMatrix::zeros(p, k);
    for i in 0..p {
        for l in 0..k {
            m[(i, l)] = value(&format!("m_{i}_{l}"))?;
        }
    }
    let a = if header.iter().any(|h| h == "a_0") {
        Some((0..p).map(|i| value(&format!("a_{i}"))).collect::<Result<_, _>>()?)
    } else {
        None
    };
    Ok(FileInitial { q, m, p: None, a })
}

/// The overlap columns must be exactly those of widths (p, p*), and a_i, if any, exactly p of them.
fn check_columns(header: &[String], p: usize, k: usize) -> Result<(), String> {
    let expected = crate::overlaps::Overlaps::column_names(p, k);
    if let Some(missing) = expected.iter().find(|c| !header.contains(c)) {
        return Err(format!(
            "has no column {missing}: its widths do not match the model's p = {p}, p* = {k}"
        ));
    }
    let a_names: Vec<String> = (0..p).map(|i| format!("a_{i}")).collect();
    for h in header {
        let overlap = h.starts_with("q_") || h.starts_with("m_");
        if (overlap && !expected.contains(h)) || (h.starts_with("a_") && !a_names.contains(h)) {
            return Err(format!("has a column {h} beyond the model's widths p = {p}, p* = {k}"));
        }
    }
    let a_count = header.iter().filter(|h| a_names.contains(h)).count();
    if a_count != 0 && a_count != p {
        return Err(format!("has {a_count} of the {p} columns a_0 … a_{}", p - 1));
    }
    Ok(())
}

fn from_json(text: &str, p: usize, k: usize) -> Result<FileInitial, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let obj = v.as_object().ok_or("must be a JSON object {\"q\": …, \"m\": …}")?;
    if let Some(key) = obj.keys().find(|key| !["q", "m", "p", "a"].contains(&key.as_str())) {
        return Err(format!("unknown key `{key}` (expected q, m, p, a)"));
    }
    let matrix = |key: &str, r: usize, c: usize| -> Result<Option<DMatrix<f64>>, String> {
        let Some(x) = obj.get(key) else { return Ok(None) };
        let rows: Vec<Vec<f64>> = serde_json::from_value(x.clone())
            .map_err(|_| format!("`{key}` must be a {r}×{c} matrix (list of rows of numbers)"))?;
        if rows.len() != r || rows.iter().any(|row| row.len() != c) {
            return Err(format!("`{key}` must be a {r}×{c} matrix to match p = {p}, p* = {k}"));
        }
        for &x in rows.iter().flatten() {
            finite(x, key)?;
        }
        Ok(Some(DMatrix::from_fn(r, c, |i, j| rows[i][j])))
    };
    let q = matrix("q", p, p)?.ok_or("needs `q`")?;
    let m = matrix("m", p, k)?.ok_or("needs `m`")?;
    let pm = matrix("p", k, k)?;
    let a = match obj.get("a") {
        None => None,
        Some(x) => {
            let a: Vec<f64> =
                serde_json::from_value(x.clone()).map_err(|_| "`a` must be a list of numbers".to_string())?;
            if a.len() != p {
                return Err(format!("`a` has {} entries, expected p = {p}", a.len()));
            }
            for &x in &a {
                finite(x, "a")?;
            }
            Some(a)
        }
    };
    Ok(FileInitial { q, m, p: pm, a })
}

fn finite(x: f64, name: &str) -> Result<f64, String> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("{name} is not finite ({x})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "n,seed,t,t_exact,eg,train_loss,q_0_0,q_0_1,q_1_1,m_0_0,m_1_0,a_0,a_1\n\
                       100,0,0,0,0.5,,1,0.1,0.9,0.01,0.02,0.5,0.5\n\
                       100,0,1,1,0.4,0.41,1.1,0.2,0.8,0.3,0.4,0.6,0.7\n";

    #[test]
    fn csv_rows_and_widths() {
        let f = from_csv(CSV, 2, 1, 1).unwrap();
        assert_eq!(f.q, DMatrix::from_row_slice(2, 2, &[1.1, 0.2, 0.2, 0.8]));
        assert_eq!(f.m, DMatrix::from_row_slice(2, 1, &[0.3, 0.4]));
        assert_eq!(f.a, Some(vec![0.6, 0.7]));
        assert!(from_csv(CSV, 2, 1, 2).unwrap_err().contains("no data row 2"));
        assert!(from_csv(CSV, 3, 1, 0).unwrap_err().contains("q_0_2"));
        assert!(from_csv(CSV, 1, 1, 0).unwrap_err().contains("beyond"));
        assert!(from_csv(CSV, 2, 2, 0).unwrap_err().contains("m_0_1"));
        let bad = CSV.replace("0.3,0.4", "nan,0.4");
        assert!(from_csv(&bad, 2, 1, 1).unwrap_err().contains("m_0_0"));
        let no_a = "q_0_0,m_0_0\n2,0.5\n";
        assert_eq!(from_csv(no_a, 1, 1, 0).unwrap().a, None);
    }

    #[test]
    fn json_shapes() {
        let f = from_json(
            r#"{"q": [[1.0]], "m": [[0.5, 0.1]], "p": [[1, 0], [0, 1]], "a": [2]}"#,
            1,
            2,
        )
        .unwrap();
        assert_eq!((f.q[(0, 0)], f.m[(0, 1)], f.a), (1.0, 0.1, Some(vec![2.0])));
        assert!(f.p.is_some());
        assert!(from_json(r#"{"q": [[1.0]], "m": [[0.5]]}"#, 1, 2)
            .unwrap_err()
            .contains("1×2"));
        assert!(from_json(r#"{"q": [[1.0]]}"#, 1, 1).unwrap_err().contains("needs `m`"));
        assert!(from_json(r#"{"q": [[1.0]], "m": [[1.0]], "w": 1}"#, 1, 1)
            .unwrap_err()
            .contains("`w`"));
        assert!(from_json(r#"{"q": [[1.0]], "m": [[1.0]], "a": [1, 2]}"#, 1, 1)
            .unwrap_err()
            .contains("`a`"));
        assert!(read(Path::new("/nonexistent/x.csv"), 1, 1, 0)
            .unwrap_err()
            .contains("cannot read /nonexistent/x.csv"));
    }
}
