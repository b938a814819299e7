//! Custom transactions, like pgbench's `-f script@weight`: your SQL with `$1…` parameters drawn from
//! distributions, run by the load workers beside (or instead of) the built-in trading operations.
//!
//! ```json
//! [{"name": "lookup", "sql": "SELECT * FROM items WHERE id = $1",
//!   "params": [{"distribution": "uniform", "min": 1, "max": 100000}], "weight": 3},
//!  {"name": "touch", "sql": ["UPDATE items SET n = n + 1 WHERE id = $1", "INSERT INTO log VALUES ($1, $2)"],
//!   "params": [{"distribution": "zipf", "n": 100000, "s": 1.1}, {"values": ["a", "b"]}]}]
//! ```

use crate::generate::distribution::Dist;
use pgrx::datum::DatumWithOid;
use pgrx::{PgBuiltInOids, PgOid};
use rand::{Rng, RngExt};
use serde_json::Value;

/// Room for the transactions' JSON in a run's shared memory slot.
pub const MAX_BYTES: usize = 16 * 1024;
/// Most custom transactions in one run.
pub const MAX_TRANSACTIONS: usize = 16;

/// Where one parameter's values come from.
#[derive(Debug, Clone)]
pub enum Param {
    /// a number from a distribution; whole numbers (int8) or not (float8)
    Number { dist: Dist, whole: bool },
    /// one of these strings (text), uniformly
    Values(Vec<String>),
    /// always this value
    Constant(Value),
}

impl Param {
    fn parse(at: &str, spec: &Value) -> Result<Param, String> {
        let object = spec
            .as_object()
            .ok_or_else(|| format!("{at} must be an object such as {{\"distribution\": \"uniform\", \"min\": 1, \"max\": 100}}"))?;
        if let Some(values) = object.get("values") {
            let values: Vec<String> = values
                .as_array()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{at}.values must be a non-empty array"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            return Ok(Param::Values(values));
        }
        if let Some(value) = object.get("value") {
            if !(value.is_number() || value.is_string()) {
                return Err(format!("{at}.value must be a number or a string"));
            }
            return Ok(Param::Constant(value.clone()));
        }
        let name = object
            .get("distribution")
            .and_then(Value::as_str)
            .unwrap_or("");
        let integers = |keys: &[&str]| {
            keys.iter()
                .all(|k| object.get(*k).is_some_and(|v| v.is_i64()))
        };
        let whole = match object.get("type").and_then(Value::as_str) {
            Some("int") => true,
            Some("float") => false,
            Some(other) => {
                return Err(format!(
                    "{at}.type must be \"int\" or \"float\", got \"{other}\""
                ));
            }
            None => {
                matches!(name, "poisson" | "zipf")
                    || (name == "uniform" && integers(&["min", "max"]))
            }
        };
        let mut spec = spec.clone();
        // Whole uniform numbers: every integer from min to max inclusive, equally likely.
        if let Some(max) = spec
            .get("max")
            .and_then(Value::as_f64)
            .filter(|_| whole && name == "uniform")
        {
            spec["max"] = (max + 1.0).into();
        }
        Ok(Param::Number {
            dist: Dist::parse(at, &spec, None)?,
            whole,
        })
    }

    pub fn pg_type(&self) -> PgOid {
        PgOid::BuiltIn(match self {
            Param::Number { whole: true, .. } => PgBuiltInOids::INT8OID,
            Param::Number { whole: false, .. } => PgBuiltInOids::FLOAT8OID,
            Param::Values(_) => PgBuiltInOids::TEXTOID,
            Param::Constant(v) if v.is_i64() => PgBuiltInOids::INT8OID,
            Param::Constant(v) if v.is_number() => PgBuiltInOids::FLOAT8OID,
            Param::Constant(_) => PgBuiltInOids::TEXTOID,
        })
    }

    pub fn sample(&self, rng: &mut impl Rng) -> DatumWithOid<'static> {
        match self.draw(rng) {
            Drawn::Int(i) => i.into(),
            Drawn::Float(f) => f.into(),
            Drawn::Text(t) => t.to_owned().into(),
        }
    }

    /// A value, as text (what a connection to a target sends for it).
    pub fn sample_text(&self, rng: &mut impl Rng) -> String {
        match self.draw(rng) {
            Drawn::Int(i) => i.to_string(),
            // (Rust writes the shortest text that reads back as the same float8)
            Drawn::Float(f) => f.to_string(),
            Drawn::Text(t) => t.to_owned(),
        }
    }

    /// A value drawn.
    fn draw(&self, rng: &mut impl Rng) -> Drawn<'_> {
        match self {
            Param::Number { dist, whole: true } => Drawn::Int(dist.sample(rng).floor() as i64),
            Param::Number { dist, whole: false } => Drawn::Float(dist.sample(rng)),
            Param::Values(values) => Drawn::Text(&values[rng.random_range(0..values.len())]),
            Param::Constant(v) => match v {
                Value::Number(n) if n.is_i64() => Drawn::Int(n.as_i64().unwrap_or_default()),
                Value::Number(n) => Drawn::Float(n.as_f64().unwrap_or_default()),
                other => Drawn::Text(other.as_str().unwrap_or_default()),
            },
        }
    }
}

