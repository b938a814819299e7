//! Series of load runs that look for a limit:
//! - `stress.ramp`: worker counts in the order given, until a step degrades (errors, p99, or
//!   throughput falling from the best step so far);
//! - `stress.find_optimal_pool_size`: closed-model worker counts from `min_workers` doubling to
//!   `max_workers`: the count with the highest throughput whose p99 meets a target;
//! - `stress.find_capacity`: an open-model search over the arrival rate (double until a step fails,
//!   then bisect) for the highest rate the server sustains.
//!
//! Each step is a load run, recorded like any other; its parameters name the series (`series`:
//! the function, the step, and the first step's run id), so `stress.report_html` of any step charts
//! them all.

use super::{LoadRequest, Scenario, Workload, invalid, start_run, workload};
use crate::error::OrRaise;
use crate::gucs;
use crate::postgres::json_arg::JsonArg;
use crate::postgres::procedure::Call;
use crate::runs::control::require_preload;
use pgrx::prelude::*;

/// What a step measured (from `stress.results` and `stress.timeline`).
#[derive(Debug, Clone)]
pub struct Step {
    pub run_id: i64,
    /// successful operations per second
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error_rate: f64,
    /// open model: the share of the arrivals due in the step that succeeded
    pub achieved_share: Option<f64>,
    /// the three wait events the run's workers were seen in most, with their shares
    pub wait_events: Option<String>,
}

impl Step {
    fn of(run_id: i64) -> Step {
        // (read-only, under a new snapshot: it sees what the step's workers recorded — or, on a
        // hot standby, the primary's record of the step, replayed — and asks for no transaction id)
        let row = crate::postgres::spi_read::latest::<pgrx::JsonB>(
            "SELECT jsonb_build_object(
                 'ops', t.ops_per_sec, 'p50', t.p50_ms, 'p99', t.p99_ms,
                 'errors', t.errors::float8 / greatest(t.calls, 1),
                 'share', (t.details->>'achieved_share')::float8,
                 'waits', (SELECT string_agg(w.key || ' ' || round(100 * w.n / w.total) || '%', ', '
                                             ORDER BY w.n DESC, w.key)
                           FROM (SELECT e.key, sum(e.value::float8) AS n,
                                        sum(sum(e.value::float8)) OVER () AS total
                                 FROM stress.timeline l, jsonb_each_text(l.wait_events) e
                                 -- (Extension:Extension: the open model's workers waiting for
                                 -- their next arrival, not for the server)
                                 WHERE l.run_id = $1 AND e.key <> 'Extension:Extension'
                                 GROUP BY e.key
                                 ORDER BY n DESC, e.key LIMIT 3) w
                           WHERE w.total > 0))
             FROM (SELECT 1) one
             LEFT JOIN stress.results t ON t.run_id = $1 AND t.name = 'total'",
            &[run_id.into()],
        )
        .expect("reading a step's figures")
        .expect("a row");
        let v = &row.0;
        Step {
            run_id,
            ops_per_sec: v["ops"].as_f64().unwrap_or(0.0),
            p50_ms: v["p50"].as_f64(),
            p99_ms: v["p99"].as_f64(),
            error_rate: v["errors"].as_f64().unwrap_or(0.0),
            achieved_share: v["share"].as_f64(),
            wait_events: v["waits"].as_str().map(str::to_owned),
        }
    }
}

/// The runs of one series, started one after another, each waited for by the procedure `call`,
/// which commits before each step: no step starts with a horizon held by the caller or by the
/// steps before it.
struct Series<'c> {
    call: &'c Call,
    kind: &'static str,
    steps: Option<usize>,
    first_run_id: Option<i64>,
    done: usize,
    template: LoadRequest,
}

