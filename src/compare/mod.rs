//! Runs compared: per measured thing (operation, transaction, query, the run's total) and metric,
//! the baseline's figure (one run, or several pooled), the candidate's, the change with its
//! interval, and a verdict that weighs it against the noise ([`noise`]); and what differs between
//! the runs' environments ([`environment`]), said before any figure.
//!
//! Everything is read as the caller, through row-level security: a run the caller may not see is a
//! run that does not exist. Reads take no transaction id.

pub mod environment;
pub mod noise;

use crate::error::StressError;
use crate::metrics::histogram::Latency;
use noise::{Estimate, Judged, Measured, Proportion, Verdict, Worse};
use pgrx::JsonB;
use pgrx::prelude::*;

/// The metrics compared, in their order.
const METRICS: [&str; 5] = ["ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "error_rate"];
/// The quantile of each percentile metric.
fn quantile_of(metric: &str) -> Option<f64> {
    match metric {
        "p50_ms" => Some(0.50),
        "p99_ms" => Some(0.99),
        "p999_ms" => Some(0.999),
        _ => None,
    }
}

/// Most runs a baseline may pool.
pub const MAX_BASELINE_RUNS: usize = 1000;

/// One measured thing of one run, as stress.results has it.
struct Figures {
    name: String,
    calls: i64,
    errors: i64,
    ops_per_sec: Option<f64>,
    histogram: Option<Latency>,
}

/// A run's figures, and its per-second samples.
struct RunFigures {
    figures: Vec<Figures>,
    rates: Vec<f64>,
    p50s: Vec<f64>,
    p99s: Vec<f64>,
}

impl RunFigures {
    fn read(run_id: i64) -> RunFigures {
        let figures = Spi::connect(|client| {
            client
                .select(
                    "SELECT r.name, r.calls, coalesce(r.errors, 0), r.ops_per_sec, r.histogram
                     FROM stress.results r
                     WHERE r.run_id OPERATOR(pg_catalog.=) $1 AND r.calls IS NOT NULL
                     ORDER BY r.id",
                    None,
                    &[run_id.into()],
                )
                .map(|rows| {
                    rows.map(|r| Figures {
                        name: r.get(1).ok().flatten().unwrap_or_default(),
                        calls: r.get(2).ok().flatten().unwrap_or(0),
                        errors: r.get(3).ok().flatten().unwrap_or(0),
                        ops_per_sec: r.get(4).ok().flatten(),
                        histogram: r
                            .get::<Vec<u8>>(5)
                            .ok()
                            .flatten()
                            .and_then(|b| Latency::deserialize(&b).ok()),
                    })
                    .collect::<Vec<_>>()
                })
        })
        .expect("reading the run's results");
        let samples = crate::postgres::spi_read::one::<JsonB>(
            "SELECT pg_catalog.jsonb_build_array(
                 coalesce(pg_catalog.jsonb_agg(s.ops_per_sec ORDER BY s.elapsed_s), '[]'),
                 coalesce(pg_catalog.jsonb_agg(s.p50_ms ORDER BY s.elapsed_s)
                          FILTER (WHERE s.p50_ms IS NOT NULL), '[]'),
                 coalesce(pg_catalog.jsonb_agg(s.p99_ms ORDER BY s.elapsed_s)
                          FILTER (WHERE s.p99_ms IS NOT NULL), '[]'))
             FROM stress.samples s WHERE s.run_id OPERATOR(pg_catalog.=) $1",
            &[run_id.into()],
        )
        .expect("reading the run's samples")
        .map(|j| j.0)
        .unwrap_or_default();
        let column = |i: usize| -> Vec<f64> {
            samples[i]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default()
        };
        RunFigures {
            figures,
            rates: column(0),
            p50s: column(1),
            p99s: column(2),
        }
    }

    fn get(&self, name: &str) -> Option<&Figures> {
        self.figures.iter().find(|f| f.name == name)
    }

    fn has_total(&self) -> bool {
        self.get("total").is_some()
    }

    /// The total's throughput noise from its per-second rates: (relative se, df).
    fn throughput_noise(&self) -> Option<(f64, f64)> {
        noise::relative_se(&self.rates)
    }

    /// How much wider the per-second percentiles say the run's percentile noise is. (Every second
    /// counts: a partial second's percentile is a percentile of fewer calls, not a biased one, as
    /// a partial second's rate would be.)
    fn design_effect(&self, metric: &str, z: f64) -> noise::DesignEffect {
        let (per_second, q) = match metric {
            "p50_ms" => (&self.p50s, 0.5),
            // (p99.9 has no per-second figure: it takes p99's)
            _ => (&self.p99s, 0.99),
        };
        let Some(total) = self.get("total").and_then(|t| t.histogram.as_ref()) else {
            return noise::DesignEffect::NONE;
        };
        let Some(e) = percentile_of(total, q, z, noise::DesignEffect::NONE) else {
            return noise::DesignEffect::NONE;
        };
        noise::design_effect(per_second, e.log_se)
    }

    /// The estimate of `metric` of measured thing `name`.
    fn measured(&self, name: &str, metric: &str, z: f64) -> Measured {
        let Some(f) = self.get(name) else {
            return Measured::Missing;
        };
        if let Some(q) = quantile_of(metric) {
            let Some(h) = &f.histogram else {
                return if f.calls > 0 {
                    Measured::NotEnough {
                        has: "no histogram (a run recorded before pg_stress 0.8.0)".into(),
                        needs: "a run's histogram".into(),
                    }
                } else {
                    Measured::Missing
                };
            };
            return match percentile_of(h, q, z, self.design_effect(metric, z)) {
                Some(e) => Measured::Value(e),
                None => Measured::NotEnough {
                    has: format!("{} calls", h.count()),
                    needs: format!(
                        "{} calls per run ({} beyond the {})",
                        noise::calls_needed(q),
                        noise::MIN_BEYOND,
                        metric.trim_end_matches("_ms")
                    ),
                },
            };
        }
        // ops_per_sec
        let Some(value) = f.ops_per_sec else {
            return Measured::Missing;
        };
        let successes = (f.calls - f.errors).max(0) as f64;
        if !self.rates.is_empty() {
            let Some((total_se, df)) = self.throughput_noise() else {
                return Measured::NotEnough {
                    has: format!("{} per-second samples", self.rates.len()),
                    needs: format!(
                        "{0} per-second samples (a run of {0} seconds or more)",
                        noise::MIN_SECONDS
                    ),
                };
            };
            // An operation's throughput is the total's times its share of the calls: the share's
            // binomial noise adds to the total's.
            let total_successes = self
                .get("total")
                .map(|t| (t.calls - t.errors).max(0) as f64)
                .unwrap_or(successes);
            let share_var = if name == "total" || total_successes <= 0.0 || successes <= 0.0 {
                0.0
            } else {
                (1.0 - successes / total_successes).max(0.0) / successes
            };
            return Measured::Value(Estimate::new(
                value,
                (total_se.powi(2) + share_var).sqrt(),
                df,
            ));
        }
        // A benchmark's executions, one after another: the rate is 1 / mean latency, known as
        // well as that mean is.
        match &f.histogram {
            Some(h) if h.count() >= 2 => {
                let s = h.summary();
                let rel = if s.avg_ms > 0.0 {
                    s.stddev_ms / s.avg_ms / (h.count() as f64).sqrt()
                } else {
                    0.0
                };
                Measured::Value(Estimate::new(value, rel, (h.count() - 1) as f64))
            }
            _ => Measured::NotEnough {
                has: format!("{} calls", f.calls),
                needs: "2 calls and a run's histogram".into(),
            },
        }
    }
}

