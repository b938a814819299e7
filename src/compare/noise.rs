//! The noise model behind `stress.compare_runs`: how much a figure of one run could move by
//! chance, and the verdict on a change between runs. Plain Rust (statrs for the t and normal
//! quantiles), tested with `cargo test`.
//!
//! Every figure is judged on a log scale: an estimate is a value and the standard error of its
//! logarithm, so a change is a ratio and its interval is `exp(d ± t·se) − 1`.
//! - Throughput: the run's own figure (its operations over its seconds), with the spread of all its
//!   per-second rates as the noise (standard error of their mean, Student's t with k − 1 degrees of
//!   freedom). An operation's share of the total adds its binomial noise.
//! - A percentile: the interval the order statistics allow. Of n calls, the q-quantile lies
//!   between the calls of ranks nq ∓ z·√(nq(1−q)) with the chosen confidence, whatever the
//!   distribution; those two values, read from the run's HdrHistogram, give the standard error.
//!   Calls are not independent in time (a checkpoint slows a whole second), so that error is
//!   widened by the run's design effect: how much wider the spread of the per-second percentiles
//!   says it is than the order statistics do (never narrower).
//! - A percentile needs at least [`MIN_BEYOND`] calls beyond it in each run, throughput
//!   [`MIN_SECONDS`] per-second samples; less is "not enough data", saying how much would be.
//! - Error rate: a difference of proportions (Agresti–Caffo interval), not a ratio: from 0 errors
//!   any error is an infinite change.
//! - A baseline of several runs: the median of their logarithms, and their spread (the median
//!   absolute deviation, robust to one run that met a bad moment) as the noise of both sides (a
//!   candidate is assumed to vary as the baseline's runs did among themselves).
//!
//! A change is *regressed* (or *improved*) when it is both beyond `tolerance` and beyond the noise
//! (its interval excludes no change); otherwise *unchanged*.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Calls a percentile needs beyond it: 10 beyond the 99th is 1,000 calls.
pub const MIN_BEYOND: f64 = 10.0;
/// Per-second samples a throughput needs (each a rate over its own interval: the last, shorter,
/// second is a rate like the others).
pub const MIN_SECONDS: usize = 3;
/// HdrHistogram keeps 3 significant digits: no percentile is known better than that.
const RESOLUTION: f64 = 1e-3;

/// A figure of a run: its value and the standard error of its logarithm, with the degrees of
/// freedom that error was estimated with (infinite: a normal approximation). `spread`: for a
/// baseline of several runs, the standard deviation of their logarithms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub log_se: f64,
    pub df: f64,
    pub spread: Option<(f64, f64)>,
}

impl Estimate {
    pub fn new(value: f64, log_se: f64, df: f64) -> Self {
        Estimate {
            value,
            log_se,
            df,
            spread: None,
        }
    }
}

/// A figure, or why there is none to judge.
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    Value(Estimate),
    /// the figure exists but rests on too little: what it has and what it would need
    NotEnough {
        has: String,
        needs: String,
    },
    /// the run has no such figure (an operation it did not run, a latency of no call)
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    NotEnoughData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    Higher,
    Lower,
}

/// A change judged: the figures, the change (relative; for an error rate, the difference of
/// rates), its interval, the verdict and what explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    pub change: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub verdict: Verdict,
    pub note: String,
}

/// The two-sided z of a confidence level (0.95 → 1.96).
pub fn z_of(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(0.5 + confidence / 2.0)
}

fn t_of(confidence: f64, df: f64) -> f64 {
    if !df.is_finite() || df > 1e6 {
        return z_of(confidence);
    }
    StudentsT::new(0.0, 1.0, df.max(1.0))
        .map(|t| t.inverse_cdf(0.5 + confidence / 2.0))
        .unwrap_or_else(|_| z_of(confidence))
}

/// Calls a run needs for its q-quantile to be judged.
pub fn calls_needed(q: f64) -> u64 {
    (MIN_BEYOND / (1.0 - q)).round() as u64
}