impl<'c> Series<'c> {
    fn new(
        call: &'c Call,
        kind: &'static str,
        steps: Option<usize>,
        seconds: f64,
        w: Workload,
    ) -> Series<'c> {
        Series {
            call,
            kind,
            steps,
            first_run_id: None,
            done: 0,
            template: LoadRequest::new(seconds, 1, w),
        }
    }

    /// Run the next step with `workers` (open model at `rate` ops/s when given) and read it.
    fn run(&mut self, workers: usize, rate: Option<f64>) -> Step {
        self.done += 1;
        let run_id = start_run(
            self.template
                .clone()
                .workers(workers)
                .rate(rate)
                .scenario(Scenario::Series {
                    kind: self.kind,
                    step: self.done,
                    steps: self.steps,
                    first_run_id: self.first_run_id,
                }),
            Some(self.call),
        )
        .wait(self.call);
        self.first_run_id.get_or_insert(run_id);
        let step = Step::of(run_id);
        self.call.commit();
        step
    }

    /// Keep what the series made of `step` (see `stress.series_steps`), and commit. (Not on a
    /// hot standby, which cannot write: there the NOTICEs and the answer say it.)
    fn mark(&self, step: &Step, ok: bool, reason: Option<&str>, chosen: bool) {
        if crate::postgres::backend::in_recovery() {
            return;
        }
        crate::records::mark_series_step(
            step.run_id,
            serde_json::json!({
                "ok": ok, "reason": reason, "chosen": chosen,
                "ops_per_sec": step.ops_per_sec, "p50_ms": step.p50_ms, "p99_ms": step.p99_ms,
                "error_rate": step.error_rate, "achieved_share": step.achieved_share,
                "wait_events": step.wait_events,
            }),
        );
        self.call.commit();
    }

    /// The series' id: its first step's run id.
    fn id(&self) -> Option<i64> {
        self.first_run_id
    }
}

/// What is wrong with a step, against the targets that were given (None: nothing).
fn shortfall(
    step: &Step,
    max_error_rate: f64,
    max_p99_ms: Option<f64>,
    best_ops: Option<f64>,
    max_drop: Option<f64>,
) -> Option<String> {
    if step.error_rate > max_error_rate {
        return Some(format!(
            "error rate {:.2}% > {:.2}%",
            step.error_rate * 100.0,
            max_error_rate * 100.0
        ));
    }
    if let Some(target) = max_p99_ms {
        match step.p99_ms {
            Some(p99) if p99 > target => return Some(format!("p99 {p99:.1} ms > {target} ms")),
            None => return Some("no operation completed".into()),
            _ => {}
        }
    }
    if let (Some(best), Some(drop)) = (best_ops, max_drop)
        && step.ops_per_sec < best * (1.0 - drop)
    {
        return Some(format!(
            "throughput {:.0} ops/s, {:.0}% below the best step's {best:.0}",
            step.ops_per_sec,
            100.0 * (1.0 - step.ops_per_sec / best)
        ));
    }
    None
}

/// What a ramp found: the series id, its steps, the most workers of a step that did not degrade,
/// the best throughput, and the worker count and reason of the step that degraded (if one did).
pub struct RampAnswer {
    pub series_id: Option<i64>,
    pub steps: i32,
    pub sustained_workers: Option<i32>,
    pub best_ops_per_sec: Option<f64>,
    pub degraded_workers: Option<i32>,
    pub reason: Option<String>,
}