fn percentile_of(
    h: &Latency,
    q: f64,
    z: f64,
    design_effect: noise::DesignEffect,
) -> Option<Estimate> {
    let (low, high) = noise::quantile_bounds(h.count(), q, z)?;
    Some(noise::percentile(
        h.quantile_ms(q)?,
        h.quantile_ms(low)?,
        h.quantile_ms(high)?,
        z,
        design_effect,
    ))
}

/// One row of `stress.compare_runs`.
#[derive(Debug)]
pub struct Compared {
    pub name: String,
    pub metric: &'static str,
    pub judged: Judged,
    /// one of the figures a CI gate judges by default (`stress.assert_targets`)
    pub gate: bool,
}

/// Whether a CI gate judges `metric` of `name` by default: of a load run, the total's
/// throughput, p50, p99 and error rate and each operation's p50 and p99; of a run without a total
/// (a benchmark), each query's throughput, p50, p99 and error rate.
fn gate(name: &str, metric: &str, has_total: bool) -> bool {
    match metric {
        "p50_ms" | "p99_ms" => true,
        "ops_per_sec" | "error_rate" => !has_total || name == "total",
        _ => false,
    }
}

/// Check the tolerance and confidence of a comparison (22023 with a hint).
fn check_limits(function: &'static str, tolerance: f64, confidence: f64) {
    if !tolerance.is_finite() || tolerance < 0.0 {
        StressError::invalid(
            function,
            format!("tolerance must be a finite number of at least 0, got {tolerance}"),
            "It is the relative change allowed, e.g. 0.10 for 10%.",
        )
        .raise();
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        StressError::invalid(
            function,
            format!("confidence must be between 0 and 1, got {confidence}"),
            "It is the confidence of the intervals, e.g. 0.95 (the default) or 0.99.",
        )
        .raise();
    }
}

