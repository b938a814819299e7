//! A run's report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.
//! Plain Rust from the run's records (as [`RunRecords`], gathered by `report_html::gather`).
//!
//! Charts, each drawn only when the run has what it shows:
//! - `throughput`: ops/s per second of the run, errors and deadlocks marked above it;
//! - `latency`: p50 and p99 per second (log axis);
//! - `wait-events`: what the run's workers waited on each second, stacked;
//! - `percentiles`: each operation's (or query's) latency at p50 … p99.99 and the slowest call,
//!   both axes logarithmic (HdrHistogram's percentile plot);
//! - `series-throughput`, `series-p99`: a ramp's steps against their worker counts.

use super::svg::{self, Area, Axis, Chart, Line, Mark, MarkKind, Scale, escape, number};
use super::table::{Align, Cell, Html, Table};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write;

/// Wait events drawn as their own layer; the rest are summed into "other".
const WAIT_LAYERS: usize = 8;

#[derive(Debug, Deserialize)]
pub struct RunRecords {
    pub run: Run,
    #[serde(default)]
    pub results: Vec<ResultRow>,
    /// per second (or the mean of a few seconds, for a long run), in order
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// how many samples the run has (more than `samples` when they were bucketed)
    #[serde(default)]
    pub sample_count: i64,
    #[serde(default)]
    pub timeline: Vec<TimelinePoint>,
    /// the server's work over the run's timeline rows (none without a timeline)
    #[serde(default)]
    pub server: Option<Server>,
    /// the run's ramp, step by step, when it is one of its steps
    #[serde(default)]
    pub series: Vec<SeriesStep>,
    /// stress.report's judged targets (load runs)
    #[serde(default)]
    pub targets: Option<serde_json::Map<String, Value>>,
    /// stress.lock_contention's rows (0.4.0 and later)
    #[serde(default)]
    pub contention: Vec<Contention>,
    /// stress.analyze_deadlocks' patterns of this run
    #[serde(default)]
    pub deadlocks: Vec<DeadlockPattern>,
    /// per standby: `[elapsed_s, replay lag bytes, flush lag bytes]` each second (or bucket)
    #[serde(default)]
    pub replication: Vec<StandbyLag>,
    /// a run through PgBouncer: its pools each second (or bucket)
    #[serde(skip)]
    pub pool: Vec<PoolPoint>,
    /// the run against a baseline (`report_html(run, baseline)`): shown before any figure
    #[serde(skip)]
    pub comparison: Option<Comparison>,
    /// what each of the run's wait events is, as the server describes it (`pg_wait_events`,
    /// PostgreSQL 17 and later; empty before)
    #[serde(skip)]
    pub wait_descriptions: Vec<(String, String)>,
}

/// A run compared with its baseline: what differs in their environments, then every figure's
/// verdict.
#[derive(Debug)]
pub struct Comparison {
    pub baseline: i64,
    pub differences: Vec<crate::compare::environment::Difference>,
    pub rows: Vec<crate::compare::Compared>,
}

/// `[elapsed_s, clients waiting (the most in the bucket), clients active, server connections
/// active (the most), server connections idle]`, summed over the run's pools.
pub type PoolPoint = [f64; 5];

#[derive(Debug, Deserialize)]
pub struct StandbyLag {
    pub standby: String,
    pub points: Vec<(f64, Option<f64>, Option<f64>)>,
}