/// The quantiles (as fractions of the calls) between which the q-quantile of `n` calls lies with
/// the confidence of `z`, or None when fewer than [`calls_needed`] calls are behind it.
pub fn quantile_bounds(n: u64, q: f64, z: f64) -> Option<(f64, f64)> {
    if n < calls_needed(q) || n == 0 {
        return None;
    }
    let n = n as f64;
    let half = z * (n * q * (1.0 - q)).sqrt();
    let low = ((n * q - half).floor() / n).clamp(0.0, 1.0);
    let high = (((n * q + half).ceil() + 1.0) / n).clamp(0.0, 1.0);
    Some((low, high))
}

/// A percentile's estimate from its value and the values at [`quantile_bounds`], widened by the
/// run's design effect (see [`design_effect`]): when that widened it, its error was estimated from
/// the run's seconds, and has their degrees of freedom.
pub fn percentile(value: f64, low: f64, high: f64, z: f64, design: DesignEffect) -> Estimate {
    let (value, low, high) = (value.max(1e-9), low.max(1e-9), high.max(1e-9));
    let log_se = ((high.ln() - low.ln()) / (2.0 * z)).max(RESOLUTION);
    if design.factor > 1.0 {
        Estimate::new(value, log_se * design.factor, design.df)
    } else {
        Estimate::new(value, log_se, f64::INFINITY)
    }
}

/// How much wider a run's percentile noise is than its order statistics say, and the degrees of
/// freedom of the wider estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DesignEffect {
    pub factor: f64,
    pub df: f64,
}

impl DesignEffect {
    pub const NONE: DesignEffect = DesignEffect {
        factor: 1.0,
        df: f64::INFINITY,
    };
}

