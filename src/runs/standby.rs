//! Runs on a hot standby. A standby cannot write: no run id from `stress.runs_id_seq`, no
//! `stress.load_worker_results`, no `stress.runs` row. So a run there keeps everything in memory
//! and records itself on the primary:
//! - the caller creates one dynamic shared memory segment with a region per worker and one for the
//!   run's closing; each worker writes its results (histograms as HdrHistogram V2, in base64) into its
//!   region instead of the table, and the last one writes the closing (cancelled, lost workers,
//!   barrier marks) instead of closing the run;
//! - the caller reads them into a [`Batch`] and sends it, through dblink and as the calling role,
//!   to `stress.record_standby_run(batch)` on the primary (`stress.record_conninfo`), which merges
//!   and records it exactly as the last worker of a run there would ([`record`]);
//! - the caller waits until this standby has replayed that record, so that what reads the run next
//!   here (the summary, a ramp's or find_capacity's next step) finds it.

use super::closing::{self, Closing};
use super::destination::{ClosingRecord, Segment, WorkerRecord};
use super::kind::RunKind;
use super::slots::{self, MAX_TASKS, MAX_WORKERS, RunSlot};
use crate::error::StressError;
use crate::metrics::task::MAX_CALLS;
use crate::postgres::bgworker::Caller;
use crate::records::{self, WorkerResults};
use serde::{Deserialize, Serialize};

/// Most bytes a batch sent to the primary may take.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// A standby's run as it is sent to the primary.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    pub kind: String,
    pub parameters: serde_json::Value,
    /// the kind's configuration (JSON text, as the workers read it)
    pub config: String,
    pub workers: u32,
    pub started_at: i64,
    pub workers_results: Vec<WorkerRecord>,
    /// None: the workers died before any could close the run
    pub closing: Option<ClosingRecord>,
}

/// Everything the run's processes left in `segment`.
pub fn batch(slot: &RunSlot, segment: &Segment) -> Batch {
    let workers = slot.workers as usize;
    Batch {
        kind: slot.kind.as_str().to_owned(),
        parameters: slot.parameters(),
        config: slot.config.as_str().to_owned(),
        workers: slot.workers,
        started_at: slot.started_at,
        workers_results: (0..workers)
            .filter_map(|w| segment.read(w))
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect(),
        closing: segment
            .read(workers)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
    }
}

fn bad_batch(message: String) -> ! {
    StressError::invalid(
        "record_standby_run",
        message,
        "It is what stress.run_load sends from a hot standby (stress.record_conninfo); call that, not this.",
    )
    .raise()
}

/// On the primary, first: who may record a standby's run, and the batch it sent, parsed (its kind
/// says which [`record`] to call).
pub fn parse(batch_text: &str) -> Batch {
    const F: &str = "record_standby_run";
    if crate::postgres::backend::in_recovery() {
        StressError::ReadOnly {
            message: format!("{F}: this server is a hot standby too"),
            hint: "Point stress.record_conninfo at the primary.".into(),
        }
        .raise();
    }
    crate::postgres::privilege::require_worker_grant(F);
    if batch_text.len() > MAX_BATCH_BYTES {
        bad_batch(format!("the batch takes more than {MAX_BATCH_BYTES} bytes"));
    }
    serde_json::from_str(batch_text)
        .unwrap_or_else(|e| bad_batch(format!("the batch does not parse: {e}")))
}

/// A batch whose kind no kind of run records.
pub fn unknown_kind(batch: &Batch) -> ! {
    bad_batch(format!(
        "kind must be run_load or benchmark, got \"{}\"",
        batch.kind
    ))
}

/// On the primary: record a standby's run of kind `K` (from [`parse`]) as this role's, as its last
/// worker would have recorded it here. Returns the new run id.
pub fn record<K: RunKind>(batch: Batch) -> i64 {
    debug_assert_eq!(batch.kind, K::KIND);
    let config: K::Config = serde_json::from_str(&batch.config)
        .unwrap_or_else(|e| bad_batch(format!("the configuration does not parse: {e}")));
    check_batch(&batch, K::tasks(&config).len());
    let windows: Vec<(i64, i64)> = batch
        .workers_results
        .iter()
        .filter(|w| !w.tasks.is_empty())
        .map(|w| (w.loop_started, w.loop_ended))
        .collect();
    let rows = batch
        .workers_results
        .iter()
        .flat_map(|w| w.tasks.iter().cloned())
        .collect();
    let run_id = records::new_run_id();
    let slot = slot_of_batch::<K>(&batch, run_id);
    let closing = batch.closing.clone().unwrap_or_default();
    closing::record_run::<K>(
        &slot,
        config,
        WorkerResults::new(rows, &windows),
        &Closing {
            cancelled: closing.cancelled,
            peak_connections: closing.peak_connections.max(0),
            arrivals: closing.arrivals,
        },
        true,
    );
    run_id
}