/// A parameter's value, as drawn (of its [`Param::pg_type`]).
enum Drawn<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
}

/// One custom transaction: its statements run in order, in one transaction, with the same values
/// for `$1…`.
#[derive(Debug, Clone)]
pub struct Custom {
    pub name: String,
    pub statements: Vec<String>,
    pub params: Vec<Param>,
    pub weight: f64,
}

/// Parse a `transactions` array; `taken` are names already in use (the built-in operations).
pub fn parse(spec: &Value, taken: &[&str]) -> Result<Vec<Custom>, String> {
    let list = spec.as_array().ok_or(
        "transactions must be a JSON array of {\"name\", \"sql\", \"params\", \"weight\"} objects",
    )?;
    if list.is_empty() || list.len() > MAX_TRANSACTIONS {
        return Err(format!(
            "transactions must list between 1 and {MAX_TRANSACTIONS} transactions, got {}",
            list.len()
        ));
    }
    let mut out: Vec<Custom> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("transactions[{i}]");
        let object = t
            .as_object()
            .ok_or_else(|| format!("{at} must be an object"))?;
        if let Some(key) = object
            .keys()
            .find(|k| !["name", "sql", "params", "weight"].contains(&k.as_str()))
        {
            return Err(format!(
                "{at}.{key}: unknown key; a transaction has name, sql, params and weight"
            ));
        }
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty() && n.len() <= 63)
            .ok_or_else(|| format!("{at}.name must be a non-empty string of at most 63 bytes"))?
            .to_owned();
        if taken.contains(&name.as_str()) || name == "total" || out.iter().any(|c| c.name == name) {
            return Err(format!(
                "{at}.name \"{name}\" is already taken (a built-in operation, \"total\" or another transaction)"
            ));
        }
        let statements: Vec<String> = match object.get("sql") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("{at}.sql must be a string or an array of strings"))?,
            _ => return Err(format!("{at}.sql must be a string or an array of strings")),
        };
        if statements.is_empty() || statements.iter().any(|s| s.trim().is_empty()) {
            return Err(format!("{at}.sql must not be empty"));
        }
        let params = match object.get("params") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(j, p)| Param::parse(&format!("{at}.params[{j}]"), p))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("{at}.params must be an array, one entry per $n")),
        };
        let weight = match object.get("weight") {
            None => 1.0,
            Some(w) => crate::args::weight(&format!("{at}.weight"), w)?,
        };
        out.push(Custom {
            name,
            statements,
            params,
            weight,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use serde_json::json;

    #[test]
    fn transactions_parse_with_their_parameter_types() {
        let t = parse(
            &json!([
                {"name": "lookup", "sql": "SELECT $1", "params": [{"distribution": "uniform", "min": 1, "max": 3}], "weight": 3},
                {"name": "two", "sql": ["SELECT $1", "SELECT $2"],
                 "params": [{"distribution": "normal", "mean": 0, "stddev": 1}, {"values": ["a", "b"]}]}
            ]),
            &["place_order"],
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].weight, t[1].weight), (3.0, 1.0));
        assert_eq!(
            t[0].params[0].pg_type(),
            PgOid::BuiltIn(PgBuiltInOids::INT8OID)
        );
        assert_eq!(
            t[1].params[0].pg_type(),
            PgOid::BuiltIn(PgBuiltInOids::FLOAT8OID)
        );
        assert_eq!(
            t[1].params[1].pg_type(),
            PgOid::BuiltIn(PgBuiltInOids::TEXTOID)
        );
        assert_eq!(t[1].statements.len(), 2);
        // Whole uniform numbers cover min..=max.
        let Param::Number { dist, whole: true } = &t[0].params[0] else {
            panic!()
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut seen = [0; 5];
        for _ in 0..3000 {
            seen[dist.sample(&mut rng).floor() as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1..4].iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(seen[4], 0);
    }

    #[test]
    fn bad_transactions_say_where() {
        let err = |v: Value| parse(&v, &["place_order"]).unwrap_err();
        assert!(err(json!({})).contains("JSON array"));
        assert!(err(json!([])).contains("between 1"));
        assert!(err(json!([{"sql": "SELECT 1"}])).contains("transactions[0].name"));
        assert!(err(json!([{"name": "place_order", "sql": "SELECT 1"}])).contains("taken"));
        assert!(err(json!([{"name": "a", "sql": ""}])).contains("transactions[0].sql"));
        assert!(err(json!([{"name": "a", "sql": "SELECT $1", "params": [{"distribution": "normal", "mean": 1}]}]))
            .contains("transactions[0].params[0]"));
        assert!(err(json!([{"name": "a", "sql": "SELECT 1", "weight": -1}])).contains("weight"));
        assert!(
            err(json!([{"name": "a", "sql": "SELECT 1", "weight": 1e300}]))
                .contains("transactions[0].weight must be a number from 0 to 1000000")
        );
        assert!(
            err(json!([{"name": "a", "sql": "SELECT 1", "colour": 1}])).contains("unknown key")
        );
    }
}
