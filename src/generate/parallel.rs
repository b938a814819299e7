//! Parallel generation (`workers => k`): background workers make the rows, the calling backend
//! writes them.
//!
//! Why this split: everything a call writes must commit or vanish with the caller's transaction
//! (a cancel leaves nothing partial), the caller holds the table lock that keeps other writers out,
//! and an index rebuild must see every row. Only the caller's own transaction can do all that, so
//! the workers do the part that needs no transaction: computing each row from (seed, id), building
//! its datums and forming the heap tuple. They stream formed tuples back through shared-memory
//! queues; the caller stores them with the same bulk writer as a one-process call (constraints,
//! multi-insert, indexes). Rows are a pure function of (seed, id), so the data is the same
//! whatever k is; chunks are handed out round-robin and read back oldest first, so even the
//! physical row order is the same.
//!
//! Everything a worker needs travels in one dynamic shared memory segment (the job as JSON, the
//! table's attribute descriptors, one queue pair per worker): no `shared_preload_libraries` needed.
//! Workers connect to the caller's database as the caller's session user and take the caller's
//! current role; they read no table. If the caller goes away (ERROR, cancel, exit), its end of the
//! queues detaches and each worker exits at its next send or receive; if a worker dies, the caller
//! sees its queue detach and raises an ERROR, so the call fails as a whole.

use super::TableWrite;
use crate::error::StressError;
use crate::postgres::bgworker::{self, Caller, WorkerSpec};
use pgrx::pg_sys;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;

/// Where generated rows go: a table (one-process calls, and the caller of a parallel call) or a
/// worker's queue. Generators write through this so both paths run the same code.
pub trait RowSink {
    /// Append one row: `fill` sets its datums and nulls (all start non-null).
    fn push(&mut self, fill: impl FnOnce(&mut [pg_sys::Datum], &mut [bool]));
}

/// A generator whose rows are a pure function of their id (accounts, orders, audit_log).
pub trait IdRows {
    fn fill(&self, id: i64, values: &mut [pg_sys::Datum], nulls: &mut [bool]);
}

/// What a table's generator implements so that workers can make its rows. The caller sends the
/// job (the call's parameters) once and then chunks of work it encodes itself; each worker builds
/// the producer from the job and turns each chunk into rows. Each producer has its own worker
/// entry point, which calls [`worker_main`] with itself: this module names no table.
pub trait RowProducer: Sized {
    /// The call's parameters, as the workers receive them.
    type Job: Serialize + DeserializeOwned;
    /// The library function its workers start in.
    const ENTRY_POINT: &'static str;
    /// Errors are the job's bad parameters.
    fn from_job(job: &Self::Job) -> Result<Self, String>;
    /// Make the rows of one chunk, as the caller encoded it.
    fn produce(&self, chunk: &[u8], sink: &mut impl RowSink);
}

/// [`RowProducer::produce`] for an id-keyed generator: the chunk is an [`ids_chunk`].
pub fn produce_ids(rows: &impl IdRows, chunk: &[u8], sink: &mut impl RowSink) {
    let mut r = ChunkReader::new(chunk);
    let first = r.i64();
    let count = r.i64();
    for id in first..first + count {
        sink.push(|v, n| rows.fill(id, v, n));
    }
}

/// Rows per chunk of an id range, so that each worker gets several chunks (a slow worker delays the
/// others less) but a chunk is big enough that handing it out costs nothing.
pub fn id_chunk_rows(n: u64, workers: usize) -> u64 {
    (n / (4 * workers as u64)).clamp(100, 10_000)
}

const IN_QUEUE_BYTES: usize = 512 * 1024;
const OUT_QUEUE_BYTES: usize = 1024 * 1024;
/// A worker sends formed tuples in messages of about this size.
const TUPLE_MESSAGE_BYTES: usize = 128 * 1024;
const MAGIC: u32 = 0x5057_4731; // "PWG1"

/// A chunk should take at most this much of a worker's queue.
pub const MAX_CHUNK_BYTES: usize = IN_QUEUE_BYTES / 8;
const TUPLES_MORE: u8 = b'T';
const TUPLES_DONE: u8 = b'D';

/// The fixed part at the start of the segment.
#[repr(C)]
struct Header {
    magic: u32,
    workers: u32,
    natts: u32,
    job_len: u32,
    caller: Caller,
}

