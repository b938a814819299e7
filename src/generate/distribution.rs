//! Per-column distributions, as users write them in a `distribution jsonb` argument:
//!
//! ```json
//! {"quantity":   {"distribution": "lognormal", "mu": 0, "sigma": 1},
//!  "account_id": {"distribution": "zipf", "s": 1.2},
//!  "created_at": {"distribution": "normal", "peak_hours": [9, 10, 14, 15], "stddev_hours": 1}}
//! ```
//!
//! Sampling is done by rand_distr; this module only parses and validates, so that a bad spec is an
//! ERROR 22023 naming the column and the parameter, never a panic halfway through a load.

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson, Uniform, Zipf};
use serde_json::Value;

/// A distribution of numbers, validated.
#[derive(Debug, Clone)]
pub enum Dist {
    Uniform(Uniform<f64>),
    Normal(Normal<f64>),
    LogNormal(LogNormal<f64>),
    Exponential(Exp<f64>),
    Poisson(Poisson<f64>),
    Zipf(Zipf<f64>),
}

impl Dist {
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            Dist::Uniform(d) => d.sample(rng),
            Dist::Normal(d) => d.sample(rng),
            Dist::LogNormal(d) => d.sample(rng),
            Dist::Exponential(d) => d.sample(rng),
            Dist::Poisson(d) => d.sample(rng),
            Dist::Zipf(d) => d.sample(rng),
        }
    }

    /// Parse `{"distribution": name, params…}` for `column`. `zipf_n` is the number of ranks when
    /// the column itself decides it (accounts, symbols) and the spec does not say `n`.
    pub fn parse(column: &str, spec: &Value, zipf_n: Option<f64>) -> Result<Dist, String> {
        let name = spec
            .get("distribution")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("column {column}: \"distribution\" must name one of {NAMES}"))?;
        let param = |p: &str| -> Result<f64, String> {
            spec.get(p)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("column {column}: {name} needs a numeric parameter \"{p}\""))
        };
        let bad =
            |p: &str, why: &str| format!("column {column}: parameter \"{p}\" of {name} {why}");
        Ok(match name {
            "uniform" => {
                let (min, max) = (param("min")?, param("max")?);
                Dist::Uniform(
                    Uniform::new(min, max).map_err(|_| bad("max", "must be greater than min"))?,
                )
            }
            "normal" => {
                let (mean, stddev) = (param("mean")?, param("stddev")?);
                if stddev < 0.0 {
                    return Err(bad("stddev", "must be >= 0"));
                }
                Dist::Normal(Normal::new(mean, stddev).map_err(|_| bad("stddev", "must be >= 0"))?)
            }
            "lognormal" => {
                let (mu, sigma) = (param("mu")?, param("sigma")?);
                if sigma < 0.0 {
                    return Err(bad("sigma", "must be >= 0"));
                }
                Dist::LogNormal(
                    LogNormal::new(mu, sigma).map_err(|_| bad("sigma", "must be >= 0"))?,
                )
            }
            "exponential" => {
                let lambda = param("lambda")?;
                if lambda <= 0.0 {
                    return Err(bad("lambda", "must be > 0"));
                }
                Dist::Exponential(Exp::new(lambda).map_err(|_| bad("lambda", "must be > 0"))?)
            }
            "poisson" => {
                let lambda = param("lambda")?;
                if !(lambda > 0.0 && lambda < 1e12) {
                    return Err(bad("lambda", "must be > 0 and < 1e12"));
                }
                Dist::Poisson(Poisson::new(lambda).map_err(|_| bad("lambda", "must be > 0"))?)
            }
            "zipf" => {
                let n = match (spec.get("n"), zipf_n) {
                    (Some(_), _) | (None, None) => param("n")?,
                    (None, Some(n)) => n,
                };
                let s = param("s")?;
                if n < 1.0 {
                    return Err(bad("n", "must be >= 1"));
                }
                if s < 0.0 {
                    return Err(bad("s", "must be >= 0"));
                }
                Dist::Zipf(Zipf::new(n, s).map_err(|_| bad("s", "must be >= 0"))?)
            }
            other => {
                return Err(format!(
                    "column {column}: unknown distribution \"{other}\"; use one of {NAMES}"
                ));
            }
        })
    }
}