/// The seed's incremental load test: one run of `step` per entry of `workers`, in order, until a
/// step degrades — its error rate over `max_error_rate`, its p99 over `max_p99_ms`, or its
/// throughput more than `max_throughput_drop` below the best step's so far. That step is marked
/// degraded, with the reason, and the ramp stops there.
pub fn ramp(
    call: &Call,
    workers: Vec<Option<i32>>,
    step: Interval,
    max_error_rate: f64,
    mix: Option<JsonArg>,
    max_p99_ms: Option<f64>,
    max_throughput_drop: Option<f64>,
) -> RampAnswer {
    const F: &str = "ramp";
    require_preload(F);
    let counts = worker_counts(F, &workers);
    let seconds = crate::args::step_seconds(F, step, counts.len());
    let max_error_rate = crate::args::fraction(
        F,
        "max_error_rate",
        max_error_rate,
        "The seed degrades at 1% errors: max_error_rate => 0.01.",
    );
    let max_p99_ms = crate::args::target_ms(F, "max_p99_ms", max_p99_ms);
    let max_drop = max_throughput_drop.map(|d| {
        crate::args::fraction(
            F,
            "max_throughput_drop",
            d,
            "e.g. 0.2: a step 20% below the best one so far is degraded.",
        )
    });
    let mut series = Series::new(
        call,
        F,
        Some(counts.len()),
        seconds,
        workload(F, mix, None, "read committed", None),
    );
    let mut answer = RampAnswer {
        series_id: None,
        steps: 0,
        sustained_workers: None,
        best_ops_per_sec: None,
        degraded_workers: None,
        reason: None,
    };
    for &k in &counts {
        let s = series.run(k, None);
        let reason = shortfall(
            &s,
            max_error_rate,
            max_p99_ms,
            answer.best_ops_per_sec,
            max_drop,
        );
        series.mark(&s, reason.is_none(), reason.as_deref(), false);
        answer.steps += 1;
        answer.best_ops_per_sec = Some(
            answer
                .best_ops_per_sec
                .map_or(s.ops_per_sec, |b| b.max(s.ops_per_sec)),
        );
        match reason {
            None => answer.sustained_workers = Some(k as i32),
            Some(reason) => {
                notice(format!(
                    "ramp: step {} ({k} workers) degraded: {reason}",
                    answer.steps
                ));
                answer.degraded_workers = Some(k as i32);
                answer.reason = Some(reason);
                break;
            }
        }
    }
    answer.series_id = series.id();
    answer
}

fn worker_counts(function: &'static str, workers: &[Option<i32>]) -> Vec<usize> {
    if workers.is_empty() {
        invalid(
            function,
            "workers must list at least one worker count".into(),
            "Pass the steps, e.g. workers => '{1,2,4,8}'.",
        );
    }
    workers
        .iter()
        .map(|w| match w {
            None => invalid(
                function,
                "workers must not contain NULL".into(),
                "Pass the steps, e.g. workers => '{1,2,4,8}'.",
            ),
            Some(k) => crate::args::worker_count(function, Some(*k)).or_raise(),
        })
        .collect()
}

