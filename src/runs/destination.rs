//! Where a run's workers put what they measured, and who closes the run: [`Destination`].
//! - [`Destination::Tables`], a run on a primary: worker 0 registers the run's row (and its
//!   environment), each worker saves its results into `stress.load_worker_results`, the last one
//!   merges them and closes the run ([`closing`](super::closing)).
//! - [`Destination::Segment`], a run on a hot standby, which cannot write: each worker writes its
//!   results into its region of the caller's dynamic shared memory [`Segment`], and the last one
//!   the run's [`ClosingRecord`]; the caller records the run on the primary
//!   ([`standby`](super::standby)).

use super::closing::{self, Closing};
use super::kind::{RunKind, WorkerRun};
use super::slots::RunSlot;
use crate::metrics::blocks::Blocks;
use crate::metrics::task::TaskStats;
use crate::records::{self, RunRow, WorkerResult};
use pgrx::pg_sys;
use serde::{Deserialize, Serialize};

/// Room for one worker's results (a few KB per task: two histograms in base64 and counts).
const REGION_BYTES: usize = 256 * 1024;

/// Where run `slot`'s results go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// this server's `stress.*` tables
    Tables,
    /// the caller's segment (its handle): a run on a hot standby
    Segment(u32),
}

/// One worker's results and the window its loop ran in (µs since PostgreSQL's epoch), as a
/// standby's worker leaves them in its region.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub loop_started: i64,
    pub loop_ended: i64,
    pub tasks: Vec<WorkerResult>,
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

impl ClosingRecord {
    /// The closing of a run whose slot is `slot` (the last worker's view).
    pub fn of(slot: &RunSlot, closing: &Closing) -> Self {
        ClosingRecord {
            cancelled: closing.cancelled,
            workers_lost: slot.workers_lost,
            peak_connections: closing.peak_connections,
            arrivals: closing.arrivals,
            marks: slot.marks.to_vec(),
        }
    }
}

impl Destination {
    pub fn of(slot: &RunSlot) -> Self {
        match slot.standby_segment {
            0 => Destination::Tables,
            handle => Destination::Segment(handle),
        }
    }

    /// Register the run's row, committed before anything that could fail, so that a run whose
    /// work cannot even be prepared is recorded with the reason (its closing inserts it too,
    /// should this fail). By worker 0; nothing on a standby.
    pub fn register(self, row: &RunRow) {
        if self != Destination::Tables {
            return;
        }
        if let Err(report) =
            crate::postgres::transaction::in_transaction(|| records::register_run(row))
        {
            pgrx::log!(
                "pg_stress run {}: could not register the run: {}",
                row.id,
                report.message()
            );
        }
    }

    /// Record what the run runs on (`capture` reads it), by worker 0 after preparing: on a
    /// standby the run's row is written on the primary, which reads its own.
    pub fn record_environment(self, run_id: i64, capture: impl FnOnce() -> serde_json::Value) {
        if self == Destination::Tables {
            records::record_environment(run_id, capture());
        }
    }

    /// Save this worker's results (in a transaction): into the table, with what the kind keeps
    /// beside them, or into the worker's region of the segment. Err: the segment could not take
    /// them (the run is then cancelled).
    pub fn save<K: RunKind>(
        self,
        run: &WorkerRun<K::Config>,
        kept: Option<&K::Worker>,
        window: (pg_sys::TimestampTz, pg_sys::TimestampTz),
        results: Vec<WorkerResult>,
    ) -> Result<(), String> {
        match self {
            Destination::Tables => {
                if let Some(state) = kept {
                    K::save(run, state);
                }
                records::save_worker_results(run.run_id, run.worker as i32, window, &results);
                Ok(())
            }
            Destination::Segment(handle) => {
                let record = WorkerRecord {
                    loop_started: window.0,
                    loop_ended: window.1,
                    tasks: results,
                };
                write(handle, run.worker as usize, &record)
            }
        }
    }

    /// By the run's last worker: close the run here ([`closing::finish_run`]), or leave its closing
    /// in the segment for the caller. `now_slot` is the run's slot as it leaves it.
    pub fn close<K: RunKind>(self, run: &WorkerRun<K::Config>, slot: &RunSlot, now_slot: &RunSlot) {
        match self {
            Destination::Segment(handle) => {
                let closing = ClosingRecord::of(now_slot, &closing::closing_of(run));
                if let Err(e) = write(handle, slot.workers as usize, &closing) {
                    pgrx::warning!("pg_stress run {}: {e}", run.run_id);
                }
            }
            Destination::Tables => {
                let finished = crate::postgres::transaction::in_transaction(|| {
                    closing::finish_run::<K>(run, now_slot)
                });
                if let Err(report) = finished {
                    pgrx::warning!(
                        "pg_stress run {}: could not record its end: {}",
                        run.run_id,
                        report.message()
                    );
                    let why = format!("its end could not be recorded: {}", report.message());
                    let _ = crate::postgres::transaction::in_transaction(|| {
                        records::close_abandoned_run(&RunRow {
                            error: Some(&why),
                            ..closing::run_row(slot, "failed")
                        })
                    });
                }
            }
        }
    }

    /// Whether a closer must record the run when its last worker died without closing it: not a
    /// standby's, which its caller records (seeing the slot free and the closing missing).
    pub fn closed_by_closer(self) -> bool {
        self == Destination::Tables
    }
}

/// What a worker keeps of its tasks: those it ran (all of them when it stopped on a problem).
pub fn results_of(
    names: &[String],
    stats: &[TaskStats],
    stop_reason: Option<&str>,
) -> Vec<WorkerResult> {
    names
        .iter()
        .zip(stats)
        .filter(|(_, s)| s.calls > 0 || stop_reason.is_some())
        .map(|(name, s)| WorkerResult {
            operation: name.clone(),
            stats: s.clone(),
            stop_reason: stop_reason.map(str::to_owned),
        })
        .collect()
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
        // SAFETY: segment is the segment this value created and keeps attached until it drops.
        unsafe { pg_sys::dsm_segment_handle(self.segment) }
    }

    /// What region `r` holds (None: nothing was written).
    pub fn read(&self, r: usize) -> Option<Vec<u8>> {
        (r < self.regions).then_some(())?;
        // SAFETY: the segment is attached (ours) and holds regions regions of REGION_BYTES each: r
        // is checked against them, and the length read is checked to fit its region before the
        // bytes are copied out.
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
    // SAFETY: the segment is attached here and detached before returning; the caller made it with a
    // region per worker, and r is this worker's index, below that count; the bytes fit the region
    // (checked above), and its length is written last.
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