#[derive(Debug, Deserialize)]
pub struct Contention {
    pub relation: String,
    pub locktype: String,
    pub mode: String,
    pub waits: i64,
    pub longest_ms: Option<f64>,
    pub total_ms: Option<f64>,
    pub contended: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct DeadlockPattern {
    pub pattern: String,
    pub kind: String,
    pub processes: Option<String>,
    pub occurrences: i64,
    pub example: Option<String>,
    pub advice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Run {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub run_as: String,
    pub error: Option<String>,
    #[serde(default)]
    pub parameters: Value,
    pub peak_connections: Option<i64>,
    /// what it ran on (NULL before 0.8.0)
    #[serde(default)]
    pub environment: Value,
}

#[derive(Debug, Deserialize)]
pub struct ResultRow {
    pub name: String,
    pub rows: Option<i64>,
    pub calls: Option<i64>,
    pub errors: Option<i64>,
    pub seconds: Option<f64>,
    pub rows_per_sec: Option<f64>,
    pub ops_per_sec: Option<f64>,
    pub avg_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    #[serde(default)]
    pub details: Value,
}

#[derive(Debug, Deserialize)]
pub struct Sample {
    pub elapsed_s: f64,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: i64,
    pub deadlocks: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct TimelinePoint {
    pub elapsed_s: f64,
    /// mean workers per "type:event" ("CPU": not waiting)
    pub waits: serde_json::Map<String, Value>,
}

/// Sums (and highs) of the run's stress.timeline rows.
#[derive(Debug, Deserialize)]
pub struct Server {
    pub seconds: i64,
    pub wal_bytes: Option<i64>,
    pub blks_hit: Option<i64>,
    pub blks_read: Option<i64>,
    pub xact_commit: Option<i64>,
    pub xact_rollback: Option<i64>,
    pub checkpoints: Option<i64>,
    pub autovacuum_workers: Option<i64>,
    /// (0.9.0: WAL flushes; pg_stat_io's relation I/O, PostgreSQL 16 and later; absent before: serde reads
    /// a missing Option as None)
    pub wal_syncs: Option<i64>,
    pub io_reads: Option<i64>,
    pub io_writes: Option<i64>,
    pub io_backend_writes: Option<i64>,
    pub io_extends: Option<i64>,
    pub io_evictions: Option<i64>,
    pub io_fsyncs: Option<i64>,
    pub lock_wait_seconds: i64,
    pub longest_lock_wait_ms: Option<f64>,
    pub lock_relation: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SeriesStep {
    pub run_id: i64,
    pub step: i64,
    pub workers: i64,
    /// the offered rate of an open-model step
    #[serde(default)]
    pub rate: Option<f64>,
    pub status: String,
    pub ops_per_sec: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;margin:24px auto;max-width:960px;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555}.status-completed{color:#2a7d2a}.status-failed,.status-interrupted,.status-cancelled{color:#b22}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.name,th.name{text-align:left;max-width:420px;overflow-wrap:anywhere}
td.pass{color:#2a7d2a;font-weight:600}td.fail{color:#b22;font-weight:600}td.none{color:#888}
pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
caption{text-align:left;font-weight:600;padding:4px 0}figure{margin:12px 0 20px}figcaption{font-weight:600;margin-bottom:4px}
svg.chart{max-width:100%;height:auto;background:#fff}
svg .plot{fill:#fcfcfc;stroke:#ccc}svg .grid{stroke:#e6e6e6}svg .tick{font-size:11px;fill:#555}
svg .axis-title{font-size:12px;fill:#333}
svg .line{fill:none;stroke-width:1.8}svg .line.dashed{stroke-dasharray:5 3}
svg .area{fill-opacity:.85;stroke:none}
svg .mark.error{fill:#d62728}svg .mark.deadlock{fill:#ff7f0e}
.legend span{display:inline-block;margin:2px 14px 2px 0;font-size:12px}
.legend i{display:inline-block;width:14px;height:4px;margin:0 5px 3px 0;vertical-align:middle}
.legend i.dashed{background-image:linear-gradient(90deg,transparent 60%,#fff 60%)!important;background-size:6px 4px}
.legend b.error{color:#d62728;margin-right:4px}.legend b.deadlock{color:#ff7f0e;margin-right:4px}
.note{color:#666;font-size:12px}
";

/// The page.
pub fn render(r: &RunRecords) -> String {
    let run = &r.run;
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>pg_stress run {} — {}</h1><p class="meta">status <b class="status-{}">{}</b> · run as {} · started {} · finished {}{}</p>"#,
        run.id,
        escape(&kind_title(run)),
        escape(&run.status),
        escape(&run.status),
        escape(&run.run_as),
        escape(run.started_at.as_deref().unwrap_or("–")),
        escape(run.finished_at.as_deref().unwrap_or("not yet")),
        run.peak_connections
            .map(|c| format!(" · peak connections {c}"))
            .unwrap_or_default()
    );
    if let Some(error) = &run.error {
        let _ = write!(body, "<p><b>Error:</b></p><pre>{}</pre>", escape(error));
    }
    if let Some(comparison) = &r.comparison {
        body.push_str(&comparison_section(comparison));
    }
    body.push_str(&results_table(&r.results));
    if let Some(targets) = &r.targets {
        body.push_str(&targets_table(targets));
    }
    if !r.samples.is_empty() {
        body.push_str("<h2>Over time</h2>");
        if r.sample_count > r.samples.len() as i64 {
            let _ = write!(
                body,
                r#"<p class="note">{} samples, drawn as {} points (means of consecutive seconds; p99: their highest).</p>"#,
                r.sample_count,
                r.samples.len()
            );
        }
        body.push_str(&throughput_chart(run, &r.samples).render());
        if let Some(chart) = latency_chart(run, &r.samples) {
            body.push_str(&chart.render());
        }
    }
    if let Some(chart) = wait_chart(run, &r.timeline) {
        body.push_str(&chart.render());
        body.push_str(&wait_descriptions(
            &wait_layers(&r.timeline),
            &r.wait_descriptions,
        ));
    }
    if let Some(server) = &r.server {
        body.push_str(&server_table(server));
    }
    if let Some(chart) = replication_chart(run, &r.replication) {
        body.push_str(&chart.render());
    }
    if let Some(chart) = pool_chart(run, &r.pool) {
        body.push_str(&chart.render());
    }
    body.push_str(&contention_section(&r.contention, &r.deadlocks));
    if let Some(chart) = percentile_chart(&r.results) {
        body.push_str("<h2>Latency distribution</h2>");
        body.push_str(&chart.render());
    }
    if !r.series.is_empty() {
        body.push_str(&series_section(run, &r.series));
    }
    body.push_str(&parameters_table(&run.parameters));
    body.push_str(&environment_table(&run.environment));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>pg_stress run {} — {}</title><style>{STYLE}</style></head><body>{body}<p class=\"note\">Made by stress.report_html({}).</p></body></html>\n",
        run.id,
        escape(&kind_title(run)),
        run.id
    )
}

/// "run_load", or the scenario that made the run ("ramp step 2 of 4").
fn kind_title(run: &Run) -> String {
    let p = &run.parameters;
    match (p["scenario"].as_str(), &p["series"]) {
        (Some(s), series) if series.is_object() => match series["steps"].as_i64() {
            Some(steps) => format!(
                "{s} step {} of {steps}",
                series["step"].as_i64().unwrap_or(0)
            ),
            None => format!("{s} step {}", series["step"].as_i64().unwrap_or(0)),
        },
        (Some(s), _) => s.to_owned(),
        (None, _) => run.kind.clone(),
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(number).unwrap_or_else(|| "–".into())
}

fn count(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "–".into())
}

fn results_table(results: &[ResultRow]) -> String {
    if results.is_empty() {
        return "<h2>Results</h2><p>This run recorded no results.</p>".into();
    }
    let timed = results.iter().any(|r| r.calls.is_some());
    let mut table = Table::new("results").text("name");
    let figures: &[&str] = if timed {
        &[
            "calls", "errors", "ops/s", "avg ms", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms",
            "max ms",
        ]
    } else {
        &["rows", "seconds", "rows/s"]
    };
    for name in figures {
        table = table.figure(name);
    }
    for r in results {
        let mut cells = vec![Cell::from(&r.name)];
        if timed {
            cells.extend([count(r.calls), count(r.errors)].map(Cell::from));
            cells.extend(
                [
                    r.ops_per_sec,
                    r.avg_ms,
                    r.p50_ms,
                    r.p95_ms,
                    r.p99_ms,
                    r.p999_ms,
                    r.max_ms,
                ]
                .map(|v| Cell::from(cell(v))),
            );
        } else {
            cells.extend([
                Cell::from(count(r.rows)),
                Cell::from(cell(r.seconds)),
                Cell::from(cell(r.rows_per_sec)),
            ]);
        }
        table.row(cells);
    }
    let mut out = format!("<h2>Results</h2>{}", table.render());
    if let Some(first_error) = results
        .iter()
        .find_map(|r| r.details["first_error"].as_str().map(|e| (&r.name, e)))
    {
        let _ = write!(
            out,
            r#"<p class="note">First error ({}): {}</p>"#,
            escape(first_error.0),
            escape(first_error.1)
        );
    }
    out
}

fn targets_table(targets: &serde_json::Map<String, Value>) -> String {
    let mut table = Table::new("targets")
        .text("metric")
        .figure("target")
        .figure("value")
        .figure("result")
        .text("what it measures");
    for (name, t) in targets {
        let (class, verdict) = match t["pass"].as_bool() {
            Some(true) => ("pass", "pass"),
            Some(false) => ("fail", "FAIL"),
            None => ("none", "not measured"),
        };
        table.row(vec![
            Cell::from(name),
            Cell::from(t["target"].as_str().unwrap_or("")),
            Cell::from(cell(t["value"].as_f64())),
            Cell::from(verdict).class(class),
            Cell::from(t["meaning"].as_str().unwrap_or("")),
        ]);
    }
    format!("<h2>Targets</h2>{}", table.render())
}

fn server_table(s: &Server) -> String {
    let per_second = |v: Option<i64>| {
        v.map(|v| {
            // (a count as itself up to 9999, then 12k, 1.5M …)
            let total = if v.abs() < 10_000 {
                v.to_string()
            } else {
                number(v as f64)
            };
            format!("{total} ({}/s)", number(v as f64 / s.seconds.max(1) as f64))
        })
        .unwrap_or_else(|| "–".into())
    };
    let hit_ratio = match (s.blks_hit, s.blks_read) {
        (Some(hit), Some(read)) if hit + read > 0 => {
            format!("{:.2}%", 100.0 * hit as f64 / (hit + read) as f64)
        }
        _ => "–".into(),
    };
    let wal = s
        .wal_bytes
        .map(|b| {
            format!(
                "{} MB ({} MB/s)",
                number(b as f64 / 1e6),
                number(b as f64 / 1e6 / s.seconds.max(1) as f64)
            )
        })
        .unwrap_or_else(|| "–".into());
    let longest = match (s.longest_lock_wait_ms, &s.lock_relation) {
        (Some(ms), Some(rel)) => format!("{} ms, on {rel}", number(ms)),
        (Some(ms), None) => format!("{} ms", number(ms)),
        _ => "none".into(),
    };
    let mut rows = vec![
        ("WAL written (the server's)", wal),
        (
            "transactions committed (this database)",
            per_second(s.xact_commit),
        ),
        ("transactions rolled back", per_second(s.xact_rollback)),
        ("blocks found in shared buffers", per_second(s.blks_hit)),
        ("blocks read", per_second(s.blks_read)),
        ("shared buffer hit ratio", hit_ratio),
        ("checkpoints finished", count(s.checkpoints)),
        (
            "autovacuum workers, most at once",
            count(s.autovacuum_workers),
        ),
        (
            "seconds in which a worker waited for a lock",
            format!("{} of {}", s.lock_wait_seconds, s.seconds),
        ),
        ("longest lock wait", longest),
    ];
    rows.extend(io_rows(s, per_second));
    let mut table = Table::without_header("server", &[Align::Text, Align::Figure])
        .caption("The server during the run (stress.timeline)");
    for (what, value) in rows {
        table.row(vec![Cell::from(what), Cell::from(value)]);
    }
    table.render()
}

/// The WAL flushes (with the commits each covered) and, from PostgreSQL 16, pg_stat_io's relation
/// I/O through shared buffers: who wrote the dirty buffers out (backends and workers evicting them
/// themselves is shared_buffers or the background writer falling behind).
fn io_rows(s: &Server, per_second: impl Fn(Option<i64>) -> String) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if s.wal_syncs.is_some() {
        rows.push(("WAL flushes to disk", per_second(s.wal_syncs)));
        if let (Some(commits), Some(flushes)) = (s.xact_commit, s.wal_syncs)
            && flushes > 0
        {
            rows.push((
                "commits per WAL flush (this database's, over the server's)",
                format!("{:.2}", commits as f64 / flushes as f64),
            ));
        }
    }
    match (s.io_reads, s.io_writes) {
        (Some(_), Some(writes)) => {
            let by_backends = s.io_backend_writes.unwrap_or(0);
            rows.extend([
                (
                    "buffers read, every process (pg_stat_io)",
                    per_second(s.io_reads),
                ),
                (
                    "dirty buffers written out, every process",
                    per_second(s.io_writes),
                ),
                (
                    "of those, by backends and workers themselves",
                    if writes > 0 {
                        format!(
                            "{by_backends} ({:.1}%)",
                            100.0 * by_backends as f64 / writes as f64
                        )
                    } else {
                        by_backends.to_string()
                    },
                ),
                ("relation extensions", per_second(s.io_extends)),
                ("buffers evicted", per_second(s.io_evictions)),
                ("data-file fsyncs", per_second(s.io_fsyncs)),
            ]);
        }
        _ if s.wal_syncs.is_some() => rows.push((
            "buffer I/O by process (pg_stat_io)",
            "PostgreSQL 16 and later".into(),
        )),
        _ => {}
    }
    rows
}

/// How far each standby's replay (and flush) was behind this server, each second.
fn replication_chart(run: &Run, standbys: &[StandbyLag]) -> Option<Chart> {
    if standbys.iter().all(|s| s.points.is_empty()) {
        return None;
    }
    let end = standbys
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y = Scale::linear_from_zero(
        standbys
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [p.1, p.2]).flatten()),
    );
    let mut chart = Chart::new(
        "replication-lag",
        "How far each standby was behind, each second (bytes of WAL)",
        seconds_axis(run, end),
        Axis::new(y, "bytes"),
    );
    for s in standbys {
        chart.lines.push(Line {
            name: format!("{}: replay", s.standby),
            points: s.points.iter().filter_map(|p| Some((p.0, p.1?))).collect(),
            dots: s.points.len() <= 60,
            dashed: false,
        });
        chart.lines.push(Line {
            name: format!("{}: flush", s.standby),
            points: s.points.iter().filter_map(|p| Some((p.0, p.2?))).collect(),
            dots: false,
            dashed: true,
        });
    }
    Some(chart)
}

/// A run through PgBouncer: clients waiting for a server connection against the server
/// connections in use, each second (SHOW POOLS, summed over the run's pools).
fn pool_chart(run: &Run, pool: &[PoolPoint]) -> Option<Chart> {
    let end = pool.last()?[0].max(1.0);
    let y = Scale::linear_from_zero(pool.iter().flat_map(|p| p[1..].to_vec()));
    let mut chart = Chart::new(
        "connection-pool",
        "Clients waiting for a server connection, against server connections, each second (PgBouncer's SHOW POOLS)",
        seconds_axis(run, end),
        Axis::new(y, "connections"),
    );
    let dots = pool.len() <= 60;
    // (the point's place of each line; the dashed ones are context)
    for (name, at, dashed) in [
        ("clients waiting", 1, false),
        ("server connections active", 3, false),
        ("clients active", 2, true),
        ("server connections idle", 4, true),
    ] {
        chart.lines.push(Line {
            name: name.to_owned(),
            points: pool.iter().map(|p| (p[0], p[at])).collect(),
            dots: dots && !dashed,
            dashed,
        });
    }
    Some(chart)
}

/// The run's lock waits per relation and mode, and its deadlock and serialization-failure patterns.
fn contention_section(waits: &[Contention], patterns: &[DeadlockPattern]) -> String {
    if waits.is_empty() && patterns.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Contention</h2>");
    if !waits.is_empty() {
        let mut table = Table::new("lock-contention")
            .caption("Lock waits the run's sampler saw (stress.lock_contention)")
            .text("relation")
            .text("lock")
            .figure("waits")
            .figure("longest ms")
            .figure("total ms")
            .figure("contended");
        for w in waits {
            let contended = w.contended == Some(true);
            table.row(vec![
                Cell::from(&w.relation),
                Cell::from(format!("{} on {}", w.mode, w.locktype)),
                Cell::from(w.waits),
                Cell::from(cell(w.longest_ms)),
                Cell::from(cell(w.total_ms)),
                Cell::from(if contended { "yes" } else { "no" }).class(if contended {
                    "fail"
                } else {
                    "none"
                }),
            ]);
        }
        out.push_str(&table.render());
    }
    if !patterns.is_empty() {
        let mut table = Table::new("deadlock-patterns")
            .caption("Deadlocks and serialization failures (stress.analyze_deadlocks)")
            .text("pattern")
            .figure("processes")
            .figure("times")
            .text("example");
        for p in patterns {
            let pattern = format!("<b>{}</b>: {}", escape(&p.kind), escape(&p.pattern));
            table.row(vec![
                Cell::html(Html::escaped_parts(pattern)).title(p.advice.as_deref().unwrap_or("")),
                Cell::from(p.processes.as_deref().unwrap_or("–")),
                Cell::from(p.occurrences),
                Cell::html(Html::wrapped("pre", p.example.as_deref().unwrap_or(""))),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// The comparison with a baseline: the environments' differences first (they may explain every
/// figure after them), then each figure's verdict, regressions first.
fn comparison_section(c: &Comparison) -> String {
    let mut out = format!("<h2>Compared with run {}</h2>", c.baseline);
    if c.differences.is_empty() {
        out.push_str(r#"<p class="note">Both runs ran on the same environment (server, settings, CPUs, memory, extensions, data size within 10%).</p>"#);
    } else {
        let mut table = Table::new("environment-differences")
            .text("what differs")
            .text("baseline")
            .text("this run");
        for d in &c.differences {
            table.row(vec![
                Cell::from(&d.item),
                Cell::from(d.baseline.as_deref().unwrap_or("(none)")),
                Cell::from(d.candidate.as_deref().unwrap_or("(none)")),
            ]);
        }
        out.push_str(&table.render());
    }
    let mut table = Table::new("verdicts")
        .text("name")
        .text("metric")
        .figure("baseline")
        .figure("this run")
        .figure("change")
        .figure("interval")
        .text("verdict")
        .text("why");
    let order = |v: &str| match v {
        "regressed" => 0,
        "improved" => 1,
        "not enough data" => 3,
        _ => 2,
    };
    let mut rows: Vec<&crate::compare::Compared> = c.rows.iter().collect();
    rows.sort_by_key(|r| order(r.verdict()));
    let percent = |v: Option<f64>| v.map(|v| format!("{:+.1}%", v * 100.0));
    for r in rows {
        let j = &r.judged;
        let class = match r.verdict() {
            "regressed" => "fail",
            "improved" => "pass",
            "not enough data" => "none",
            _ => "",
        };
        let interval = match (percent(j.low), percent(j.high)) {
            (Some(l), Some(h)) => format!("{l} … {h}"),
            _ => "–".into(),
        };
        table.row(vec![
            Cell::from(&r.name),
            Cell::from(r.metric),
            Cell::from(cell(j.baseline)),
            Cell::from(cell(j.candidate)),
            Cell::from(percent(j.change).unwrap_or_else(|| "–".into())),
            Cell::from(interval),
            Cell::from(r.verdict()).class(class),
            Cell::from(&j.note),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// What the run ran on: versions, CPUs, memory, and its settings.
fn environment_table(environment: &Value) -> String {
    let Some(map) = environment.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let mut table = Table::new("environment").text("item").text("value");
    let mut row = |key: &str, value: &Value| {
        let text = match value {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        table.row(vec![Cell::from(key), Cell::from(text)]);
    };
    for (key, value) in map {
        match value {
            Value::Object(inner) => {
                for (k, v) in inner {
                    row(&format!("{key}.{k}"), v);
                }
            }
            v => row(key, v),
        }
    }
    format!("<h2>Environment</h2>{}", table.render())
}

fn parameters_table(parameters: &Value) -> String {
    // (a parameter the run did not use is null: left out)
    let Some(map) = parameters
        .as_object()
        .map(|m| m.iter().filter(|(_, v)| !v.is_null()).collect::<Vec<_>>())
        .filter(|m| !m.is_empty())
    else {
        return String::new();
    };
    let mut table = Table::new("parameters").text("parameter").text("value");
    for (key, value) in map {
        let text = match value {
            Value::String(s) => s.clone(),
            v if v.is_object() || v.is_array() => {
                serde_json::to_string_pretty(v).unwrap_or_default()
            }
            v => v.to_string(),
        };
        table.row(vec![
            Cell::from(key),
            Cell::html(Html::wrapped("pre", &text)),
        ]);
    }
    format!("<h2>Parameters</h2>{}", table.render())
}

/// From the run's start to its last second (or its planned end, when the run has one and it is
/// later).
fn seconds_axis(run: &Run, last: f64) -> Axis {
    let planned = run.parameters["duration_seconds"].as_f64().unwrap_or(0.0);
    Axis::new(
        Scale::Linear {
            min: 0.0,
            max: last.max(planned).max(1.0),
        },
        "seconds since the run started",
    )
}

fn throughput_chart(run: &Run, samples: &[Sample]) -> Chart {
    let end = samples.last().map_or(1.0, |s| s.elapsed_s);
    let mut chart = Chart::new(
        "throughput",
        "Throughput: operations per second",
        seconds_axis(run, end),
        Axis::new(
            Scale::linear_from_zero(samples.iter().map(|s| s.ops_per_sec)),
            "ops/s",
        ),
    );
    chart.lines.push(Line {
        name: "ops/s".into(),
        points: samples
            .iter()
            .map(|s| (s.elapsed_s, s.ops_per_sec))
            .collect(),
        dots: samples.len() <= 60,
        dashed: false,
    });
    for s in samples {
        if s.errors > 0 {
            chart.marks.push(Mark {
                x: s.elapsed_s,
                kind: MarkKind::Error,
                title: format!("{} errors at {:.0} s", s.errors, s.elapsed_s),
            });
        }
        if let Some(d) = s.deadlocks.filter(|d| *d > 0) {
            chart.marks.push(Mark {
                x: s.elapsed_s,
                kind: MarkKind::Deadlock,
                title: format!("{d} deadlocks at {:.0} s", s.elapsed_s),
            });
        }
    }
    chart
}

fn latency_chart(run: &Run, samples: &[Sample]) -> Option<Chart> {
    let p50: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.elapsed_s, s.p50_ms?)))
        .collect();
    let p99: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.elapsed_s, s.p99_ms?)))
        .collect();
    if p50.is_empty() && p99.is_empty() {
        return None;
    }
    let end = samples.last().map_or(1.0, |s| s.elapsed_s);
    let y = Scale::log_over(p50.iter().chain(&p99).map(|p| p.1));
    let mut chart = Chart::new(
        "latency",
        "Latency per second: p50 and p99 (ms, log scale)",
        seconds_axis(run, end),
        Axis::new(y, "ms"),
    );
    let dots = samples.len() <= 60;
    chart.lines.push(Line {
        name: "p50".into(),
        points: p50,
        dots,
        dashed: false,
    });
    chart.lines.push(Line {
        name: "p99".into(),
        points: p99,
        dots,
        dashed: false,
    });
    Some(chart)
}

/// The wait events to draw as layers: most workers × seconds first, the rest as "other".
fn wait_layers(timeline: &[TimelinePoint]) -> Vec<String> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for point in timeline {
        for (key, n) in &point.waits {
            let n = n.as_f64().unwrap_or(0.0);
            match totals.iter_mut().find(|(k, _)| k == key) {
                Some((_, total)) => *total += n,
                None => totals.push((key.clone(), n)),
            }
        }
    }
    totals.retain(|(_, total)| *total > 0.0);
    totals.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    totals.into_iter().map(|(k, _)| k).collect()
}

/// Under the wait chart: what each event drawn means, most waited first, in the server's words
/// (PostgreSQL 17's pg_wait_events). Nothing on a server without them.
fn wait_descriptions(layers: &[String], descriptions: &[(String, String)]) -> String {
    let described: Vec<(&String, &String)> = layers
        .iter()
        .filter_map(|layer| {
            let (_, text) = descriptions.iter().find(|(event, _)| event == layer)?;
            Some((layer, text))
        })
        .collect();
    if described.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        r#"<details class="waits"><summary>What these wait events are (pg_wait_events)</summary><dl>"#,
    );
    for (event, text) in described {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(event), escape(text));
    }
    out.push_str("</dl></details>");
    out
}

fn wait_chart(run: &Run, timeline: &[TimelinePoint]) -> Option<Chart> {
    let keys = wait_layers(timeline);
    if keys.is_empty() {
        return None;
    }
    let (shown, rest) = keys.split_at(keys.len().min(WAIT_LAYERS));
    let xs: Vec<f64> = timeline.iter().map(|p| p.elapsed_s).collect();
    let value = |p: &TimelinePoint, k: &str| p.waits.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut layers: Vec<(String, Vec<f64>)> = shown
        .iter()
        .map(|k| (k.clone(), timeline.iter().map(|p| value(p, k)).collect()))
        .collect();
    if !rest.is_empty() {
        layers.push((
            format!("other ({} events)", rest.len()),
            timeline
                .iter()
                .map(|p| rest.iter().map(|k| value(p, k)).sum())
                .collect(),
        ));
    }
    let mut lower = vec![0.0; xs.len()];
    let mut areas = Vec::new();
    for (name, values) in layers {
        let upper: Vec<f64> = lower.iter().zip(&values).map(|(l, v)| l + v).collect();
        areas.push(Area {
            name,
            xs: xs.clone(),
            lower: std::mem::replace(&mut lower, upper.clone()),
            upper,
        });
    }
    let end = xs.last().copied().unwrap_or(1.0);
    let mut chart = Chart::new(
        "wait-events",
        "What the run's workers waited on, each second (stacked; CPU: not waiting)",
        seconds_axis(run, end),
        Axis::new(Scale::linear_from_zero(lower.iter().copied()), "workers"),
    );
    chart.areas = areas;
    Some(chart)
}

/// Each measured thing's latency distribution (`details.percentiles`), the total dashed.
fn percentile_chart(results: &[ResultRow]) -> Option<Chart> {
    let distributions: Vec<(&ResultRow, Vec<(f64, f64)>)> = results
        .iter()
        .filter_map(|r| {
            let points: Vec<(f64, f64)> = r.details["percentiles"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect();
            (!points.is_empty()).then_some((r, points))
        })
        .collect();
    // (the total alone repeats its one operation)
    let distributions: Vec<_> = if distributions.len() == 2 {
        distributions
            .into_iter()
            .filter(|(r, _)| r.name != "total")
            .collect()
    } else {
        distributions
    };
    if distributions.is_empty() {
        return None;
    }
    let last = distributions
        .iter()
        .flat_map(|(_, d)| d.iter().map(|p| p.0))
        .filter(|p| *p < 100.0)
        .fold(50.0, f64::max);
    let ticks: Vec<(f64, String)> = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .into_iter()
        .filter(|p| *p <= last)
        .map(|p| (svg::nines(p, last), format!("{p}%")))
        .chain([(svg::nines(100.0, last), "max".to_owned())])
        .collect();
    let mut x = Axis::new(
        Scale::Linear {
            min: svg::nines(50.0, last) - 0.1,
            max: svg::nines(100.0, last) + 0.1,
        },
        "percentile (log scale of 1 / (1 − p))",
    );
    x.ticks = Some(ticks);
    let y = Scale::log_over(
        distributions
            .iter()
            .flat_map(|(_, d)| d.iter().map(|p| p.1)),
    );
    let mut chart = Chart::new(
        "percentiles",
        "Latency by percentile, p50 to the slowest call (ms, log scale)",
        x,
        Axis::new(y, "ms"),
    );
    for (r, d) in distributions {
        chart.lines.push(Line {
            name: r.name.clone(),
            points: d.iter().map(|&(p, ms)| (svg::nines(p, last), ms)).collect(),
            dots: true,
            dashed: r.name == "total",
        });
    }
    Some(chart)
}

/// The steps of the series a run belongs to: against the offered rate for a capacity search (an
/// open-model series), else against the worker count.
fn series_section(run: &Run, steps: &[SeriesStep]) -> String {
    let kind = run.parameters["series"]["kind"].as_str().unwrap_or("ramp");
    let by_rate = steps.iter().all(|s| s.rate.is_some());
    format!(
        "<h2>The {} this run is a step of ({} steps)</h2>{}{}",
        escape(kind),
        steps.len(),
        series_charts(steps, by_rate),
        series_table(run, steps, by_rate)
    )
}

/// Throughput and p99 against each step's workers (or offered rate).
fn series_charts(steps: &[SeriesStep], by_rate: bool) -> String {
    let x_of = |s: &SeriesStep| {
        if by_rate {
            s.rate.unwrap_or(0.0)
        } else {
            s.workers as f64
        }
    };
    let (x_title, x_name) = if by_rate {
        ("offered rate (ops/s)", "offered rate")
    } else {
        ("workers", "workers")
    };
    // (a bisecting search offers rates out of order: lines go from left to right)
    let mut ordered: Vec<&SeriesStep> = steps.iter().collect();
    ordered.sort_by(|a, b| x_of(a).total_cmp(&x_of(b)).then(a.step.cmp(&b.step)));
    let x_axis = || {
        let Scale::Linear { min, max } = Scale::linear_over(ordered.iter().map(|s| x_of(s))) else {
            unreachable!("a linear scale")
        };
        let pad = (max - min) * 0.04;
        let mut axis = Axis::new(
            Scale::Linear {
                min: min - pad,
                max: max + pad,
            },
            x_title,
        );
        if !by_rate {
            axis.ticks = Some(
                ordered
                    .iter()
                    .map(|s| (s.workers as f64, s.workers.to_string()))
                    .collect(),
            );
        }
        axis
    };
    let line = |name: &str, value: &dyn Fn(&SeriesStep) -> Option<f64>, dashed: bool| Line {
        name: name.into(),
        points: ordered
            .iter()
            .filter_map(|s| Some((x_of(s), value(s)?)))
            .collect(),
        dots: !dashed,
        dashed,
    };
    let mut throughput = Chart::new(
        "series-throughput",
        &format!("Throughput against {x_name} (ops/s)"),
        x_axis(),
        Axis::new(
            Scale::linear_from_zero(
                steps
                    .iter()
                    .filter_map(|s| s.ops_per_sec)
                    .chain(steps.iter().filter_map(|s| s.rate.filter(|_| by_rate))),
            ),
            "ops/s",
        ),
    );
    throughput
        .lines
        .push(line("achieved ops/s", &|s| s.ops_per_sec, false));
    if by_rate {
        throughput
            .lines
            .push(line("offered (sustained: on this line)", &|s| s.rate, true));
    }
    let mut p99 = Chart::new(
        "series-p99",
        &format!("p99 against {x_name} (ms, log scale)"),
        x_axis(),
        Axis::new(Scale::log_over(steps.iter().filter_map(|s| s.p99_ms)), "ms"),
    );
    p99.lines.push(line("p99", &|s| s.p99_ms, false));
    throughput.render() + &p99.render()
}

/// Each step's figures, this run's marked.
fn series_table(run: &Run, steps: &[SeriesStep], by_rate: bool) -> String {
    let mut table = Table::new("series").figure("step").figure("workers");
    if by_rate {
        table = table.figure("offered ops/s");
    }
    table = table
        .figure("run")
        .text("status")
        .figure("ops/s")
        .figure("p99 ms")
        .figure("error rate");
    for s in steps {
        let mut cells = vec![Cell::from(s.step), Cell::from(s.workers)];
        if by_rate {
            cells.push(Cell::from(cell(s.rate)));
        }
        let this = if s.run_id == run.id {
            " (this run)"
        } else {
            ""
        };
        cells.extend([
            Cell::from(format!("{}{this}", s.run_id)),
            Cell::from(&s.status),
            Cell::from(cell(s.ops_per_sec)),
            Cell::from(cell(s.p99_ms)),
            Cell::from(
                s.error_rate
                    .map(|e| format!("{:.2}%", e * 100.0))
                    .unwrap_or_else(|| "–".into()),
            ),
        ]);
        table.row(cells);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records(extra: Value) -> RunRecords {
        let mut v = json!({
            "run": {"id": 7, "kind": "run_load", "status": "completed", "run_as": "alice",
                    "started_at": "2026-11-25 10:00:00+00", "finished_at": "2026-11-25 10:00:03+00",
                    "error": null, "peak_connections": 6,
                    "parameters": {"workers": 2, "rate": null, "mix": {"place_order": 0.5}}},
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_load_run_has_every_chart() {
        let page = render(&records(json!({
            "results": [
                {"name": "place_order", "calls": 10, "errors": 1, "p50_ms": 1.0,
                 "details": {"percentiles": [[50, 1.0], [90, 2.0], [99, 3.0], [99.9, 4.0], [99.99, 4.0], [100, 5.0]]}},
                {"name": "transfer", "calls": 10, "errors": 0, "p50_ms": 1.0,
                 "details": {"percentiles": [[50, 0.5], [90, 2.0], [99, 8.0], [99.9, 9.0], [99.99, 9.0], [100, 9.5]]}},
                {"name": "total", "calls": 20, "errors": 1,
                 "details": {"percentiles": [[50, 0.7], [90, 2.0], [99, 8.0], [99.9, 9.0], [99.99, 9.0], [100, 9.5]]}}],
            "samples": [
                {"elapsed_s": 1.0, "ops_per_sec": 10.0, "p50_ms": 1.0, "p99_ms": 3.0, "errors": 0, "deadlocks": 0},
                {"elapsed_s": 2.0, "ops_per_sec": 0.0, "p50_ms": null, "p99_ms": null, "errors": 0, "deadlocks": 0},
                {"elapsed_s": 3.0, "ops_per_sec": 12.0, "p50_ms": 1.1, "p99_ms": 9.0, "errors": 1, "deadlocks": 2}],
            "sample_count": 3,
            "timeline": [
                {"elapsed_s": 1.0, "waits": {"CPU": 1, "Lock:transactionid": 1}},
                {"elapsed_s": 2.0, "waits": {"Lock:transactionid": 2}},
                {"elapsed_s": 3.0, "waits": {"CPU": 2}}],
            "targets": {"throughput": {"target": "> 1000", "value": 11.0, "pass": false, "meaning": "ops"}},
            "server": {"seconds": 3, "wal_bytes": 3000000, "blks_hit": 990, "blks_read": 10, "xact_commit": 60,
                       "xact_rollback": 0, "checkpoints": 0, "autovacuum_workers": 1, "lock_wait_seconds": 2,
                       "longest_lock_wait_ms": 950.0, "lock_relation": "stress_data.accounts"},
            "contention": [{"relation": "stress_data.accounts", "locktype": "transactionid", "mode": "ShareLock",
                            "waits": 10, "longest_ms": 941.0, "total_ms": 9140.0, "contended": true, "finding": "x"}],
            "deadlocks": [{"pattern": "transfer × transfer on stress_data.accounts: <b>", "kind": "deadlock",
                           "processes": "2", "occurrences": 5, "example": "Process 1 waits", "advice": "Take rows in one order"}],
            "replication": [{"standby": "it-standby", "points": [[1.0, 1000.0, 500.0], [2.0, 2000000.0, 10.0], [3.0, null, null]]}]
        })));
        assert_eq!(
            page.matches(r#"data-series="it-standby: replay""#).count(),
            1
        );
        assert!(!page.contains(r#"<svg id="connection-pool""#));
        for id in [
            "throughput",
            "latency",
            "wait-events",
            "percentiles",
            "replication-lag",
        ] {
            assert!(page.contains(&format!(r#"<svg id="{id}""#)), "{id} missing");
        }
        assert!(!page.contains("series-throughput"));
        // 3 seconds of throughput; the latency lines skip the second without operations
        assert_eq!(page.matches(r#"data-series="p50""#).count(), 1);
        assert_eq!(page.matches(r#"class="mark error""#).count(), 1);
        assert_eq!(page.matches(r#"class="mark deadlock""#).count(), 1);
        assert_eq!(page.matches(r#"<polygon class="area""#).count(), 2);
        assert!(page.contains(r#"<td class="fail">FAIL</td>"#));
        assert!(page.contains("<td>3.00 MB (1.00 MB/s)</td>"), "{page}");
        assert!(page.contains("<td>99.00%</td>"));
        assert!(page.contains("<td>2 of 3</td>"));
        assert!(page.contains("<td>60 (20.0/s)</td>"), "{page}");
        assert!(page.contains("<td>950 ms, on stress_data.accounts</td>"));
        assert!(
            page.contains(r#"<td class="name">ShareLock on transactionid</td><td>10</td>"#),
            "{page}"
        );
        assert!(page.contains(
            "transfer × transfer on stress_data.accounts: &lt;b&gt;</td><td>2</td><td>5</td>"
        ));
        // parameters the run did not use (null) are left out
        assert!(page.contains(">workers</td>") && !page.contains(">rate</td>"));
        assert!(!page.contains("<script") && !page.contains("http"));
    }

    #[test]
    fn a_run_through_pgbouncer_draws_its_pool() {
        let mut r = records(json!({}));
        r.pool = vec![
            [1.0, 0.0, 2.0, 2.0, 0.0],
            [2.0, 2.0, 2.0, 2.0, 0.0],
            [3.0, 1.0, 2.0, 1.0, 1.0],
        ];
        let page = render(&r);
        assert!(page.contains(r#"<svg id="connection-pool""#), "{page}");
        for series in [
            "clients waiting",
            "server connections active",
            "clients active",
            "server connections idle",
        ] {
            assert_eq!(
                page.matches(&format!(r#"data-series="{series}""#)).count(),
                1,
                "{series}"
            );
        }
    }

    #[test]
    fn a_ramp_step_charts_its_ramp() {
        let page = render(&records(json!({
            "run": {"id": 8, "kind": "run_load", "status": "completed", "run_as": "alice",
                    "error": null, "peak_connections": null,
                    "parameters": {"scenario": "ramp", "series": {"step": 2, "steps": 2, "first_run_id": 7}}},
            "series": [
                {"run_id": 7, "step": 1, "workers": 1, "status": "completed", "ops_per_sec": 100.0, "p99_ms": 2.0, "error_rate": 0.0},
                {"run_id": 8, "step": 2, "workers": 4, "status": "completed", "ops_per_sec": 250.0, "p99_ms": 5.0, "error_rate": 0.01}]
        })));
        assert!(page.contains("ramp step 2 of 2"));
        assert!(page.contains(r#"<svg id="series-throughput""#));
        assert!(page.contains(r#"<svg id="series-p99""#));
        assert!(page.contains("8 (this run)"));
        assert!(page.contains("This run recorded no results."));
    }

    #[test]
    fn a_capacity_search_is_drawn_against_the_offered_rate() {
        let page = render(&records(json!({
            "run": {"id": 9, "kind": "run_load", "status": "completed", "run_as": "alice",
                    "error": null, "peak_connections": null,
                    "parameters": {"scenario": "find_capacity", "rate": 300.0,
                                   "series": {"kind": "find_capacity", "step": 3, "steps": null, "first_run_id": 7}}},
            "series": [
                {"run_id": 7, "step": 1, "workers": 8, "rate": 100.0, "status": "completed", "ops_per_sec": 100.0, "p99_ms": 2.0, "error_rate": 0.0},
                {"run_id": 8, "step": 2, "workers": 8, "rate": 400.0, "status": "completed", "ops_per_sec": 250.0, "p99_ms": 90.0, "error_rate": 0.0},
                {"run_id": 9, "step": 3, "workers": 8, "rate": 200.0, "status": "completed", "ops_per_sec": 199.0, "p99_ms": 3.0, "error_rate": 0.0}]
        })));
        assert!(page.contains("find_capacity step 3"), "{page}");
        assert!(page.contains("The find_capacity this run is a step of (3 steps)"));
        assert!(page.contains("Throughput against offered rate"));
        // the achieved line runs left to right: 100, 200, 400 offered
        let at = page.find(r#"data-series="achieved ops/s""#).unwrap();
        let from = at + page[at..].find("points=\"").unwrap() + 8;
        let xs: Vec<f64> = page[from..from + page[from..].find('"').unwrap()]
            .split_whitespace()
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 3);
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        assert!(page.contains("<th>offered ops/s</th>"));
    }
}