/// The runs, each one the caller may see (else 22023: a run the caller may not see does not
/// exist).
pub fn visible(function: &'static str, runs: &[Option<i64>]) -> Vec<i64> {
    let Some(ids) = runs.iter().copied().collect::<Option<Vec<i64>>>() else {
        StressError::invalid(
            function,
            "a run id must not be NULL",
            "See stress.runs for run ids.",
        )
        .raise();
    };
    // (one query for all of them, through row-level security)
    let missing = crate::postgres::spi_read::one::<Vec<i64>>(
        "SELECT ARRAY(SELECT o.id FROM pg_catalog.unnest($1::pg_catalog.int8[]) WITH ORDINALITY o (id, n)
                      WHERE NOT EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) o.id)
                      ORDER BY o.n)",
        &[ids.clone().into()],
    )
    .expect("looking for the runs")
    .unwrap_or_default();
    if let Some(id) = missing.first() {
        StressError::invalid(
            function,
            format!("there is no run {id}"),
            "See stress.runs for run ids.",
        )
        .raise();
    }
    ids
}

/// The runs of a baseline argument: at least one, at most [`MAX_BASELINE_RUNS`].
fn baseline_ids<'a>(function: &'static str, baseline: &'a [Option<i64>]) -> &'a [Option<i64>] {
    if baseline.is_empty() {
        StressError::invalid(
            function,
            "the baseline has no run",
            "Pass a run id, or an array of them: baseline => stress.baseline_runs(candidate).",
        )
        .raise();
    }
    if baseline.len() > MAX_BASELINE_RUNS {
        StressError::invalid(
            function,
            format!(
                "the baseline has {} runs, more than {MAX_BASELINE_RUNS}",
                baseline.len()
            ),
            "Pool fewer runs: the last few with the same parameters say as much.",
        )
        .raise();
    }
    baseline
}

/// `stress.compare_runs`: every measured thing of the candidate and the baseline, each metric.
pub fn compare_runs(
    baseline: &[Option<i64>],
    candidate: Option<i64>,
    tolerance: f64,
    confidence: f64,
) -> Vec<Compared> {
    const F: &str = "compare_runs";
    check_limits(F, tolerance, confidence);
    let baseline = visible(F, baseline_ids(F, baseline));
    let candidate = visible(F, &[candidate])[0];
    notice_differences(&baseline, candidate);
    judge(&baseline, candidate, tolerance, confidence)
}

/// The comparison of runs the caller may see (checked), with valid limits.
pub fn judge(baseline: &[i64], candidate: i64, tolerance: f64, confidence: f64) -> Vec<Compared> {
    let z = noise::z_of(confidence);
    let base: Vec<RunFigures> = baseline.iter().map(|&id| RunFigures::read(id)).collect();
    let cand = RunFigures::read(candidate);
    // Names: the candidate's, then the baseline's it lacks; the total last.
    let mut names: Vec<String> = cand.figures.iter().map(|f| f.name.clone()).collect();
    for b in &base {
        for f in &b.figures {
            if !names.contains(&f.name) {
                names.push(f.name.clone());
            }
        }
    }
    names.sort_by(|a, b| (a == "total", a).cmp(&(b == "total", b)));
    let has_total = cand.has_total() || base.iter().any(RunFigures::has_total);
    let mut rows = Vec::new();
    for name in &names {
        for metric in METRICS {
            let judged = if metric == "error_rate" {
                let proportion = |r: &RunFigures| {
                    r.get(name).map(|f| Proportion {
                        errors: f.errors as f64,
                        calls: f.calls as f64,
                    })
                };
                let pooled = base
                    .iter()
                    .filter_map(proportion)
                    .reduce(|a, b| Proportion {
                        errors: a.errors + b.errors,
                        calls: a.calls + b.calls,
                    });
                noise::judge_error_rate(pooled, proportion(&cand), tolerance, confidence)
            } else {
                let measured: Vec<Measured> =
                    base.iter().map(|r| r.measured(name, metric, z)).collect();
                let values: Vec<Estimate> = measured
                    .iter()
                    .filter_map(|m| match m {
                        Measured::Value(e) => Some(*e),
                        _ => None,
                    })
                    .collect();
                // (a baseline is as good as its runs that have the figure; with none, the
                // first run says why)
                let b = match noise::pooled(&values) {
                    Some(e) => Measured::Value(e),
                    None => measured.into_iter().next().unwrap_or(Measured::Missing),
                };
                let worse = if metric == "ops_per_sec" {
                    Worse::Lower
                } else {
                    Worse::Higher
                };
                noise::judge_ratio(
                    &b,
                    &cand.measured(name, metric, z),
                    worse,
                    tolerance,
                    confidence,
                )
            };
            rows.push(Compared {
                name: name.clone(),
                metric,
                gate: gate(name, metric, has_total),
                judged,
            });
        }
    }
    rows
}