/// Byte offsets of the parts of the segment.
struct Layout {
    attrs: usize,
    job: usize,
    queues: usize,
    total: usize,
}

impl Layout {
    fn new(workers: usize, natts: usize, job_len: usize) -> Self {
        let align = |x: usize| x.next_multiple_of(16);
        let attrs = align(size_of::<Header>());
        let job = align(attrs + natts * size_of::<pg_sys::FormData_pg_attribute>());
        let queues = align(job + job_len);
        let total = queues + workers * (IN_QUEUE_BYTES + OUT_QUEUE_BYTES);
        Layout {
            attrs,
            job,
            queues,
            total,
        }
    }

    fn in_queue(&self, worker: usize) -> usize {
        self.queues + worker * (IN_QUEUE_BYTES + OUT_QUEUE_BYTES)
    }

    fn out_queue(&self, worker: usize) -> usize {
        self.in_queue(worker) + IN_QUEUE_BYTES
    }
}

/// The caller's side of a parallel write: the segment, the workers, and which chunks are out.
pub struct Workers {
    segment: *mut pg_sys::dsm_segment,
    handles: Vec<*mut pg_sys::BackgroundWorkerHandle>,
    to_worker: Vec<*mut pg_sys::shm_mq_handle>,
    from_worker: Vec<*mut pg_sys::shm_mq_handle>,
    /// worker of each chunk handed out and not yet read back, oldest first
    in_flight: VecDeque<usize>,
    next_worker: usize,
    label: &'static str,
}

/// A segment for `k` workers: the header, the table's attributes (`desc`), the job and every
/// worker's two queues (laid out by [`Layout`]).
fn create_segment(
    desc: pg_sys::TupleDesc,
    k: usize,
    job_json: &[u8],
) -> (*mut pg_sys::dsm_segment, Layout) {
    // SAFETY: desc is the open target table's descriptor (TableWrite holds the relation), with natts
    // attributes; the segment is made with layout.total bytes, and every write below falls within
    // the part the layout gives it (header, attributes, job).
    unsafe {
        let natts = (*desc).natts as usize;
        let layout = Layout::new(k, natts, job_json.len());
        let segment = pg_sys::dsm_create(layout.total, 0);
        let base = pg_sys::dsm_segment_address(segment) as *mut u8;
        ptr::write(
            base as *mut Header,
            Header {
                magic: MAGIC,
                workers: k as u32,
                natts: natts as u32,
                job_len: job_json.len() as u32,
                caller: Caller::current(),
            },
        );
        ptr::copy_nonoverlapping(
            crate::postgres::version::tuple_desc_attrs(desc),
            base.add(layout.attrs) as *mut pg_sys::FormData_pg_attribute,
            natts,
        );
        ptr::copy_nonoverlapping(job_json.as_ptr(), base.add(layout.job), job_json.len());
        (segment, layout)
    }
}

/// Worker `i`'s two queues in `segment`: one we send on, one we receive from.
///
/// # Safety
/// `segment` is attached and laid out by `layout`, for more than `i` workers.
unsafe fn create_queues(
    segment: *mut pg_sys::dsm_segment,
    layout: &Layout,
    i: usize,
) -> (*mut pg_sys::shm_mq, *mut pg_sys::shm_mq) {
    // SAFETY: the caller's contract: each queue's place is its own part of the segment; MyProc is
    // this backend's PGPROC, set at start.
    unsafe {
        let base = pg_sys::dsm_segment_address(segment) as *mut u8;
        let to = pg_sys::shm_mq_create(base.add(layout.in_queue(i)) as *mut c_void, IN_QUEUE_BYTES);
        pg_sys::shm_mq_set_sender(to, pg_sys::MyProc);
        let from = pg_sys::shm_mq_create(
            base.add(layout.out_queue(i)) as *mut c_void,
            OUT_QUEUE_BYTES,
        );
        pg_sys::shm_mq_set_receiver(from, pg_sys::MyProc);
        (to, from)
    }
}