/// Every figure of a batch checked (it came over a connection): workers, times, marks, each task's
/// counts and histograms ([`TaskStats::check`](crate::metrics::task::TaskStats::check)).
fn check_batch(batch: &Batch, tasks: usize) {
    if !(1..=MAX_WORKERS as u32).contains(&batch.workers)
        || batch.workers_results.len() > batch.workers as usize
    {
        bad_batch(format!("{} workers is out of range", batch.workers));
    }
    // Between 2000-01-01 (PostgreSQL's epoch) and a day from now.
    let now = crate::postgres::backend::now();
    let day = 86_400_000_000;
    let in_range = |t: i64| (0..=now + day).contains(&t);
    let windows_ok = batch.workers_results.iter().all(|w| {
        in_range(w.loop_started) && in_range(w.loop_ended) && w.loop_started <= w.loop_ended
    });
    let marks_ok = batch.closing.as_ref().is_none_or(|c| {
        c.marks.len() <= 2 * MAX_TASKS
            && c.marks.iter().all(|(t, b)| {
                (*t == 0 || in_range(*t))
                    && [b.heap_hit, b.heap_read, b.index_hit, b.index_read]
                        .iter()
                        .all(|n| (0..=MAX_CALLS << 12).contains(n))
            })
    });
    if !in_range(batch.started_at) || !windows_ok || !marks_ok {
        bad_batch("a time out of range".into());
    }
    for w in &batch.workers_results {
        if w.tasks.len() > tasks {
            bad_batch("more tasks than the run has".into());
        }
        for t in &w.tasks {
            if let Err(e) = t.stats.check() {
                bad_batch(format!("task \"{}\": {e}", t.operation));
            }
        }
    }
}