/// The runs' recorded environments, in their order (None: recorded before 0.8.0, or a run of a
/// standby's), in one query.
fn environments_of(ids: &[i64]) -> Vec<Option<serde_json::Value>> {
    let all = crate::postgres::spi_read::one::<JsonB>(
        "SELECT pg_catalog.jsonb_agg(r.environment ORDER BY o.n)
         FROM pg_catalog.unnest($1::pg_catalog.int8[]) WITH ORDINALITY o (id, n)
         LEFT JOIN stress.runs r ON r.id OPERATOR(pg_catalog.=) o.id",
        &[ids.to_vec().into()],
    )
    .expect("reading the runs' environments")
    .map(|j| j.0);
    let all = all.as_ref().and_then(|a| a.as_array());
    (0..ids.len())
        .map(|i| all.and_then(|a| a.get(i)).filter(|v| !v.is_null()).cloned())
        .collect()
}

/// What differs between the candidate's environment and those of the baseline's runs: each item
/// once, the baseline's distinct values joined with " | ".
fn differences_of(
    baseline: &[Option<serde_json::Value>],
    candidate: &Option<serde_json::Value>,
) -> Vec<environment::Difference> {
    let none = serde_json::Value::Null;
    let cand = candidate.as_ref().unwrap_or(&none);
    let mut out: Vec<environment::Difference> = Vec::new();
    for base in baseline {
        for d in environment::differences(base.as_ref().unwrap_or(&none), cand) {
            match out.iter_mut().find(|o| o.item == d.item) {
                Some(o) => {
                    let value = d.baseline.unwrap_or_else(|| "(none)".into());
                    let known = o.baseline.get_or_insert_with(String::new);
                    if !known.split(" | ").any(|v| v == value) {
                        known.push_str(" | ");
                        known.push_str(&value);
                    }
                }
                None => out.push(d),
            }
        }
    }
    out
}

/// What differs between the environment of the candidate and those of the baseline's runs.
pub fn environment_differences(baseline: &[i64], candidate: i64) -> Vec<environment::Difference> {
    let mut ids = baseline.to_vec();
    ids.push(candidate);
    let mut environments = environments_of(&ids);
    let cand = environments.pop().flatten();
    differences_of(&environments, &cand)
}

/// `stress.environment_diff`.
pub fn environment_diff(
    baseline: &[Option<i64>],
    candidate: Option<i64>,
) -> Vec<environment::Difference> {
    const F: &str = "environment_diff";
    let baseline = visible(F, baseline_ids(F, baseline));
    let candidate = visible(F, &[candidate])[0];
    environment_differences(&baseline, candidate)
}

/// The NOTICE that comes before the figures when the runs' environments differ.
fn notice_differences(baseline: &[i64], candidate: i64) {
    let mut ids = baseline.to_vec();
    ids.push(candidate);
    let mut environments = environments_of(&ids);
    let missing: Vec<String> = ids
        .iter()
        .zip(&environments)
        .filter(|(_, e)| e.is_none())
        .map(|(id, _)| id.to_string())
        .collect();
    if !missing.is_empty() {
        pgrx::notice!(
            "compare_runs: run {} recorded no environment (a run before pg_stress 0.8.0): what it ran on is not compared",
            missing.join(", ")
        );
    }
    let cand = environments.pop().flatten();
    let differences = differences_of(&environments, &cand);
    if differences.is_empty() {
        return;
    }
    let shown: Vec<String> = differences
        .iter()
        .take(12)
        .map(|d| {
            format!(
                "{}: {} -> {}",
                d.item,
                d.baseline.as_deref().unwrap_or("(none)"),
                d.candidate.as_deref().unwrap_or("(none)")
            )
        })
        .collect();
    let more = differences.len().saturating_sub(shown.len());
    let baseline_text = baseline
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    pgrx::notice!(
        "compare_runs: the runs ran on different environments: {}{}",
        shown.join("; "),
        if more > 0 {
            format!(
                "; and {more} more (SELECT * FROM stress.environment_diff(ARRAY[{baseline_text}], {candidate}))"
            )
        } else {
            String::new()
        }
    );
}

impl Compared {
    pub fn verdict(&self) -> &'static str {
        self.judged.verdict.as_str()
    }

    pub fn regressed(&self) -> Option<bool> {
        match self.judged.verdict {
            Verdict::NotEnoughData => None,
            v => Some(v == Verdict::Regressed),
        }
    }
}