impl Workers {
    /// Start `k` workers that make rows of `job` for the table `write` goes to.
    pub fn launch<P: RowProducer>(
        job: &P::Job,
        write: &TableWrite,
        k: usize,
        label: &'static str,
    ) -> Self {
        crate::postgres::privilege::require_worker_grant(label);
        let job_json = serde_json::to_vec(job).expect("a job serializes");
        let (segment, layout) = create_segment(write.tuple_desc(), k, &job_json);
        let mut workers = Workers {
            segment,
            handles: Vec::with_capacity(k),
            to_worker: Vec::with_capacity(k),
            from_worker: Vec::with_capacity(k),
            in_flight: VecDeque::new(),
            next_worker: 0,
            label,
        };
        let table = write.display_name();
        let my_pid = crate::postgres::backend::pid();
        // SAFETY: the segment stays attached while `workers` lives (Drop detaches it).
        let handle_of_segment = unsafe { pg_sys::dsm_segment_handle(segment) };
        for i in 0..k {
            // SAFETY: worker i's queue places lie inside the segment just made for k workers.
            let (to, from) = unsafe { create_queues(segment, &layout, i) };
            let name = format!("pg_stress {table} worker {}/{k} of pid {my_pid}", i + 1);
            let extra = i.to_string();
            let started = bgworker::start(&WorkerSpec {
                name: &name,
                kind: "pg_stress generator",
                function: P::ENTRY_POINT,
                argument: pg_sys::Datum::from(handle_of_segment),
                extra: &extra,
                notify: true,
            });
            let Some(handle) = started else {
                // Dropping `workers` stops the ones already started.
                drop(workers);
                bgworker::out_of_slots(label, k, i);
            };
            workers.handles.push(handle);
            // With the worker's handle, a queue whose worker died reads as detached instead of
            // waiting forever.
            // SAFETY: to and from are queues in the segment, which outlives the attachments (Drop
            // detaches them first); handle is the worker just registered, which this backend keeps.
            unsafe {
                workers
                    .to_worker
                    .push(pg_sys::shm_mq_attach(to, segment, handle));
                workers
                    .from_worker
                    .push(pg_sys::shm_mq_attach(from, segment, handle));
            }
        }
        workers
    }

    /// Hand out the next chunk (round-robin). At most two chunks per worker are out at once: before
    /// handing out more, the oldest chunk's rows are read back into `write`.
    pub fn submit(&mut self, chunk: &[u8], write: &mut TableWrite) {
        let k = self.handles.len();
        while self.in_flight.len() >= 2 * k
            || (chunk.len() > IN_QUEUE_BYTES / 4 && !self.in_flight.is_empty())
        {
            // (A chunk too big to sit beside another in a worker's queue waits until every worker
            // is idle, so the send cannot block on a worker that is itself blocked sending rows.)
            self.read_back_oldest(write);
        }
        let worker = self.next_worker;
        self.next_worker = (worker + 1) % k;
        self.send(worker, chunk);
        self.in_flight.push_back(worker);
    }

    /// Read back every chunk still out, then let the workers go and wait for them to exit.
    pub fn finish(mut self, write: &mut TableWrite) {
        while !self.in_flight.is_empty() {
            self.read_back_oldest(write);
        }
        // SAFETY: the queues, handles and segment are ours (launch), each detached, waited for,
        // freed once: the vectors are emptied as they go, so Drop finds nothing left to stop.
        unsafe {
            // Detaching our end tells each worker there is no more work: it exits.
            for &queue in self.to_worker.iter().chain(&self.from_worker) {
                pg_sys::shm_mq_detach(queue);
            }
            self.to_worker.clear();
            self.from_worker.clear();
            for handle in std::mem::take(&mut self.handles) {
                pg_sys::WaitForBackgroundWorkerShutdown(handle);
                pg_sys::pfree(handle as *mut c_void);
            }
            pg_sys::dsm_detach(self.segment);
        }
    }

    fn send(&mut self, worker: usize, message: &[u8]) {
        // SAFETY: worker's queue is attached (launch); message lives across the send, which copies
        // it into the queue.
        let result = unsafe {
            pg_sys::shm_mq_send(
                self.to_worker[worker],
                message.len(),
                message.as_ptr() as *const c_void,
                false,
                true,
            )
        };
        if result != pg_sys::shm_mq_result::SHM_MQ_SUCCESS {
            self.worker_died(worker);
        }
    }