/// The run's parameters as the primary records them: the standby's, with where it came from, and
/// a series' first step renamed from the standby's local run id to `run_id`.
fn parameters_of(batch: &Batch, run_id: i64) -> serde_json::Value {
    let mut parameters = match &batch.parameters {
        serde_json::Value::Object(map) => serde_json::Value::Object(map.clone()),
        _ => bad_batch("parameters must be an object".into()),
    };
    let mut standby = match parameters.get("standby") {
        Some(serde_json::Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    // Where it came from, as the primary saw it (the rest is what the standby said).
    standby.insert(
        "recorded_from".into(),
        crate::postgres::spi_read::one::<String>(
            "SELECT coalesce(pg_catalog.host(pg_catalog.inet_client_addr()), 'local socket')",
            &[],
        )
        .ok()
        .flatten()
        .into(),
    );
    // A series' first step named itself by the standby's local run id: here it is this run.
    let local_run_id = standby.get("local_run_id").and_then(|v| v.as_i64());
    if let Some(series) = parameters.get_mut("series").and_then(|s| s.as_object_mut())
        && local_run_id.is_some()
        && series.get("first_run_id").and_then(|v| v.as_i64()) == local_run_id
    {
        series.insert("first_run_id".into(), run_id.into());
    }
    parameters["standby"] = serde_json::Value::Object(standby);
    parameters
}

/// The slot the run would have had here, as its last worker leaves it (for [`closing::record_run`]).
fn slot_of_batch<K: RunKind>(batch: &Batch, run_id: i64) -> Box<RunSlot> {
    let parameters_text = slots::FixedText::new(&parameters_of(batch, run_id).to_string())
        .unwrap_or_else(|| bad_batch("parameters too long".into()));
    let closing = batch.closing.clone().unwrap_or_default();
    let mut slot = Box::new(RunSlot {
        run_id,
        phase: slots::Phase::Running,
        caller: Caller::current(),
        kind: slots::FixedText::new(K::KIND).expect("a short kind"),
        workers: batch.workers,
        workers_lost: if batch.closing.is_some() {
            closing.workers_lost.min(batch.workers)
        } else {
            batch.workers
        },
        started_at: batch.started_at,
        parameters: parameters_text,
        config: slots::FixedText::new(&batch.config)
            .unwrap_or_else(|| bad_batch("the configuration is too long".into())),
        ..RunSlot::default()
    });
    for (mark, given) in slot.marks.iter_mut().zip(&closing.marks) {
        *mark = *given;
    }
    slot
}

/// The primary a standby's run records itself on: `stress.record_conninfo`, through dblink.
pub struct Primary {
    conninfo: String,
    /// dblink's schema, quoted
    dblink: String,
}

fn not_ready(function: &str, message: String, hint: &str) -> ! {
    StressError::ReadOnly {
        message: format!("{function}: {message}"),
        hint: hint.into(),
    }
    .raise()
}

impl Primary {
    /// Check, before anything starts, that the run can be recorded: the setting, dblink, and a
    /// connection (as the calling role) to a primary with pg_stress 0.5.0 or later.
    pub fn check(function: &str) -> Self {
        let conninfo = crate::gucs::RECORD_CONNINFO
            .get()
            .and_then(|s| s.into_string().ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| {
                not_ready(
                    function,
                    "this server is a hot standby, which cannot record the run".into(),
                    "A run on a standby records itself on the primary: SET stress.record_conninfo = \
                     'host=PRIMARY port=5432 dbname=DB' (a dblink connection string, or a foreign \
                     server's name), with CREATE EXTENSION dblink done on the primary.",
                )
            });
        let dblink = crate::postgres::spi_read::one::<String>(
            "SELECT pg_catalog.quote_ident(n.nspname)
             FROM pg_catalog.pg_extension e
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
             WHERE e.extname OPERATOR(pg_catalog.=) 'dblink'",
            &[],
        )
        .expect("looking for dblink")
        .unwrap_or_else(|| {
            StressError::NotSupported {
                message: format!("{function}: a run on a hot standby records itself through dblink, which is not installed"),
                hint: "CREATE EXTENSION dblink on the primary (the standby replays it).".into(),
            }
            .raise()
        });
        let primary = Primary { conninfo, dblink };
        // (errors of the connection itself — refused, password required — are dblink's, as they are)
        let probe = format!(
            "SELECT r.recovery, r.recorder, r.role OPERATOR(pg_catalog.=) CURRENT_USER, r.role::pg_catalog.text
             FROM {}.dblink($1,
                 'SELECT pg_catalog.pg_is_in_recovery(),
                         pg_catalog.to_regprocedure(''stress.record_standby_run(text)'') IS NOT NULL,
                         CURRENT_USER')
                 AS r(recovery pg_catalog.bool, recorder pg_catalog.bool, role pg_catalog.name)",
            primary.dblink
        );
        let (recovery, recorder, same_role, role) = pgrx::Spi::connect(|client| {
            let row = client
                .select(&probe, Some(1), &[primary.conninfo.as_str().into()])?
                .first();
            Ok::<_, pgrx::spi::SpiError>((
                row.get::<bool>(1)?,
                row.get::<bool>(2)?,
                row.get::<bool>(3)?,
                row.get::<String>(4)?,
            ))
        })
        .expect("asking the primary");
        if recovery == Some(true) {
            not_ready(
                function,
                "stress.record_conninfo leads to a hot standby, not to the primary".into(),
                "Point it at the primary (SELECT pg_is_in_recovery() is false there).",
            );
        }
        if recorder != Some(true) {
            not_ready(
                function,
                "the database stress.record_conninfo leads to has no stress.record_standby_run"
                    .into(),
                "Point it at the primary's database with pg_stress 0.5.0 or later (ALTER EXTENSION pg_stress UPDATE).",
            );
        }
        if same_role != Some(true) {
            StressError::PermissionDenied {
                message: format!(
                    "{function}: stress.record_conninfo connects to the primary as \"{}\", not as this session's role",
                    role.unwrap_or_default()
                ),
                hint: "A run is recorded as the role that ran it: connect as the same role (user=… in the connection string, or the foreign server's user mapping).".into(),
            }
            .raise();
        }
        primary
    }

    /// Send the run to the primary; returns its id there.
    pub fn record(&self, batch: &Batch) -> i64 {
        let text = serde_json::to_string(batch).expect("a batch serializes");
        let sql = format!(
            "SELECT r.id FROM {}.dblink($1,
                 pg_catalog.format('SELECT stress.record_standby_run(%L::pg_catalog.text)', $2::pg_catalog.text))
                 AS r(id pg_catalog.int8)",
            self.dblink
        );
        crate::postgres::spi_read::one::<i64>(&sql, &[self.conninfo.as_str().into(), text.into()])
            .expect("recording the run on the primary")
            .expect("record_standby_run gives the run id")
    }
}

/// Wait until this standby has replayed run `run_id`'s record (closed: not 'running'), up to
/// `timeout`; false if it has not by then. `between` runs after each look (the procedure's
/// commit): a snapshot kept while waiting would hold back the very replay it waits for.
pub fn wait_for_replay(run_id: i64, timeout: std::time::Duration, between: impl Fn()) -> bool {
    let start = std::time::Instant::now();
    loop {
        let replayed = crate::postgres::spi_read::latest::<bool>(
            "SELECT EXISTS (SELECT FROM stress.runs
                            WHERE id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.<>) 'running')",
            &[run_id.into()],
        )
        .expect("looking for the recorded run")
        .unwrap_or(false);
        between();
        if replayed {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        crate::postgres::transaction::sleep_ms(10);
    }
}
