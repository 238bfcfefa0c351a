//! Figures from samples: percentiles, rounding, and the median of repeated runs.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

pub fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

pub fn percentiles(mut v: Vec<f64>, ps: &[(&str, f64)]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mut out = serde_json::Map::new();
    for (name, p) in ps {
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        out.insert((*name).into(), json!(round(v[rank - 1], 3)));
    }
    Value::Object(out)
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// One line from the lines of repeated runs of the same case: every number becomes the median
/// of the runs that have it (a number, so that targets read it as before), with `<key>_min` and
/// `<key>_max` siblings; objects (percentiles) are combined key by key; anything else is the
/// first run's value. Correctness is never read from here: every run is checked by itself.
pub fn median_line(lines: &[Value]) -> Value {
    let Some(first) = lines.first() else {
        return Value::Null;
    };
    let Value::Object(first) = first else {
        return first.clone();
    };
    let mut out = Map::new();
    for (key, value) in first {
        let values: Vec<&Value> = lines.iter().filter_map(|l| l.get(key)).collect();
        let numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
        if value.is_object() {
            let objects: Vec<Value> = values
                .into_iter()
                .filter(|v| v.is_object())
                .cloned()
                .collect();
            out.insert(key.clone(), median_line(&objects));
        } else if !numbers.is_empty() && !value.is_boolean() {
            let (median, min, max) = spread(numbers);
            out.insert(key.clone(), json!(median));
            out.insert(format!("{key}_min"), json!(min));
            out.insert(format!("{key}_max"), json!(max));
        } else if value.is_boolean() {
            // A flag such as `timed_out` is true if it was true in any run.
            let any = values.iter().any(|v| v.as_bool() == Some(true));
            out.insert(key.clone(), json!(any));
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

/// Median (the mean of the middle two for an even count), minimum and maximum.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (round(median, 3), v[0], v[n - 1])
}
