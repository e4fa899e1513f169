//! Python values → TOML: the dict form of an experiment is serialised to TOML text and then goes
//! through the CLI's own loader, so that it is validated by the same code with the same messages.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use toml::{Table, Value};

/// Converts a Python mapping to a TOML table. Keys must be strings; values may be dicts, lists,
/// tuples, bools, ints, floats, strings, `os.PathLike`, or anything with `tolist()` (NumPy arrays
/// and scalars). A `None` value leaves the key out (TOML has no null): the default applies.
pub fn table(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Table> {
    let dict = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "`{}` must be a dict (a TOML table), got {}",
            if path.is_empty() { "experiment" } else { path },
            type_name(obj)
        ))
    })?;
    let mut t = Table::new();
    for (k, v) in dict.iter() {
        let key: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("keys of `{path}` must be strings, got {}", type_name(&k))))?;
        let sub = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let Some(value) = value(&v, &sub)? {
            t.insert(key, value);
        }
    }
    Ok(t)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn value(v: &Bound<'_, PyAny>, path: &str) -> PyResult<Option<Value>> {
    if v.is_none() {
        return Ok(None);
    }
    if v.is_instance_of::<PyBool>() {
        return Ok(Some(Value::Boolean(v.extract()?)));
    }
    if v.is_instance_of::<PyInt>() {
        let i: i64 = v.extract().map_err(|_| {
            PyValueError::new_err(format!(
                "invalid value for `{path}`: {} does not fit a 64-bit signed integer (TOML's)",
                v
            ))
        })?;
        return Ok(Some(Value::Integer(i)));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(Some(Value::Float(v.extract()?)));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(Some(Value::String(v.extract()?)));
    }
    if v.is_instance_of::<PyDict>() {
        return Ok(Some(Value::Table(table(v, path)?)));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = vec![];
        for (i, item) in v.try_iter()?.enumerate() {
            let item = item?;
            match value(&item, &format!("{path}[{i}]"))? {
                Some(x) => out.push(x),
                None => {
                    return Err(PyValueError::new_err(format!(
                        "invalid value for `{path}`: None in a list"
                    )))
                }
            }
        }
        return Ok(Some(Value::Array(out)));
    }
    // NumPy arrays and scalars (and anything else list-like that knows how to become a list).
    if v.hasattr("tolist")? {
        let l = v.call_method0("tolist")?;
        if !l.is(v) {
            return value(&l, path);
        }
    }
    let fspath = v.py().import("os")?.getattr("fspath")?;
    if let Ok(s) = fspath.call1((v,)) {
        if s.is_instance_of::<PyString>() {
            return Ok(Some(Value::String(s.extract()?)));
        }
    }
    Err(PyTypeError::new_err(format!(
        "`{path}`: cannot express a {} in an experiment file",
        type_name(v)
    )))
}