/// What a pool-size search found: the series id, its steps, and the best step's worker count and
/// figures (None when no step met the target).
pub struct PoolAnswer {
    pub series_id: Option<i64>,
    pub steps: i32,
    pub best_workers: Option<i32>,
    pub ops_per_sec: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The worker counts a pool-size search tries: `min`, doubling, and `max`.
pub fn pool_sizes(min: usize, max: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut k = min;
    while k < max {
        sizes.push(k);
        k *= 2;
    }
    sizes.push(max);
    sizes
}

/// Closed-model runs at `min_workers`, doubling, up to `max_workers`: the worker count with the
/// highest throughput whose p99 meets `target_p99_ms` (and error rate `max_error_rate`) is `best`.
/// Stops early past the knee: a step that misses the target with less throughput than the best.
#[allow(clippy::too_many_arguments)]
pub fn find_optimal_pool_size(
    call: &Call,
    min_workers: i32,
    max_workers: i32,
    target_p99_ms: f64,
    step: Interval,
    mix: Option<JsonArg>,
    transactions: Option<JsonArg>,
    max_error_rate: f64,
) -> PoolAnswer {
    const F: &str = "find_optimal_pool_size";
    require_preload(F);
    let min = crate::args::worker_count(F, Some(min_workers)).or_raise();
    let max = crate::args::worker_count(F, Some(max_workers)).or_raise();
    if min > max {
        invalid(
            F,
            format!("min_workers ({min}) is more than max_workers ({max})"),
            "e.g. min_workers => 1, max_workers => 32.",
        );
    }
    let target =
        crate::args::target_ms(F, "target_p99_ms", Some(target_p99_ms)).unwrap_or(target_p99_ms);
    let max_error_rate = crate::args::fraction(
        F,
        "max_error_rate",
        max_error_rate,
        "e.g. 0.01 for at most 1% errors.",
    );
    let sizes = pool_sizes(min, max);
    let seconds = crate::args::step_seconds(F, step, sizes.len());
    let mut series = Series::new(
        call,
        F,
        Some(sizes.len()),
        seconds,
        workload(F, mix, transactions, "read committed", None),
    );
    let mut steps: Vec<PoolStep> = Vec::new();
    for &k in &sizes {
        let s = series.run(k, None);
        let reason = shortfall(&s, max_error_rate, Some(target), None, None);
        series.mark(&s, reason.is_none(), reason.as_deref(), false);
        let meets = reason.is_none();
        let best_so_far = best_of(&steps).map_or(0.0, |b| b.step.ops_per_sec);
        let past_the_knee = !meets && s.ops_per_sec < best_so_far;
        steps.push(PoolStep {
            workers: k,
            step: s,
            meets,
        });
        if past_the_knee {
            break;
        }
    }
    let best = best_of(&steps);
    match best {
        Some(b) => {
            series.mark(&b.step, true, None, true);
            notice(format!(
                "find_optimal_pool_size: {} workers: {:.0} ops/s with p99 {:.2} ms (target {target} ms), run {}",
                b.workers,
                b.step.ops_per_sec,
                b.step.p99_ms.unwrap_or(0.0),
                b.step.run_id
            ));
        }
        None => notice(format!(
            "find_optimal_pool_size: no worker count from {min} to {max} met p99 <= {target} ms"
        )),
    }
    PoolAnswer {
        series_id: series.id(),
        steps: steps.len() as i32,
        best_workers: best.map(|b| b.workers as i32),
        ops_per_sec: best.map(|b| b.step.ops_per_sec),
        p50_ms: best.and_then(|b| b.step.p50_ms),
        p99_ms: best.and_then(|b| b.step.p99_ms),
    }
}

/// One step of a pool-size search: its worker count, its figures, whether it met the targets.
struct PoolStep {
    workers: usize,
    step: Step,
    meets: bool,
}

/// The step with the highest throughput among those that met the targets (and did any work).
fn best_of(steps: &[PoolStep]) -> Option<&PoolStep> {
    steps
        .iter()
        .filter(|s| s.meets && s.step.ops_per_sec > 0.0)
        .max_by(|a, b| a.step.ops_per_sec.total_cmp(&b.step.ops_per_sec))
}

/// What a capacity search found: the series id, its steps, the highest rate sustained (None: none
/// was), the lowest not sustained, and the p99 of the step at capacity.
pub struct CapacityAnswer {
    pub series_id: Option<i64>,
    pub steps: i32,
    pub capacity: Option<f64>,
    pub not_sustained: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Where an arrival-rate search goes next.
#[derive(Debug, Default)]
pub struct RateSearch {
    /// the highest rate sustained so far, and the lowest not sustained
    pub sustained: Option<f64>,
    pub failed: Option<f64>,
}

impl RateSearch {
    /// Note a step at `offered` that achieved `achieved` and was (or was not) `ok`.
    pub fn record(&mut self, offered: f64, achieved: f64, ok: bool) {
        if ok {
            self.sustained = Some(self.sustained.map_or(offered, |s| s.max(offered)));
        } else {
            // A server that achieved well below what was offered cannot sustain much more than
            // it achieved: bound the search there (clearly saturated: fewer steps to bisect).
            let floor = self.sustained.unwrap_or(0.0);
            let bound = if achieved < 0.9 * offered {
                (achieved * 1.05).max(floor * 1.05).min(offered)
            } else {
                offered
            };
            self.failed = Some(self.failed.map_or(bound, |f| f.min(bound)));
        }
    }