pub const NAMES: &str = "uniform, normal, lognormal, exponential, poisson, zipf";

/// Hours of a day as a peak list: integers 0–23.
pub fn peak_hours(column: &str, spec: &Value) -> Result<Option<Vec<i32>>, String> {
    let Some(hours) = spec.get("peak_hours") else {
        return Ok(None);
    };
    let list = hours
        .as_array()
        .ok_or_else(|| format!("column {column}: \"peak_hours\" must be an array of hours"))?;
    list.iter()
        .map(|h| {
            h.as_i64()
                .filter(|h| (0..=23).contains(h))
                .map(|h| h as i32)
                .ok_or_else(|| {
                    format!("column {column}: \"peak_hours\" must hold hours 0–23, got {h}")
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The object of per-column specs in a `distribution` argument, checking that it names only
/// `known` columns.
pub fn columns<'a>(
    spec: &'a Value,
    known: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let map = spec
        .as_object()
        .ok_or("distribution must be a JSON object of column specs")?;
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "column {unknown}: no distribution can be set for it; known columns: {}",
            known.join(", ")
        ));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use serde_json::json;

    fn stats(d: &Dist, n: usize) -> (f64, f64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let xs: Vec<f64> = (0..n).map(|_| d.sample(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn each_distribution_has_its_moments() {
        let normal = Dist::parse(
            "q",
            &json!({"distribution": "normal", "mean": 10, "stddev": 2}),
            None,
        )
        .unwrap();
        let (m, s) = stats(&normal, 100_000);
        assert!((m - 10.0).abs() < 0.05 && (s - 2.0).abs() < 0.05, "{m} {s}");
        let poisson = Dist::parse(
            "q",
            &json!({"distribution": "poisson", "lambda": 100}),
            None,
        )
        .unwrap();
        let (m, s) = stats(&poisson, 100_000);
        assert!((m - 100.0).abs() < 0.3 && (s - 10.0).abs() < 0.2, "{m} {s}");
        let exp = Dist::parse(
            "q",
            &json!({"distribution": "exponential", "lambda": 4}),
            None,
        )
        .unwrap();
        assert!((stats(&exp, 100_000).0 - 0.25).abs() < 0.005);
        let uniform = Dist::parse(
            "q",
            &json!({"distribution": "uniform", "min": 2, "max": 4}),
            None,
        )
        .unwrap();
        assert!((stats(&uniform, 100_000).0 - 3.0).abs() < 0.01);
        let zipf =
            Dist::parse("a", &json!({"distribution": "zipf", "s": 1.0}), Some(100.0)).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut counts = [0u32; 101];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        // zipf(s = 1): rank 1 about twice rank 2 and ten times rank 10
        let r2 = counts[1] as f64 / counts[2] as f64;
        let r10 = counts[1] as f64 / counts[10] as f64;
        assert!(
            (1.8..2.2).contains(&r2) && (8.5..11.5).contains(&r10),
            "{r2} {r10}"
        );
    }

    #[test]
    fn bad_specs_name_the_column_and_parameter() {
        let err = |spec: Value| Dist::parse("quantity", &spec, None).unwrap_err();
        assert!(err(json!({"distribution": "gamma"})).contains("unknown distribution \"gamma\""));
        assert!(err(json!({})).contains("column quantity"));
        assert!(err(json!({"distribution": "normal", "mean": 1})).contains("\"stddev\""));
        assert!(
            err(json!({"distribution": "normal", "mean": 1, "stddev": -1})).contains("\"stddev\"")
        );
        assert!(err(json!({"distribution": "poisson", "lambda": 0})).contains("\"lambda\""));
        assert!(err(json!({"distribution": "uniform", "min": 5, "max": 1})).contains("\"max\""));
        assert!(err(json!({"distribution": "zipf", "s": 1})).contains("\"n\""));
        assert!(err(json!({"distribution": "exponential", "lambda": "x"})).contains("\"lambda\""));
        assert!(
            peak_hours("created_at", &json!({"peak_hours": [9, 24]}))
                .unwrap_err()
                .contains("0–23")
        );
        assert!(
            columns(&json!({"colour": {}}), &["quantity"])
                .unwrap_err()
                .contains("column colour")
        );
    }
}
