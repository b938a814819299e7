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

use super::records::{self, TaskStats, WorkerResult, WorkerResults};
use super::slots::{self, MAX_TASKS, MAX_WORKERS, RunSlot};
use super::worker::{Closing, RunKind};
use crate::error::StressError;
use crate::metrics::blocks::Blocks;
use crate::metrics::histogram::Latency;
use crate::postgres::bgworker::Caller;
use pgrx::pg_sys;
use serde::{Deserialize, Serialize};

/// Room for one worker's results (a few KB per task: two histograms in base64 and counts).
const REGION_BYTES: usize = 256 * 1024;
/// Most bytes a batch sent to the primary may take.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Most calls one task's figures may claim (a run of a year at a million a second is less).
const MAX_CALLS: i64 = 1 << 45;

/// Whether this server is a hot standby (in recovery).
pub fn in_recovery() -> bool {
    unsafe { pg_sys::RecoveryInProgress() }
}

/// One task of one worker, as it travels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRecord {
    pub name: String,
    pub calls: i64,
    pub successes: i64,
    pub failures: i64,
    pub retries: i64,
    pub deadlocks: i64,
    pub serialization_failures: i64,
    pub busy_us: i64,
    pub first_error: Option<String>,
    pub stop_reason: Option<String>,
    /// HdrHistogram V2, base64
    pub latency: String,
    pub lag: String,
}

/// One worker's results and the window its loop ran in (µs since PostgreSQL's epoch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub loop_started: i64,
    pub loop_ended: i64,
    pub tasks: Vec<TaskRecord>,
}

/// What the last worker knew as the run ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClosingRecord {
    pub cancelled: bool,
    pub workers_lost: u32,
    pub peak_connections: i64,
    pub arrivals: u64,
    pub marks: Vec<(i64, Blocks)>,
}

/// A standby's run as it is sent to the primary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// Histograms travel in JSON as base64 of HdrHistogram's V2 format.
fn encoded(latency: &Latency) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(latency.serialize())
}

fn decoded(text: &str) -> Result<Latency, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("a histogram is not base64: {e}"))?;
    let latency = Latency::deserialize(&bytes)?;
    if latency.count() > MAX_CALLS as u64 {
        return Err("a histogram counts too many calls".into());
    }
    Ok(latency)
}

impl WorkerRecord {
    pub fn new(window: (i64, i64), results: &[WorkerResult]) -> Self {
        WorkerRecord {
            loop_started: window.0,
            loop_ended: window.1,
            tasks: results
                .iter()
                .map(|r| {
                    let s = &r.stats;
                    TaskRecord {
                        name: r.operation.clone(),
                        calls: s.calls,
                        successes: s.successes,
                        failures: s.failures,
                        retries: s.retries,
                        deadlocks: s.deadlocks,
                        serialization_failures: s.serialization_failures,
                        busy_us: s.busy_us,
                        first_error: s.first_error.clone(),
                        stop_reason: r.stop_reason.clone(),
                        latency: encoded(&s.latency),
                        lag: encoded(&s.lag),
                    }
                })
                .collect(),
        }
    }
}

impl TaskRecord {
    /// Back to what a worker measured; every figure checked (the batch came over a connection).
    fn result(&self) -> Result<WorkerResult, String> {
        let counts = [
            self.calls,
            self.successes,
            self.failures,
            self.retries,
            self.deadlocks,
            self.serialization_failures,
            self.busy_us,
        ];
        if counts.iter().any(|&n| !(0..=MAX_CALLS).contains(&n)) {
            return Err(format!("task \"{}\": a count out of range", self.name));
        }
        if self.successes + self.failures > self.calls {
            return Err(format!(
                "task \"{}\": more successes and failures than calls",
                self.name
            ));
        }
        Ok(WorkerResult {
            operation: self.name.clone(),
            stats: TaskStats {
                calls: self.calls,
                successes: self.successes,
                failures: self.failures,
                retries: self.retries,
                deadlocks: self.deadlocks,
                serialization_failures: self.serialization_failures,
                latency: decoded(&self.latency)?,
                lag: decoded(&self.lag)?,
                busy_us: self.busy_us,
                first_error: self.first_error.clone(),
            },
            stop_reason: self.stop_reason.clone(),
        })
    }
}

/// The caller's segment: a header, then `workers + 1` regions of [`REGION_BYTES`] (each a u32
/// length and that many bytes of JSON; 0: not written).
pub struct Segment {
    segment: *mut pg_sys::dsm_segment,
    regions: usize,
}