    fn read_back_oldest(&mut self, write: &mut TableWrite) {
        let Some(worker) = self.in_flight.pop_front() else {
            return;
        };
        loop {
            let mut len = 0usize;
            let mut data: *mut c_void = ptr::null_mut();
            // SAFETY: worker's queue is attached (launch); len and data are ours to fill.
            let result = unsafe {
                pg_sys::shm_mq_receive(self.from_worker[worker], &mut len, &mut data, false)
            };
            if result != pg_sys::shm_mq_result::SHM_MQ_SUCCESS || len == 0 {
                self.worker_died(worker);
            }
            // The message stays valid until the next receive; each tuple is copied into a slot.
            // SAFETY: a successful receive points data at len bytes (worker_died does not return).
            let message = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
            let mut at = 1;
            while at < message.len() {
                let tuple_len =
                    u32::from_ne_bytes(message[at..at + 4].try_into().expect("4 bytes")) as usize;
                write.push_tuple(&message[at + 4..at + 4 + tuple_len]);
                at += 4 + tuple_len;
            }
            if message[0] == TUPLES_DONE {
                return;
            }
        }
    }

    fn worker_died(&self, worker: usize) -> ! {
        StressError::WorkerLost {
            message: format!(
                "{}: background worker {} of {} exited before finishing its rows",
                self.label,
                worker + 1,
                self.handles.len()
            ),
            hint: "The call was rolled back. The server log says why the worker stopped (terminated, out of memory, …).".into(),
        }
        .raise();
    }
}

impl Drop for Workers {
    /// On an ERROR (or a launch that failed half-way) stop the workers at once rather than letting
    /// each find out from a detached queue.
    fn drop(&mut self) {
        // SAFETY: each handle is a worker this backend registered and still holds (finish empties
        // the list after it waited for them).
        unsafe {
            for &handle in &self.handles {
                pg_sys::TerminateBackgroundWorker(handle);
            }
        }
    }
}

/// A chunk of consecutive ids (see [`produce_ids`]).
pub fn ids_chunk(first: i64, count: u64) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(16);
    chunk.extend_from_slice(&first.to_ne_bytes());
    chunk.extend_from_slice(&count.to_ne_bytes());
    chunk
}