    /// The next rate to offer, or None when the answer is within `precision` (e.g. 0.1: 10%).
    pub fn next(&self, last: f64, precision: f64) -> Option<f64> {
        match (self.sustained, self.failed) {
            (_, None) => Some(last * 2.0),
            (None, Some(failed)) => (failed / 2.0 >= 1.0).then_some(failed / 2.0),
            (Some(lo), Some(hi)) => (hi > lo * (1.0 + precision)).then(|| (lo * hi).sqrt()),
        }
    }
}

/// The highest arrival rate (open model, operations per second over all workers) at which the
/// server keeps up: achieved at least 98% of the offered rate, p99 from each operation's intended
/// start at most `target_p99_ms`, error rate at most `max_error_rate`. Starts at `start_rate`,
/// doubles until a step falls short, then bisects (geometrically) until the answer is within 10%,
/// in at most `max_steps` steps.
#[allow(clippy::too_many_arguments)]
pub fn find_capacity(
    call: &Call,
    target_p99_ms: f64,
    max_error_rate: f64,
    workers: Option<i32>,
    step: Interval,
    mix: Option<JsonArg>,
    transactions: Option<JsonArg>,
    start_rate: f64,
    max_steps: i32,
) -> CapacityAnswer {
    const F: &str = "find_capacity";
    require_preload(F);
    let target =
        crate::args::target_ms(F, "target_p99_ms", Some(target_p99_ms)).unwrap_or(target_p99_ms);
    let max_error_rate = crate::args::fraction(
        F,
        "max_error_rate",
        max_error_rate,
        "e.g. 0.01 for at most 1% errors.",
    );
    let k =
        crate::args::worker_count(F, Some(workers.unwrap_or(gucs::MAX_WORKERS.get()))).or_raise();
    check_search(start_rate, max_steps, k);
    // (the doubling stops at the fastest rate the workers can be asked for)
    let fastest = super::arrivals::MAX_RATE.min(k as f64 * super::arrivals::MAX_RATE_PER_WORKER);
    let seconds = crate::args::step_seconds(F, step, max_steps as usize);
    let mut series = Series::new(
        call,
        F,
        None,
        seconds,
        workload(F, mix, transactions, "read committed", None),
    );
    let mut search = RateSearch::default();
    let mut done: Vec<RateStep> = Vec::new();
    let mut rate = start_rate;
    for _ in 0..max_steps {
        let s = series.run(k, Some(rate));
        // (achieved / offered: of the arrivals due in the step — a Poisson count, within a few
        // percent of rate × seconds — the share that succeeded)
        let share = s.achieved_share.unwrap_or(s.ops_per_sec / rate);
        let reason = rate_shortfall(&s, rate, share, max_error_rate, target);
        let sustained = reason.is_none();
        series.mark(&s, sustained, reason.as_deref(), false);
        search.record(rate, share * rate, sustained);
        done.push(RateStep {
            rate,
            step: s,
            sustained,
        });
        match search.next(rate, 0.1).map(|next| next.min(fastest)) {
            Some(next) if next != rate => rate = next,
            _ => break,
        }
    }
    let at_capacity = search
        .sustained
        .and_then(|capacity| done.iter().find(|d| d.sustained && d.rate == capacity));
    if let Some(d) = at_capacity {
        series.mark(&d.step, true, None, true);
    }
    announce_capacity(&search, &done, target, max_steps);
    CapacityAnswer {
        series_id: series.id(),
        steps: done.len() as i32,
        capacity: search.sustained,
        not_sustained: search.failed,
        p99_ms: at_capacity.and_then(|d| d.step.p99_ms),
    }
}

/// find_capacity's search, checked: a first rate of at least 1 op/s that `workers` can be asked
/// for, and 1 to 50 steps (22023 otherwise).
fn check_search(start_rate: f64, max_steps: i32, workers: usize) {
    const F: &str = "find_capacity";
    if !(start_rate.is_finite() && start_rate >= 1.0) {
        invalid(
            F,
            format!("start_rate must be at least 1 operation per second, got {start_rate}"),
            "e.g. start_rate => 100; each step doubles it until one falls short.",
        );
    }
    super::check_rate(F, "start_rate", start_rate, workers).or_raise();
    if !(1..=50).contains(&max_steps) {
        invalid(
            F,
            format!("max_steps must be between 1 and 50, got {max_steps}"),
            "e.g. max_steps => 12.",
        );
    }
}

/// One step of a capacity search: the rate it offered, what it achieved, whether it was sustained.
struct RateStep {
    rate: f64,
    step: Step,
    sustained: bool,
}

/// What a capacity search's step at `rate` fell short of: the targets, or the arrivals it served
/// (`share` of them; at least 98% must succeed). None: it sustained the rate.
fn rate_shortfall(
    s: &Step,
    rate: f64,
    share: f64,
    max_error_rate: f64,
    target: f64,
) -> Option<String> {
    shortfall(s, max_error_rate, Some(target), None, None).or_else(|| {
        (share < 0.98).then(|| {
            format!(
                "achieved {:.1}% of the {rate:.0} ops/s offered ({:.0} ops/s)",
                100.0 * share,
                s.ops_per_sec
            )
        })
    })
}

/// The search's answer, as a NOTICE.
fn announce_capacity(search: &RateSearch, done: &[RateStep], target: f64, max_steps: i32) {
    match search.sustained {
        Some(capacity) => notice(format!(
            "find_capacity: the server sustains {capacity:.0} ops/s with p99 <= {target} ms{}",
            match search.failed {
                Some(f) => format!(" (not {f:.0})"),
                None => format!(" (the search stopped there after {max_steps} steps)"),
            }
        )),
        None => notice(format!(
            "find_capacity: no rate from {:.0} ops/s up was sustained with p99 <= {target} ms",
            done.iter().map(|d| d.rate).fold(f64::INFINITY, f64::min)
        )),
    }
}

fn notice(message: String) {
    pgrx::notice!("{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizes_double_and_end_at_the_max() {
        assert_eq!(pool_sizes(1, 48), vec![1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(pool_sizes(4, 4), vec![4]);
        assert_eq!(pool_sizes(3, 10), vec![3, 6, 10]);
    }

    /// A server that sustains up to 1,000 ops/s, and achieves 1,000 when offered more.
    fn server(offered: f64) -> (f64, bool) {
        let achieved = offered.min(1000.0);
        (achieved, offered <= 1000.0)
    }

    #[test]
    fn the_rate_search_doubles_then_bisects_to_within_ten_percent() {
        let mut search = RateSearch::default();
        let mut rate = 100.0;
        let mut offered = Vec::new();
        for _ in 0..20 {
            offered.push(rate);
            let (achieved, ok) = server(rate);
            search.record(rate, achieved, ok);
            match search.next(rate, 0.1) {
                Some(next) => rate = next,
                None => break,
            }
        }
        assert_eq!(&offered[..5], &[100.0, 200.0, 400.0, 800.0, 1600.0]);
        let (lo, hi) = (search.sustained.unwrap(), search.failed.unwrap());
        assert!(lo <= 1000.0 && hi > 1000.0 && hi <= lo * 1.1, "{lo} {hi}");
        // saturated at 1,600 offered (achieved 1,000): the bound is 1,050, not 1,600
        assert!(offered.len() <= 8, "{offered:?}");
    }

    #[test]
    fn nothing_sustained_halves_down_to_one() {
        let mut search = RateSearch::default();
        search.record(100.0, 10.0, false);
        assert_eq!(search.next(100.0, 0.1), Some(5.25));
        search.record(1.5, 0.5, false);
        assert_eq!(search.next(1.5, 0.1), None);
    }

    #[test]
    fn shortfalls_name_what_is_wrong() {
        let s = Step {
            run_id: 1,
            ops_per_sec: 750.0,
            p50_ms: Some(5.0),
            p99_ms: Some(394.0),
            error_rate: 0.0,
            achieved_share: None,
            wait_events: None,
        };
        assert_eq!(shortfall(&s, 0.01, None, Some(700.0), Some(0.2)), None);
        assert_eq!(
            shortfall(&s, 0.01, Some(100.0), None, None).unwrap(),
            "p99 394.0 ms > 100 ms"
        );
        assert_eq!(
            shortfall(&s, 0.01, None, Some(4377.0), Some(0.2)).unwrap(),
            "throughput 750 ops/s, 83% below the best step's 4377"
        );
    }
}