impl Segment {
    pub fn create(workers: usize) -> Self {
        let regions = workers + 1;
        // SAFETY: dsm_create raises rather than return NULL (no DSM_CREATE_NULL_IF_MAXSEGMENTS);
        // the header of each region is inside the segment just created, of regions * REGION_BYTES.
        unsafe {
            let segment = pg_sys::dsm_create(regions * REGION_BYTES, 0);
            // (for the session, not the transaction: the procedure that waits for the run commits)
            pg_sys::dsm_pin_mapping(segment);
            let base = pg_sys::dsm_segment_address(segment) as *mut u8;
            for r in 0..regions {
                std::ptr::write_bytes(base.add(r * REGION_BYTES), 0, 4);
            }
            Segment { segment, regions }
        }
    }

    pub fn handle(&self) -> u32 {
        unsafe { pg_sys::dsm_segment_handle(self.segment) }
    }

    /// What region `r` holds (None: nothing was written).
    pub fn read(&self, r: usize) -> Option<Vec<u8>> {
        (r < self.regions).then_some(())?;
        unsafe {
            let base =
                (pg_sys::dsm_segment_address(self.segment) as *const u8).add(r * REGION_BYTES);
            let len = u32::from_ne_bytes(*(base as *const [u8; 4])) as usize;
            (len > 0 && len <= REGION_BYTES - 4)
                .then(|| std::slice::from_raw_parts(base.add(4), len).to_vec())
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the segment was created and its mapping pinned by `create`, so no resource owner
        // detaches it (on an error either): this is the one detach, of a live mapping.
        unsafe { pg_sys::dsm_detach(self.segment) };
    }
}

/// Write `value` as region `r` of the run's segment `handle` (from a worker).
pub fn write<T: Serialize>(handle: u32, r: usize, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    if bytes.len() > REGION_BYTES - 4 {
        return Err(format!(
            "its results take {} bytes, more than the {} a worker of a standby's run has",
            bytes.len(),
            REGION_BYTES - 4
        ));
    }
    unsafe {
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return Err("the run's caller is gone (its shared memory segment with it)".into());
        }
        let base = (pg_sys::dsm_segment_address(segment) as *mut u8).add(r * REGION_BYTES);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(4), bytes.len());
        // (the length last: a reader sees all or nothing)
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        std::ptr::write(base as *mut [u8; 4], (bytes.len() as u32).to_ne_bytes());
        pg_sys::dsm_detach(segment);
    }
    Ok(())
}

/// The closing of a run whose slot is `slot` (the last worker's view).
pub fn closing_of(slot: &RunSlot, closing: &Closing) -> ClosingRecord {
    ClosingRecord {
        cancelled: closing.cancelled,
        workers_lost: slot.workers_lost,
        peak_connections: closing.peak_connections,
        arrivals: closing.arrivals,
        marks: slot.marks.to_vec(),
    }
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
    if in_recovery() {
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
    if !(1..=MAX_WORKERS as u32).contains(&batch.workers)
        || batch.workers_results.len() > batch.workers as usize
    {
        bad_batch(format!("{} workers is out of range", batch.workers));
    }
    // Between 2000-01-01 (PostgreSQL's epoch) and a day from now.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
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
    let names = K::tasks(&config);
    let mut rows = Vec::new();
    for w in &batch.workers_results {
        if w.tasks.len() > names.len() {
            bad_batch("more tasks than the run has".into());
        }
        for t in &w.tasks {
            rows.push(t.result().unwrap_or_else(|e| bad_batch(e)));
        }
    }
    let windows = || batch.workers_results.iter().filter(|w| !w.tasks.is_empty());
    let seconds = match (
        windows().map(|w| w.loop_started).min(),
        windows().map(|w| w.loop_ended).max(),
    ) {
        (Some(start), Some(end)) => (end - start) as f64 / 1e6,
        _ => 0.0,
    }
    .max(1e-6);
    let connected_us = windows()
        .map(|w| (w.loop_ended - w.loop_started) as f64)
        .sum();

    let run_id = records::new_run_id();
    let mut parameters = match batch.parameters {
        serde_json::Value::Object(map) => serde_json::Value::Object(map),
        _ => bad_batch("parameters must be an object".into()),
    };
    let standby = parameters
        .get("standby")
        .cloned()
        .unwrap_or(serde_json::json!({}));
    let mut standby = match standby {
        serde_json::Value::Object(map) => map,
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
    let parameters_text = slots::FixedText::new(&parameters.to_string())
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
    super::worker::record_run::<K>(
        &slot,
        config,
        WorkerResults {
            rows,
            seconds,
            connected_us,
        },
        &Closing {
            cancelled: closing.cancelled,
            peak_connections: closing.peak_connections.max(0),
            arrivals: closing.arrivals,
        },
        true,
    );
    run_id
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