/// Reads the fields of a chunk in order (native byte order: the chunk stays in this server).
pub struct ChunkReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ChunkReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        ChunkReader { bytes, at: 0 }
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        s
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_ne_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn string(&mut self) -> String {
        let n = self.u32() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    pub fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// A worker's end: forms each row into a heap tuple for the caller's table and sends them in batches.
struct TupleSink {
    desc: pg_sys::TupleDesc,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    message: Vec<u8>,
    queue: *mut pg_sys::shm_mq_handle,
    row_memory: pg_sys::MemoryContext,
}

impl RowSink for TupleSink {
    fn push(&mut self, fill: impl FnOnce(&mut [pg_sys::Datum], &mut [bool])) {
        self.nulls.fill(false);
        // SAFETY: values and nulls hold desc's natts entries (new); the tuple is formed in the row
        // context and its bytes copied out before that context is reset.
        unsafe {
            let outer = pg_sys::MemoryContextSwitchTo(self.row_memory);
            fill(&mut self.values, &mut self.nulls);
            let tuple = pg_sys::heap_form_tuple(
                self.desc,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            let len = (*tuple).t_len as usize;
            self.message.extend_from_slice(&(len as u32).to_ne_bytes());
            self.message.extend_from_slice(std::slice::from_raw_parts(
                (*tuple).t_data as *const u8,
                len,
            ));
            pg_sys::MemoryContextSwitchTo(outer);
            pg_sys::MemoryContextReset(self.row_memory);
        }
        if self.message.len() >= TUPLE_MESSAGE_BYTES {
            self.send(TUPLES_MORE);
        }
    }
}

impl TupleSink {
    /// A sink forming rows of `desc`, sending them on `queue`.
    fn new(desc: pg_sys::TupleDesc, queue: *mut pg_sys::shm_mq_handle) -> Self {
        // SAFETY: desc is a valid descriptor (Attached::tuple_desc); the row context is a child of
        // the worker's current context, which lives as long as the worker.
        let (natts, row_memory) = unsafe {
            (
                (*desc).natts as usize,
                pg_sys::AllocSetContextCreateInternal(
                    pg_sys::CurrentMemoryContext,
                    c"pg_stress generator row".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                ),
            )
        };
        let mut message = Vec::with_capacity(TUPLE_MESSAGE_BYTES + 64 * 1024);
        message.push(TUPLES_MORE);
        TupleSink {
            desc,
            values: vec![pg_sys::Datum::from(0); natts],
            nulls: vec![false; natts],
            message,
            queue,
            row_memory,
        }
    }

    /// Send what is batched (the message's first byte becomes `tag`). If the caller has gone (it
    /// failed or was cancelled), there is nothing more to do: exit.
    fn send(&mut self, tag: u8) {
        self.message[0] = tag;
        // SAFETY: our attached queue; the message lives across the send, which copies it.
        let result = unsafe {
            pg_sys::shm_mq_send(
                self.queue,
                self.message.len(),
                self.message.as_ptr() as *const c_void,
                false,
                true,
            )
        };
        self.message.truncate(1);
        if result != pg_sys::shm_mq_result::SHM_MQ_SUCCESS {
            // SAFETY: a background worker may exit at any point outside a critical section.
            unsafe { pg_sys::proc_exit(0) };
        }
    }
}

unsafe extern "C-unwind" {
    /// PostgreSQL's own SIGTERM handler for backends (pgrx's `pg_sys::die` is a Rust wrapper, not
    /// a signal handler).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// A generator worker's whole life, for producer `P` (`bgw_main_arg` is the segment's handle).
pub fn worker_main<P: RowProducer>(arg: pg_sys::Datum) {
    // SIGTERM ends the worker at its next interrupt check (the queues check while waiting); the
    // caller then sees the queue detach and fails the call.
    // SAFETY: the first thing this background worker does: PostgreSQL's own handler for SIGTERM,
    // then signals unblocked, as every worker does.
    unsafe {
        crate::postgres::version::set_signal_handler(pg_sys::SIGTERM as i32, postgres_die);
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    // SAFETY: arg is the handle the caller passed as bgw_main_arg.
    let Some(attached) = (unsafe { Attached::to(arg) }) else {
        // The caller already finished or failed and released the segment.
        return;
    };
    // As the caller: its login role, then the role it had set (SET ROLE / SECURITY DEFINER).
    attached.header().caller.connect_as();
    // SAFETY: the segment stays attached for the process's life; attach checked the worker index.
    let (from_leader, to_leader) = unsafe { attached.queues() };
    let job: P::Job = serde_json::from_slice(attached.job())
        .unwrap_or_else(|e| pgrx::error!("pg_stress generator: bad job: {e}"));
    let producer = P::from_job(&job).unwrap_or_else(|e| pgrx::error!("pg_stress generator: {e}"));
    let mut sink = TupleSink::new(attached.tuple_desc(), to_leader);
    loop {
        let (mut len, mut data) = (0usize, ptr::null_mut::<c_void>());
        // SAFETY: from_leader is our attached queue; len and data are ours to fill.
        let received = unsafe { pg_sys::shm_mq_receive(from_leader, &mut len, &mut data, false) };
        if received != pg_sys::shm_mq_result::SHM_MQ_SUCCESS {
            // Detached: the caller has read everything it wanted (or gave up).
            return;
        }
        // Copy the chunk out: receiving again (or sending) may reuse the queue's buffer.
        // SAFETY: a successful receive points data at len bytes, valid until the next receive.
        let chunk = unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec();
        pg_sys::check_for_interrupts!();
        producer.produce(&chunk, &mut sink);
        sink.send(TUPLES_DONE);
    }
}

/// The caller's segment, attached by a generator worker, with the worker's place in it.
struct Attached {
    segment: *mut pg_sys::dsm_segment,
    base: *const u8,
    layout: Layout,
    worker: usize,
}

impl Attached {
    /// Attach the segment `handle` (None if the caller has released it) and check its header.
    ///
    /// # Safety
    /// `handle` is the segment handle the caller passed; called in a generator worker, once.
    unsafe fn to(handle: pg_sys::Datum) -> Option<Attached> {
        // SAFETY: MyBgworkerEntry is this worker's entry, whose bgw_extra is NUL-terminated (the
        // launcher wrote the worker's index there); a segment attached is mapped until we detach or
        // exit, and its header was written before any worker started.
        unsafe {
            let worker: usize =
                std::ffi::CStr::from_ptr((*pg_sys::MyBgworkerEntry).bgw_extra.as_ptr())
                    .to_str()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
            let segment = pg_sys::dsm_attach(handle.value() as pg_sys::dsm_handle);
            if segment.is_null() {
                return None;
            }
            let base = pg_sys::dsm_segment_address(segment) as *const u8;
            let header = &*(base as *const Header);
            if header.magic != MAGIC || worker >= header.workers as usize {
                pgrx::error!("pg_stress generator: unexpected shared memory contents");
            }
            let layout = Layout::new(
                header.workers as usize,
                header.natts as usize,
                header.job_len as usize,
            );
            Some(Attached {
                segment,
                base,
                layout,
                worker,
            })
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: checked by `to` (its magic); the caller wrote it before starting any worker and
        // never writes it again.
        unsafe { &*(self.base as *const Header) }
    }

    fn job(&self) -> &[u8] {
        // SAFETY: the job's bytes, at the layout's place, of the header's length.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(self.layout.job),
                self.header().job_len as usize,
            )
        }
    }

    /// A tuple descriptor of the caller's table, copied out of the segment.
    fn tuple_desc(&self) -> pg_sys::TupleDesc {
        let natts = self.header().natts as usize;
        // SAFETY: a template descriptor of natts attributes, filled with the natts attributes the
        // caller copied into the segment at the layout's place.
        unsafe {
            let desc = pg_sys::CreateTemplateTupleDesc(natts as i32);
            ptr::copy_nonoverlapping(
                self.base.add(self.layout.attrs) as *const pg_sys::FormData_pg_attribute,
                crate::postgres::version::tuple_desc_attrs(desc),
                natts,
            );
            crate::postgres::version::attributes_written(desc);
            desc
        }
    }

    /// This worker's two queues: the one the caller sends chunks on, the one we send rows on.
    ///
    /// # Safety
    /// Once per worker: each queue takes one receiver and one sender.
    unsafe fn queues(&self) -> (*mut pg_sys::shm_mq_handle, *mut pg_sys::shm_mq_handle) {
        // SAFETY: the caller created both queues at the layout's places for this worker (checked
        // below the worker count in `to`) before starting it; MyProc is this process's PGPROC.
        unsafe {
            let from_leader = pg_sys::shm_mq_attach(
                self.base.add(self.layout.in_queue(self.worker)) as *mut pg_sys::shm_mq,
                self.segment,
                ptr::null_mut(),
            );
            pg_sys::shm_mq_set_receiver(pg_sys::shm_mq_get_queue(from_leader), pg_sys::MyProc);
            let to_leader = pg_sys::shm_mq_attach(
                self.base.add(self.layout.out_queue(self.worker)) as *mut pg_sys::shm_mq,
                self.segment,
                ptr::null_mut(),
            );
            pg_sys::shm_mq_set_sender(pg_sys::shm_mq_get_queue(to_leader), pg_sys::MyProc);
            (from_leader, to_leader)
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn chunks_are_sized_for_the_workers() {
        assert_eq!(id_chunk_rows(1_000_000, 2), 10_000);
        assert_eq!(id_chunk_rows(20_000, 2), 2_500);
        assert_eq!(id_chunk_rows(10, 4), 100);
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of, use_schema};
    use pgrx::prelude::*;

    const TABLES: [&str; 6] = [
        "accounts",
        "orders",
        "trades",
        "positions",
        "market_data",
        "audit_log",
    ];

    /// Each table's checksum, and a digest of the trades' physical order.
    fn fingerprint(schema: &str) -> Vec<String> {
        let mut digests: Vec<String> = TABLES
            .iter()
            .map(|t| one::<String>(&format!("SELECT stress.checksum('{schema}.{t}')")))
            .collect();
        digests.push(one::<String>(&format!(
            "SELECT md5(string_agg(id::text, ',' ORDER BY ctid)) FROM {schema}.trades"
        )));
        digests
    }

    #[pg_test]
    fn the_data_is_the_same_whatever_the_number_of_workers() {
        let mut fingerprints = Vec::new();
        for (schema, workers) in [("t_par1", 1), ("t_par2", 2), ("t_par3", 3)] {
            use_schema(schema);
            Spi::run(&format!(
                "SELECT * FROM stress.generate_dataset(orders => 5000, seed => 21, days => 2, workers => {workers})"
            ))
            .unwrap();
            assert_eq!(
                one::<i64>(&format!("SELECT count(*) FROM {schema}.trades")),
                25_000
            );
            fingerprints.push(fingerprint(schema));
        }
        assert_eq!(fingerprints[0], fingerprints[1]);
        assert_eq!(fingerprints[0], fingerprints[2]);
        let recorded = one::<String>(
            "SELECT string_agg(parameters->>'workers', ',' ORDER BY id) FROM stress.runs
             WHERE kind = 'generate_dataset' AND parameters->>'seed' = '21'",
        );
        assert_eq!(recorded, "1,2,3");
    }

    #[pg_test]
    fn appending_with_workers_maintains_every_index() {
        use_schema("t_par_append");
        Spi::run("SELECT stress.generate_orders(3000, seed => 4, workers => 2)").unwrap();
        Spi::run("SELECT stress.generate_orders(2500, seed => 4, workers => 3)").unwrap();
        let modes = one::<String>(
            "SELECT string_agg(r.details->>'index_mode', ',' ORDER BY s.id) FROM stress.runs s
             JOIN stress.results r ON r.run_id = s.id WHERE r.name = 't_par_append.orders'",
        );
        assert_eq!(modes, "rebuild,maintain");
        crate::tests::assert_every_row_indexed(
            "t_par_append.orders",
            4,
            "appending_with_workers_maintains_every_index",
        );
        // The same rows as one backend would have written.
        let parallel = one::<String>("SELECT stress.checksum('t_par_append.orders')");
        use_schema("t_par_append1");
        Spi::run("SELECT stress.generate_orders(3000, seed => 4)").unwrap();
        Spi::run("SELECT stress.generate_orders(2500, seed => 4)").unwrap();
        assert_eq!(
            one::<String>("SELECT stress.checksum('t_par_append1.orders')"),
            parallel
        );
    }

    #[pg_test]
    fn rows_formed_by_workers_still_meet_the_tables_constraints() {
        use_schema("t_par_check");
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        Spi::run(
            "ALTER TABLE t_par_check.orders ADD CONSTRAINT only_btc CHECK (symbol = 'BTC/USDT') NOT VALID",
        )
        .unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(2000, workers => 2)"),
            Some(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM t_par_check.orders"), 10);
    }

    #[pg_test]
    fn workers_for_a_table_with_a_long_name() {
        // The worker's name (which has the table's in it) is cut to what PostgreSQL can hold.
        let schema = format!("t_par_{}", "ü".repeat(28));
        use_schema(&schema);
        Spi::run("SELECT stress.generate_orders(500, seed => 2, workers => 2)").unwrap();
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM \"{schema}\".orders")),
            500
        );
    }

    #[pg_test]
    fn bad_worker_counts_are_refused() {
        use_schema("t_par_bad");
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        for sql in [
            "SELECT stress.generate_orders(10, workers => 0)",
            "SELECT stress.generate_orders(10, workers => -2)",
            "SELECT stress.generate_trades(10, workers => 9)",
            "SELECT stress.generate_accounts(10, workers => 0)",
            "SELECT stress.generate_audit_log(10, workers => 0)",
            "SELECT * FROM stress.generate_dataset(orders => 10, workers => 0)",
        ] {
            assert_eq!(sqlstate_of(sql), invalid, "{sql}");
        }
        assert!(one::<bool>(
            "SELECT to_regclass('t_par_bad.orders') IS NULL"
        ));
    }

    #[pg_test]
    fn running_out_of_worker_slots_is_a_clear_error_and_writes_nothing() {
        use_schema("t_par_slots");
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        Spi::run("SET LOCAL stress.max_workers = 100").unwrap();
        // The test server has max_worker_processes = 32, some of them taken (pg_cron, …).
        let report = crate::postgres::subxact::run_isolated(|| {
            Spi::run("SELECT stress.generate_orders(1000, workers => 40)").expect("SPI")
        })
        .unwrap_err();
        assert_eq!(
            report.sql_error_code(),
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES
        );
        assert!(
            report.message().contains("max_worker_processes = 32"),
            "{}",
            report.message()
        );
        assert!(report.hint().unwrap_or_default().contains("workers =>"));
        assert_eq!(one::<i64>("SELECT count(*) FROM t_par_slots.orders"), 10);
        // Workers that did start were stopped: none is left running for long.
        let mut left = i64::MAX;
        for _ in 0..100 {
            left = one::<i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_stress generator'",
            );
            if left == 0 {
                break;
            }
            Spi::run("SELECT pg_sleep(0.05)").unwrap();
        }
        assert_eq!(left, 0);
    }
}