/// The standard error of the log of the mean of `samples` (their relative standard error), with
/// its degrees of freedom; None under [`MIN_SECONDS`] samples or a mean of 0.
pub fn relative_se(samples: &[f64]) -> Option<(f64, f64)> {
    let k = samples.len();
    if k < MIN_SECONDS {
        return None;
    }
    let mean = samples.iter().sum::<f64>() / k as f64;
    if mean <= 0.0 || !mean.is_finite() {
        return None;
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    Some(((var / k as f64).sqrt() / mean, (k - 1) as f64))
}

/// How much wider the per-second figures say a percentile's noise is than its order statistics
/// do: the spread of the per-second logs over √k, divided by the order statistics' error (never
/// below 1), with k − 1 degrees of freedom.
pub fn design_effect(per_second: &[f64], order_statistics_se: f64) -> DesignEffect {
    let logs: Vec<f64> = per_second
        .iter()
        .filter(|v| **v > 0.0 && v.is_finite())
        .map(|v| v.ln())
        .collect();
    let k = logs.len();
    if k < MIN_SECONDS || order_statistics_se <= 0.0 {
        return DesignEffect::NONE;
    }
    let mean = logs.iter().sum::<f64>() / k as f64;
    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    let factor = (var / k as f64).sqrt() / order_statistics_se;
    if factor > 1.0 {
        DesignEffect {
            factor,
            df: (k - 1) as f64,
        }
    } else {
        DesignEffect::NONE
    }
}

/// A baseline of several runs' estimates of one figure, robustly: the median of their logs, and
/// their spread as the median absolute deviation (× 1.4826, a standard deviation's estimate under
/// normality), so that one run that met a bad moment (a checkpoint, a noisy neighbour) neither
/// moves the baseline nor widens its noise until nothing is ever a regression. The median's
/// standard error is the larger of that spread and the runs' own errors, over √k, times √(π/2); the
/// spread is kept for the candidate's side.
pub fn pooled(estimates: &[Estimate]) -> Option<Estimate> {
    let k = estimates.len();
    match k {
        0 => None,
        1 => Some(estimates[0]),
        _ => {
            let logs: Vec<f64> = estimates.iter().map(|e| e.value.max(1e-12).ln()).collect();
            let centre = median(&logs);
            let deviations: Vec<f64> = logs.iter().map(|x| (x - centre).abs()).collect();
            let between = (1.4826 * median(&deviations)).powi(2);
            let within = estimates.iter().map(|e| e.log_se.powi(2)).sum::<f64>() / k as f64;
            let (var, df) = if between > within {
                (between, (k - 1) as f64)
            } else {
                (
                    within,
                    estimates.iter().map(|e| e.df).fold(f64::INFINITY, f64::min),
                )
            };
            Some(Estimate {
                value: centre.exp(),
                log_se: (std::f64::consts::FRAC_PI_2 * var / k as f64).sqrt(),
                df,
                spread: Some((between.sqrt(), (k - 1) as f64)),
            })
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn not_enough(baseline: &Measured, candidate: &Measured) -> Option<Judged> {
    let value = |m: &Measured| match m {
        Measured::Value(e) => Some(e.value),
        _ => None,
    };
    let why = |side: &str, m: &Measured| match m {
        Measured::Value(_) => None,
        Measured::Missing => Some(format!("the {side} has no such figure")),
        Measured::NotEnough { has, needs } => Some(format!("needs {needs}; the {side} has {has}")),
    };
    let reasons: Vec<String> = [why("baseline", baseline), why("candidate", candidate)]
        .into_iter()
        .flatten()
        .collect();
    (!reasons.is_empty()).then(|| {
        let (b, c) = (value(baseline), value(candidate));
        Judged {
            baseline: b,
            candidate: c,
            change: match (b, c) {
                (Some(b), Some(c)) if b != 0.0 => Some(c / b - 1.0),
                _ => None,
            },
            low: None,
            high: None,
            verdict: Verdict::NotEnoughData,
            note: reasons.join("; "),
        }
    })
}

/// The verdict on a figure judged as a ratio (throughput, latency).
pub fn judge_ratio(
    baseline: &Measured,
    candidate: &Measured,
    worse: Worse,
    tolerance: f64,
    confidence: f64,
) -> Judged {
    if let Some(j) = not_enough(baseline, candidate) {
        return j;
    }
    let (Measured::Value(b), Measured::Value(c)) = (baseline, candidate) else {
        unreachable!("not_enough judged every other case")
    };
    let (bv, cv) = (b.value.max(1e-12), c.value.max(1e-12));
    let d = (cv / bv).ln();
    // The candidate varies at least as the baseline's runs did among themselves.
    let (c_se, c_df) = match b.spread {
        Some((spread, df)) if spread > c.log_se => (spread, df),
        _ => (c.log_se, c.df),
    };
    let (vb, vc) = (b.log_se.powi(2), c_se.powi(2));
    let se = (vb + vc).sqrt();
    // Welch–Satterthwaite
    let df = if se == 0.0 {
        f64::INFINITY
    } else {
        let part = |v: f64, df: f64| if df.is_finite() { v * v / df } else { 0.0 };
        let denominator = part(vb, b.df) + part(vc, c_df);
        if denominator == 0.0 {
            f64::INFINITY
        } else {
            (vb + vc).powi(2) / denominator
        }
    };
    let half = t_of(confidence, df) * se;
    let (low, high) = ((d - half).exp() - 1.0, (d + half).exp() - 1.0);
    let change = cv / bv - 1.0;
    let (worse_change, beyond_noise_worse, beyond_noise_better) = match worse {
        Worse::Higher => (change, low > 0.0, high < 0.0),
        Worse::Lower => (-change, high < 0.0, low > 0.0),
    };
    let beyond_tolerance = worse_change.abs() > tolerance;
    let (verdict, note) = if beyond_noise_worse && beyond_tolerance && worse_change > 0.0 {
        (
            Verdict::Regressed,
            "worse beyond the tolerance and the noise",
        )
    } else if beyond_noise_better && beyond_tolerance && worse_change < 0.0 {
        (
            Verdict::Improved,
            "better beyond the tolerance and the noise",
        )
    } else if beyond_tolerance {
        (
            Verdict::Unchanged,
            "beyond the tolerance but within the noise",
        )
    } else if beyond_noise_worse || beyond_noise_better {
        (
            Verdict::Unchanged,
            "beyond the noise but within the tolerance",
        )
    } else {
        (Verdict::Unchanged, "within the tolerance and the noise")
    };
    Judged {
        baseline: Some(b.value),
        candidate: Some(c.value),
        change: Some(change),
        low: Some(low),
        high: Some(high),
        verdict,
        note: note.into(),
    }
}

/// Errors and calls of one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proportion {
    pub errors: f64,
    pub calls: f64,
}

/// The verdict on an error rate: regressed when the candidate's rate exceeds the baseline's by more
/// than `tolerance` of it plus a tenth of a percentage point (so that 0 errors against 1 in 100,000
/// calls is not a regression) and the Agresti–Caffo interval of the difference excludes 0.
pub fn judge_error_rate(
    baseline: Option<Proportion>,
    candidate: Option<Proportion>,
    tolerance: f64,
    confidence: f64,
) -> Judged {
    let measured = |p: Option<Proportion>| match p {
        Some(p) if p.calls > 0.0 => Measured::Value(Estimate::new(p.errors / p.calls, 0.0, 0.0)),
        Some(_) => Measured::NotEnough {
            has: "no call".into(),
            needs: "a call".into(),
        },
        None => Measured::Missing,
    };
    if let Some(mut j) = not_enough(&measured(baseline), &measured(candidate)) {
        j.change = None;
        return j;
    }
    let (b, c) = (baseline.expect("measured"), candidate.expect("measured"));
    let (pb, pc) = (b.errors / b.calls, c.errors / c.calls);
    let adjusted = |p: Proportion| (p.errors + 1.0) / (p.calls + 2.0);
    let (ab, ac) = (adjusted(b), adjusted(c));
    let se = (ab * (1.0 - ab) / (b.calls + 2.0) + ac * (1.0 - ac) / (c.calls + 2.0)).sqrt();
    let centre = ac - ab;
    let half = z_of(confidence) * se;
    let (low, high) = (centre - half, centre + half);
    let difference = pc - pb;
    let margin = pb * tolerance + 0.001;
    let (verdict, note) = if difference > margin && low > 0.0 {
        (
            Verdict::Regressed,
            "more errors beyond the tolerance and the noise",
        )
    } else if -difference > margin && high < 0.0 {
        (
            Verdict::Improved,
            "fewer errors beyond the tolerance and the noise",
        )
    } else {
        (Verdict::Unchanged, "within the tolerance or the noise")
    };
    Judged {
        baseline: Some(pb),
        candidate: Some(pc),
        change: Some(difference),
        low: Some(low),
        high: Some(high),
        verdict,
        note: note.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64, se: f64, df: f64) -> Measured {
        Measured::Value(Estimate::new(v, se, df))
    }

    #[test]
    fn quantiles_of_the_t_and_normal() {
        assert!((z_of(0.95) - 1.959964).abs() < 1e-5);
        assert!((t_of(0.95, 4.0) - 2.776445).abs() < 1e-5);
        assert!((t_of(0.95, f64::INFINITY) - 1.959964).abs() < 1e-5);
    }

    #[test]
    fn a_percentile_needs_ten_calls_beyond_it() {
        assert_eq!(calls_needed(0.5), 20);
        assert_eq!(calls_needed(0.99), 1000);
        assert_eq!(calls_needed(0.999), 10_000);
        assert_eq!(quantile_bounds(999, 0.99, 1.96), None);
        let (low, high) = quantile_bounds(1000, 0.99, 1.96).unwrap();
        // 990 ∓ 1.96·√9.9 = 983.8 … 996.2: ranks 983 and 998
        assert!((low - 0.983).abs() < 1e-9, "{low}");
        assert!((high - 0.998).abs() < 1e-9, "{high}");
        let (low, high) = quantile_bounds(1_000_000, 0.5, 1.96).unwrap();
        assert!(high - low < 0.0021 && low < 0.5 && high > 0.5);
    }

    #[test]
    fn a_throughput_needs_three_seconds() {
        assert_eq!(relative_se(&[1.0, 2.0]), None);
        let (se, df) = relative_se(&[100.0, 100.0, 100.0]).unwrap();
        assert_eq!((se, df), (0.0, 2.0));
        let (se, _) = relative_se(&[90.0, 100.0, 110.0]).unwrap();
        assert!((se - 10.0 / 3f64.sqrt() / 100.0).abs() < 1e-12);
    }

    #[test]
    fn a_run_against_itself_is_unchanged() {
        let e = value(1000.0, 0.02, 3.0);
        let j = judge_ratio(&e, &e, Worse::Lower, 0.10, 0.95);
        assert_eq!(j.verdict, Verdict::Unchanged);
        assert_eq!(j.change, Some(0.0));
        assert!(j.low.unwrap() < 0.0 && j.high.unwrap() > 0.0);
    }

    #[test]
    fn a_regression_must_be_beyond_both_tolerance_and_noise() {
        // 25% fewer operations per second, 2% noise each: regressed
        let (b, c) = (value(1000.0, 0.02, 3.0), value(750.0, 0.02, 3.0));
        let j = judge_ratio(&b, &c, Worse::Lower, 0.10, 0.95);
        assert_eq!(j.verdict, Verdict::Regressed, "{j:?}");
        assert!(j.high.unwrap() < 0.0);
        // and the other way round an improvement
        let j = judge_ratio(&c, &b, Worse::Lower, 0.10, 0.95);
        assert_eq!(j.verdict, Verdict::Improved, "{j:?}");
        // the same change with 20% noise: within the noise
        let (b, c) = (value(1000.0, 0.2, 3.0), value(750.0, 0.2, 3.0));
        let j = judge_ratio(&b, &c, Worse::Lower, 0.10, 0.95);
        assert_eq!(j.verdict, Verdict::Unchanged);
        assert_eq!(j.note, "beyond the tolerance but within the noise");
        // 5% slower, certainly, but within a 10% tolerance
        let (b, c) = (value(1.0, 0.001, f64::INFINITY), value(1.05, 0.001, 1e9));
        let j = judge_ratio(&b, &c, Worse::Higher, 0.10, 0.95);
        assert_eq!(j.verdict, Verdict::Unchanged);
        assert_eq!(j.note, "beyond the noise but within the tolerance");
        // a latency 30% higher, beyond both
        let c = value(1.3, 0.001, f64::INFINITY);
        assert_eq!(
            judge_ratio(&b, &c, Worse::Higher, 0.10, 0.95).verdict,
            Verdict::Regressed
        );
    }

    #[test]
    fn too_few_samples_say_what_would_be_enough() {
        let few = Measured::NotEnough {
            has: "340 calls".into(),
            needs: "1000 calls".into(),
        };
        let j = judge_ratio(&few, &value(1.0, 0.01, 5.0), Worse::Higher, 0.1, 0.95);
        assert_eq!(j.verdict, Verdict::NotEnoughData);
        assert_eq!(j.note, "needs 1000 calls; the baseline has 340 calls");
        let j = judge_ratio(
            &value(1.0, 0.01, 5.0),
            &Measured::Missing,
            Worse::Higher,
            0.1,
            0.95,
        );
        assert_eq!(j.note, "the candidate has no such figure");
        assert_eq!(j.baseline, Some(1.0));
    }

    #[test]
    fn a_baseline_of_several_runs_carries_their_spread() {
        let runs: Vec<Estimate> = [950.0, 1000.0, 1050.0, 900.0, 1100.0]
            .iter()
            .map(|&v| Estimate::new(v, 0.005, 3.0))
            .collect();
        let b = pooled(&runs).unwrap();
        assert!((b.value - 1000.0).abs() < 1e-6, "the median: {}", b.value);
        let (spread, df) = b.spread.unwrap();
        // median absolute deviation of the logs: ln(1000/950) ≈ 0.0513 (the third of 0, 0.0488,
        // 0.0513, 0.0953, 0.1054), × 1.4826
        assert!(
            (spread - 1.4826 * (1000f64 / 950.0).ln()).abs() < 1e-9,
            "{spread}"
        );
        assert_eq!(df, 4.0);
        // 12% slower than runs that spread ±5–10% among themselves: within that spread…
        let j = judge_ratio(
            &Measured::Value(b),
            &value(880.0, 0.005, 3.0),
            Worse::Lower,
            0.10,
            0.95,
        );
        assert_eq!(j.verdict, Verdict::Unchanged, "{j:?}");
        // …while against one of them alone, with its 0.5% noise, it is a regression
        let j = judge_ratio(
            &Measured::Value(runs[1]),
            &value(880.0, 0.005, 3.0),
            Worse::Lower,
            0.10,
            0.95,
        );
        assert_eq!(j.verdict, Verdict::Regressed);
        // 40% slower is beyond even that spread
        let j = judge_ratio(
            &Measured::Value(b),
            &value(600.0, 0.005, 3.0),
            Worse::Lower,
            0.10,
            0.95,
        );
        assert_eq!(j.verdict, Verdict::Regressed);
        assert_eq!(pooled(&[]), None);
    }

    #[test]
    fn one_bad_run_in_a_baseline_neither_moves_it_nor_hides_a_regression() {
        // four runs at 1000 ops/s (±1%), one that met a checkpoint at 600
        let runs: Vec<Estimate> = [1000.0, 1010.0, 990.0, 600.0, 1005.0]
            .iter()
            .map(|&v| Estimate::new(v, 0.01, 3.0))
            .collect();
        let b = pooled(&runs).unwrap();
        assert!((b.value - 1000.0).abs() < 1e-6, "{}", b.value);
        let j = judge_ratio(
            &Measured::Value(b),
            &value(780.0, 0.01, 3.0),
            Worse::Lower,
            0.10,
            0.95,
        );
        assert_eq!(j.verdict, Verdict::Regressed, "{j:?}");
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }

    #[test]
    fn the_per_second_spread_widens_a_percentile() {
        assert_eq!(design_effect(&[1.0, 1.0, 1.0], 0.01), DesignEffect::NONE);
        // per-second p99s of 1, 2 and 4 ms: a log spread of ln 2, far beyond 1%
        let d = design_effect(&[1.0, 2.0, 4.0], 0.01);
        assert!(
            (d.factor - 2f64.ln() / 3f64.sqrt() / 0.01).abs() < 1e-9,
            "{d:?}"
        );
        assert_eq!(d.df, 2.0);
        assert_eq!(design_effect(&[1.0, 2.0], 0.01), DesignEffect::NONE);
        let e = percentile(
            1.0,
            0.9,
            1.1,
            1.96,
            DesignEffect {
                factor: 2.0,
                df: 4.0,
            },
        );
        assert!((e.log_se - 2.0 * (1.1f64.ln() - 0.9f64.ln()) / 3.92).abs() < 1e-12);
        assert_eq!(e.df, 4.0);
        assert_eq!(
            percentile(1.0, 0.9, 1.1, 1.96, DesignEffect::NONE).df,
            f64::INFINITY
        );
    }

    #[test]
    fn error_rates_compare_as_differences() {
        let p = |errors, calls| Some(Proportion { errors, calls });
        // none against 1 in 100,000: unchanged
        let j = judge_error_rate(p(0.0, 100_000.0), p(1.0, 100_000.0), 0.1, 0.95);
        assert_eq!(j.verdict, Verdict::Unchanged);
        // 0.1% against 5%: regressed
        let j = judge_error_rate(p(10.0, 10_000.0), p(500.0, 10_000.0), 0.1, 0.95);
        assert_eq!(j.verdict, Verdict::Regressed, "{j:?}");
        assert!((j.change.unwrap() - 0.049).abs() < 1e-12);
        // 1 error in 10 calls against none in 10: within the noise
        let j = judge_error_rate(p(0.0, 10.0), p(1.0, 10.0), 0.1, 0.95);
        assert_eq!(j.verdict, Verdict::Unchanged);
        let j = judge_error_rate(None, p(1.0, 10.0), 0.1, 0.95);
        assert_eq!(j.verdict, Verdict::NotEnoughData);
    }
}
