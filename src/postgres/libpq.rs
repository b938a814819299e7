//! libpq inside a backend: a connection from a run's worker to another server (a load target), as
//! dblink and postgres_fdw make theirs.
//! - Every wait on the socket is a wait on the latch too ([`Connection`] never blocks inside
//!   libpq), so that a cancel, a statement timeout, a terminate or the postmaster's death is seen
//!   within the wait, and each wait has a deadline: a target that answers slowly or never cannot
//!   hold a worker past it.
//! - The socket is reserved with fd.c (`AcquireExternalFD`), so the backend's accounting of its
//!   file descriptors stays true.
//! - A non-superuser's connection must name a password and must have used it (dblink's rule): the
//!   database server's own trust, peer or ident authentication, its `.pgpass` and its environment
//!   are not the caller's to use.
//!
//! What the target answers is text; errors come back as [`RemoteError`], with the target's
//! SQLSTATE, for the caller to count (a deadlock is retried as over SPI).

use super::multiplex::{Slot, SocketWait, Woke, blocking, fresh_token};
use crate::error::StressError;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString, c_char, c_int};

/// libpq's C interface: the few calls used here (libpq-fe.h; its ABI is stable within libpq.so.5,
/// whichever server version it comes with).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
mod ffi {
    use std::ffi::{c_char, c_int, c_uint, c_void};

    #[repr(C)]
    pub struct PGconn {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct PGresult {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct PGcancel {
        _opaque: [u8; 0],
    }
    /// One option of a parsed connection string (PQconninfoOption).
    #[repr(C)]
    pub struct PQconninfoOption {
        pub keyword: *mut c_char,
        pub envvar: *mut c_char,
        pub compiled: *mut c_char,
        pub val: *mut c_char,
        pub label: *mut c_char,
        pub dispchar: *mut c_char,
        pub dispsize: c_int,
    }

    pub const CONNECTION_OK: c_int = 0;
    pub const CONNECTION_BAD: c_int = 1;
    pub const PGRES_POLLING_FAILED: c_int = 0;
    pub const PGRES_POLLING_READING: c_int = 1;
    pub const PGRES_POLLING_WRITING: c_int = 2;
    pub const PGRES_POLLING_OK: c_int = 3;
    pub const PGRES_EMPTY_QUERY: c_int = 0;
    pub const PGRES_COMMAND_OK: c_int = 1;
    pub const PGRES_TUPLES_OK: c_int = 2;
    pub const PG_DIAG_SQLSTATE: c_int = b'C' as c_int;
    pub const PG_DIAG_MESSAGE_PRIMARY: c_int = b'M' as c_int;
    pub const PG_DIAG_MESSAGE_DETAIL: c_int = b'D' as c_int;

    #[link(name = "pq")]
    unsafe extern "C" {
        pub fn PQconninfoParse(
            conninfo: *const c_char,
            errmsg: *mut *mut c_char,
        ) -> *mut PQconninfoOption;
        pub fn PQconninfoFree(options: *mut PQconninfoOption);
        pub fn PQfreemem(ptr: *mut c_void);
        pub fn PQconnectStartParams(
            keywords: *const *const c_char,
            values: *const *const c_char,
            expand_dbname: c_int,
        ) -> *mut PGconn;
        pub fn PQconnectPoll(conn: *mut PGconn) -> c_int;
        pub fn PQstatus(conn: *const PGconn) -> c_int;
        pub fn PQsocket(conn: *const PGconn) -> c_int;
        pub fn PQerrorMessage(conn: *const PGconn) -> *const c_char;
        pub fn PQconnectionUsedPassword(conn: *const PGconn) -> c_int;
        pub fn PQserverVersion(conn: *const PGconn) -> c_int;
        pub fn PQsetnonblocking(conn: *mut PGconn, arg: c_int) -> c_int;
        pub fn PQfinish(conn: *mut PGconn);
        pub fn PQsendQueryParams(
            conn: *mut PGconn,
            command: *const c_char,
            n_params: c_int,
            param_types: *const c_uint,
            param_values: *const *const c_char,
            param_lengths: *const c_int,
            param_formats: *const c_int,
            result_format: c_int,
        ) -> c_int;
        pub fn PQsendPrepare(
            conn: *mut PGconn,
            name: *const c_char,
            query: *const c_char,
            n_params: c_int,
            param_types: *const c_uint,
        ) -> c_int;
        pub fn PQsendQueryPrepared(
            conn: *mut PGconn,
            name: *const c_char,
            n_params: c_int,
            param_values: *const *const c_char,
            param_lengths: *const c_int,
            param_formats: *const c_int,
            result_format: c_int,
        ) -> c_int;
        pub fn PQflush(conn: *mut PGconn) -> c_int;
        pub fn PQconsumeInput(conn: *mut PGconn) -> c_int;
        pub fn PQisBusy(conn: *mut PGconn) -> c_int;
        pub fn PQgetResult(conn: *mut PGconn) -> *mut PGresult;
        pub fn PQresultStatus(res: *const PGresult) -> c_int;
        pub fn PQresultErrorMessage(res: *const PGresult) -> *const c_char;
        pub fn PQresultErrorField(res: *const PGresult, field: c_int) -> *const c_char;
        pub fn PQntuples(res: *const PGresult) -> c_int;
        pub fn PQnfields(res: *const PGresult) -> c_int;
        pub fn PQgetisnull(res: *const PGresult, row: c_int, column: c_int) -> c_int;
        pub fn PQgetvalue(res: *const PGresult, row: c_int, column: c_int) -> *const c_char;
        pub fn PQclear(res: *mut PGresult);
        pub fn PQcmdTuples(res: *mut PGresult) -> *const c_char;
        pub fn PQfname(res: *const PGresult, column: c_int) -> *const c_char;
        pub fn PQsendQuery(conn: *mut PGconn, query: *const c_char) -> c_int;
        pub fn PQgetCancel(conn: *mut PGconn) -> *mut PGcancel;
        pub fn PQcancel(cancel: *mut PGcancel, errbuf: *mut c_char, size: c_int) -> c_int;
        pub fn PQfreeCancel(cancel: *mut PGcancel);
    }
}

/// An error the target reported (or the connection's failure: SQLSTATE 08006).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub sqlstate: String,
    pub message: String,
    /// the target's DETAIL (a deadlock's names the processes)
    pub detail: Option<String>,
}

impl RemoteError {
    fn new(sqlstate: &str, message: impl Into<String>) -> Self {
        RemoteError {
            sqlstate: sqlstate.to_owned(),
            message: message.into(),
            detail: None,
        }
    }
}

impl From<StressError> for RemoteError {
    /// A failure to connect, as a run's worker counts it (its SQLSTATE, its words and hint).
    fn from(error: StressError) -> Self {
        let sqlstate = crate::error::sqlstate_text(error.sqlstate());
        let detail = match &error {
            StressError::Target { detail, hint, .. } => Some(
                detail
                    .iter()
                    .chain([hint])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        };
        RemoteError {
            sqlstate,
            message: error.to_string(),
            detail,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)
    }
}

const CONNINFO_HINT: &str =
    "Give the target as a libpq connection string: 'host=… port=… dbname=… user=… password=…'.";

/// An error of reaching a target (raised by the caller, or counted by a run's worker).
fn target_error(
    code: PgSqlErrorCode,
    message: String,
    detail: Option<&str>,
    hint: &str,
) -> StressError {
    StressError::Target {
        code,
        message,
        detail: detail.map(str::to_owned),
        hint: hint.to_owned(),
    }
}

/// What a statement returned: its rows, each column as text (None: NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// What a statement returned, and how many rows it processed (an UPDATE's count: PQcmdTuples).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub rows: Rows,
    pub processed: u64,
    /// the columns' names (of a statement that returned rows)
    pub columns: Vec<String>,
}

impl Answer {
    /// Column `name` of row `row`, if there is one and it is not NULL.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let column = self.columns.iter().position(|c| c == name)?;
        self.rows.get(row)?.get(column)?.as_deref()
    }
}

/// How long a cancel request may take before the worker goes on without its answer (it is sent
/// from a thread of its own, which PQcancel may block).
const CANCEL_WAIT_MS: u64 = 300;

/// The keywords whose values are secrets: never shown (see [`shown_conninfo`]).
const SECRET_KEYWORDS: [&str; 2] = ["password", "sslpassword"];

/// A connection string as it may be shown (in stress.runs.parameters, a NOTICE): the keywords
/// libpq read from it, secrets left out, each value quoted. ERROR 22023 when libpq cannot read it.
pub fn shown_conninfo(conninfo: &str) -> String {
    conninfo_options(conninfo)
        .into_iter()
        .filter(|(keyword, _)| !SECRET_KEYWORDS.contains(&keyword.as_str()))
        .map(|(keyword, value)| {
            format!(
                "{keyword}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keywords of connection string `conninfo`, as libpq reads them (keyword, value), with the
/// options it gave no value left out. ERROR 22023 when libpq cannot read it; libpq's message names
/// the part it could not read (never a value it read).
pub fn conninfo_options(conninfo: &str) -> Vec<(String, String)> {
    parse_conninfo(conninfo).unwrap_or_else(|e| e.raise())
}

/// [`conninfo_options`], the error returned.
fn parse_conninfo(conninfo: &str) -> Result<Vec<(String, String)>, StressError> {
    let text = CString::new(conninfo).map_err(|_| {
        target_error(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the target's connection string contains a zero byte".to_owned(),
            None,
            CONNINFO_HINT,
        )
    })?;
    let mut message: *mut c_char = std::ptr::null_mut();
    // SAFETY: text is a NUL-terminated string; libpq allocates the options (or the message),
    // each freed below with its own function.
    let options = unsafe { ffi::PQconninfoParse(text.as_ptr(), &mut message) };
    if options.is_null() {
        let why = if message.is_null() {
            "out of memory".to_owned()
        } else {
            // SAFETY: libpq's NUL-terminated message, copied, then freed once with PQfreemem.
            unsafe {
                let why = CStr::from_ptr(message).to_string_lossy().trim().to_owned();
                ffi::PQfreemem(message.cast());
                why
            }
        };
        return Err(target_error(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("the target's connection string is not one libpq reads: {why}"),
            None,
            CONNINFO_HINT,
        ));
    }
    let mut found = Vec::new();
    // SAFETY: PQconninfoParse's array ends with an option whose keyword is NULL; every string in
    // it is NUL-terminated; the array is freed once, after the loop.
    unsafe {
        let mut option = options;
        while !(*option).keyword.is_null() {
            if !(*option).val.is_null() {
                found.push((
                    CStr::from_ptr((*option).keyword)
                        .to_string_lossy()
                        .into_owned(),
                    CStr::from_ptr((*option).val).to_string_lossy().into_owned(),
                ));
            }
            option = option.add(1);
        }
        ffi::PQconninfoFree(options);
    }
    Ok(found)
}

/// A connection to a target, open until dropped. Not `Send`: it belongs to the backend that made
/// it.
pub struct Connection {
    conn: *mut ffi::PGconn,
    /// the descriptor reserved with fd.c for this connection's socket
    fd_reserved: bool,
    /// asked each time the latch wakes a wait: true ends the wait (a run's worker told to stop)
    stop: fn() -> bool,
    /// once connected: the latch, the postmaster's death and the socket, kept for every wait (a
    /// wait costs one epoll_wait, not a set made and freed each time as WaitLatchOrSocket does)
    waits: *mut pg_sys::WaitEventSet,
    /// the socket's events in `waits` now
    socket_events: std::cell::Cell<u32>,
    /// when one of a worker's several clients (`multiplex`): its waits go through the worker's
    /// executor, not `waits`
    slot: Option<Slot>,
    /// which connection this is to `slot`'s executor, once made (0: being made, its socket may
    /// change from one wait to the next)
    token: u64,
}

/// The socket's place in a connection's wait event set (added third).
const SOCKET_POSITION: c_int = 2;

/// How a wait on the socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Ready,
    /// the deadline passed
    Late,
    /// the stop predicate said so
    Stopped,
}

/// Whether this role may only reach targets by password: everyone but a superuser (dblink's rule).
/// A catalog lookup: in a transaction.
pub fn password_required() -> bool {
    // SAFETY: a catalog lookup of the current user, in a transaction.
    !unsafe { pg_sys::superuser() }
}

/// Keywords that make libpq read a file of the database server (or the environment's choice of
/// one): a non-superuser may not name them, since the file is the server's, not theirs — its
/// password file, a service file that names other servers, or the server's own key presented as
/// a client certificate.
const SERVER_FILE_KEYWORDS: [&str; 7] = [
    "passfile",
    "service",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
];

/// The password rule, as the caller can check it before any connection: 2F003 when a
/// non-superuser's connection string names no password, 42501 when it names a file of the
/// database server ([`SERVER_FILE_KEYWORDS`]).
pub fn check_password_given(
    options: &[(String, String)],
    password_required: bool,
) -> Result<(), StressError> {
    if let Some((keyword, _)) = options.iter().find(|(keyword, value)| {
        password_required && !value.is_empty() && SERVER_FILE_KEYWORDS.contains(&keyword.as_str())
    }) {
        return Err(target_error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("only superusers may name {keyword} in a target's connection string"),
            Some("libpq would read that file on the database server, which is not yours to read."),
            "Leave it out (sslmode=require still encrypts the connection), or ask a superuser to \
             run the load.",
        ));
    }
    if password_required
        && !options
            .iter()
            .any(|(keyword, value)| keyword == "password" && !value.is_empty())
    {
        return Err(target_error(
            PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
            "password is required to reach a target".to_owned(),
            None,
            "Non-superusers must give a password in the target's connection string \
             (password=…): the database server's own trust, peer or ident authentication is \
             not theirs to use.",
        ));
    }
    Ok(())
}

impl Connection {
    /// Connect to `conninfo` by `deadline` (a TimestampTz), named `application_name` unless the
    /// connection string names itself, as the current role (in a transaction). Raises what
    /// [`Connection::open`] returns; a cancel or terminate ends the wait with its ERROR.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn connect(conninfo: &str, application_name: &str, deadline: pg_sys::TimestampTz) -> Self {
        Self::open(
            conninfo,
            application_name,
            deadline,
            password_required(),
            || false,
        )
        .unwrap_or_else(|e| e.raise())
    }

    /// Connect to `conninfo` by `deadline`, needing no transaction: ERROR 08001 when the target
    /// cannot be reached or refuses, 2F003 when `password_required` and the connection string
    /// names no password or the target did not ask for it, 53000 when the backend has no file
    /// descriptor left, 57014 when `stop` said so while it waited. `stop` is asked whenever the
    /// latch wakes a wait on this connection (interrupts are honoured there too).
    pub fn open(
        conninfo: &str,
        application_name: &str,
        deadline: pg_sys::TimestampTz,
        password_required: bool,
        stop: fn() -> bool,
    ) -> Result<Self, StressError> {
        blocking(Self::open_in(
            conninfo,
            application_name,
            deadline,
            password_required,
            stop,
            None,
        ))
    }

    /// [`Connection::open`], its waits (then and after) through `slot` when it is one of a
    /// worker's several clients.
    pub async fn open_in(
        conninfo: &str,
        application_name: &str,
        deadline: pg_sys::TimestampTz,
        password_required: bool,
        stop: fn() -> bool,
        slot: Option<Slot>,
    ) -> Result<Self, StressError> {
        // (read first: a string libpq cannot read is the caller's mistake, 22023, for anyone)
        let options = parse_conninfo(conninfo)?;
        check_password_given(&options, password_required)?;
        // (no file descriptor left: an error before libpq opens a socket fd.c does not know of)
        // SAFETY: fd.c's counter of descriptors held outside it, in this backend.
        if !unsafe { pg_sys::AcquireExternalFD() } {
            return Err(target_error(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
                "could not reach the target: out of file descriptors".to_owned(),
                None,
                "Raise max_files_per_process or the operating system's limit on open files, or \
                 use fewer workers.",
            ));
        }
        let keywords = [c"fallback_application_name", c"dbname"];
        let name = CString::new(application_name.replace('\0', "")).expect("no zero byte");
        let dsn = CString::new(conninfo).expect("checked by parse_conninfo");
        let keyword_ptrs = [keywords[0].as_ptr(), keywords[1].as_ptr(), std::ptr::null()];
        let value_ptrs = [name.as_ptr(), dsn.as_ptr(), std::ptr::null()];
        // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call;
        // expand_dbname = 1 reads `dbname` as the whole connection string.
        let conn =
            unsafe { ffi::PQconnectStartParams(keyword_ptrs.as_ptr(), value_ptrs.as_ptr(), 1) };
        let mut connection = Connection {
            conn,
            fd_reserved: true,
            stop,
            waits: std::ptr::null_mut(),
            socket_events: std::cell::Cell::new(0),
            slot,
            token: 0,
        };
        if conn.is_null() {
            return Err(connection.refused("out of memory"));
        }
        // SAFETY: a connection being made (not NULL).
        if unsafe { ffi::PQstatus(conn) } == ffi::CONNECTION_BAD {
            let why = connection.error_message();
            return Err(connection.refused(&why));
        }
        connection.poll_connect(deadline).await?;
        // SAFETY: conn is a live connection (not NULL: checked above).
        if password_required && unsafe { ffi::PQconnectionUsedPassword(conn) } == 0 {
            drop(connection);
            return Err(target_error(
                PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
                "password is required to reach a target".to_owned(),
                Some("The target let the connection in without asking for its password."),
                "Non-superusers may only reach targets that authenticate them by password: \
                 use scram-sha-256 (or md5) for this role in the target's pg_hba.conf.",
            ));
        }
        // SAFETY: a live connection; non-blocking sends, so that a full socket waits on the latch.
        unsafe { ffi::PQsetnonblocking(conn, 1) };
        if connection.slot.is_none() {
            connection.keep_waits();
        }
        connection.token = fresh_token();
        Ok(connection)
    }

    /// PQconnectPoll until the connection is made, waiting on the socket and the latch.
    async fn poll_connect(&mut self, deadline: pg_sys::TimestampTz) -> Result<(), StressError> {
        let mut status = ffi::PGRES_POLLING_WRITING;
        loop {
            match status {
                ffi::PGRES_POLLING_OK => break,
                ffi::PGRES_POLLING_FAILED => {
                    let why = self.error_message();
                    return Err(self.refused(&why));
                }
                _ => {}
            }
            let readable = status == ffi::PGRES_POLLING_READING;
            match self.wait_socket(readable, !readable, deadline).await {
                Wait::Ready => {}
                Wait::Late => return Err(self.refused("timed out")),
                Wait::Stopped => {
                    self.close();
                    return Err(target_error(
                        PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                        "connecting to the target was cut short: the run was told to stop"
                            .to_owned(),
                        None,
                        "",
                    ));
                }
            }
            // SAFETY: a connection being made; PQconnectPoll never blocks.
            status = unsafe { ffi::PQconnectPoll(self.conn) };
        }
        // SAFETY: as above.
        if unsafe { ffi::PQstatus(self.conn) } != ffi::CONNECTION_OK {
            let why = self.error_message();
            return Err(self.refused(&why));
        }
        Ok(())
    }

    /// The wait event set of the connection made: its socket no longer changes.
    fn keep_waits(&mut self) {
        // SAFETY: a live connection's socket; a set freed once, in close; MyLatch is this
        // process's latch.
        unsafe {
            let socket = ffi::PQsocket(self.conn);
            let set = super::multiplex::latch_wait_set(1);
            let position = pg_sys::AddWaitEventToSet(
                set,
                pg_sys::WL_SOCKET_READABLE,
                socket as pg_sys::pgsocket,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            debug_assert_eq!(position, SOCKET_POSITION);
            self.waits = set;
            self.socket_events.set(pg_sys::WL_SOCKET_READABLE);
        }
    }

    /// Wait through `slot` from now on: the connection becomes one of a worker's several clients
    /// (`multiplex`), its own wait event set freed.
    pub fn share(&mut self, slot: Slot) {
        if !self.waits.is_null() {
            // SAFETY: the set made in keep_waits, freed once (then NULL).
            unsafe { pg_sys::FreeWaitEventSet(self.waits) };
            self.waits = std::ptr::null_mut();
        }
        self.slot = Some(slot);
    }

    /// ERROR 08001: the target could not be reached, `why` (libpq's words, which never include a
    /// password). The connection is closed first.
    fn refused(&mut self, why: &str) -> StressError {
        self.close();
        target_error(
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!("could not connect to the target: {why}"),
            None,
            "Check the target's host, port, database, user and password, and that it accepts \
             connections from this server (listen_addresses, pg_hba.conf).",
        )
    }

    /// Wait until the socket is readable or writable (as asked), `deadline` passes, or the stop
    /// predicate says so when the latch wakes the wait (interrupts are honoured then: a cancel
    /// raises its ERROR here). Ready at once when libpq has no socket (it gave the connection up;
    /// its next call says why).
    async fn wait_socket(
        &self,
        readable: bool,
        writable: bool,
        deadline: pg_sys::TimestampTz,
    ) -> Wait {
        // SAFETY: a live connection's socket (or -1, which WaitLatchOrSocket treats as none).
        let socket = unsafe { ffi::PQsocket(self.conn) };
        if socket < 0 {
            // (no socket: libpq gave the connection up; the caller reads why)
            return Wait::Ready;
        }
        let Some(slot) = &self.slot else {
            return self.wait_alone(socket, readable, writable, deadline);
        };
        let mut events = 0;
        if readable {
            events |= pg_sys::WL_SOCKET_READABLE;
        }
        if writable {
            events |= pg_sys::WL_SOCKET_WRITEABLE;
        }
        loop {
            if crate::postgres::backend::now() >= deadline {
                return Wait::Late;
            }
            let wait = SocketWait {
                socket: socket as pg_sys::pgsocket,
                token: if self.token == 0 {
                    fresh_token()
                } else {
                    self.token
                },
                events,
            };
            match slot.wait(Some(wait), Some(deadline)).await {
                Woke::Socket => return Wait::Ready,
                Woke::Timer => {}
                // (interrupts were honoured by the executor)
                Woke::Latch if (self.stop)() => return Wait::Stopped,
                Woke::Latch => {}
            }
        }
    }

    /// [`Connection::wait_socket`] of a connection waited on alone: on its own set.
    fn wait_alone(
        &self,
        socket: c_int,
        readable: bool,
        writable: bool,
        deadline: pg_sys::TimestampTz,
    ) -> Wait {
        loop {
            let left_ms = (deadline - crate::postgres::backend::now()) / 1000;
            if left_ms <= 0 {
                return Wait::Late;
            }
            let mut events =
                pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
            if readable {
                events |= pg_sys::WL_SOCKET_READABLE;
            }
            if writable {
                events |= pg_sys::WL_SOCKET_WRITEABLE;
            }
            let timeout = left_ms.min(i32::MAX as i64) as std::ffi::c_long;
            let fired = if self.waits.is_null() {
                // (while connecting: the socket may change from one poll to the next)
                // SAFETY: this process's latch, a socket this connection owns, and a timeout in
                // ms; WL_EXIT_ON_PM_DEATH needs no postmaster handle of ours.
                unsafe {
                    pg_sys::WaitLatchOrSocket(
                        pg_sys::MyLatch,
                        events as c_int,
                        socket as pg_sys::pgsocket,
                        timeout,
                        pg_sys::PG_WAIT_EXTENSION,
                    ) as u32
                }
            } else {
                let wanted = events & (pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE);
                let mut event = pg_sys::WaitEvent::default();
                // SAFETY: the connection's own set, its socket at SOCKET_POSITION; one event
                // returned into `event`.
                unsafe {
                    if wanted != self.socket_events.get() {
                        pg_sys::ModifyWaitEvent(
                            self.waits,
                            SOCKET_POSITION,
                            wanted,
                            std::ptr::null_mut(),
                        );
                        self.socket_events.set(wanted);
                    }
                    let n = pg_sys::WaitEventSetWait(
                        self.waits,
                        timeout,
                        &mut event,
                        1,
                        pg_sys::PG_WAIT_EXTENSION,
                    );
                    if n == 0 {
                        pg_sys::WL_TIMEOUT
                    } else {
                        event.events
                    }
                }
            };
            if fired & pg_sys::WL_LATCH_SET != 0 {
                // SAFETY: this process's latch.
                unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
                pg_sys::check_for_interrupts!();
                if (self.stop)() {
                    return Wait::Stopped;
                }
            }
            if fired & (pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE) != 0 {
                return Wait::Ready;
            }
        }
    }

    /// libpq's last error on this connection, one line.
    fn error_message(&self) -> String {
        if self.conn.is_null() {
            return "no connection".to_owned();
        }
        // SAFETY: a connection's message, NUL-terminated, valid until its next call.
        unsafe { CStr::from_ptr(ffi::PQerrorMessage(self.conn)) }
            .to_string_lossy()
            .trim()
            .replace('\n', " ")
    }

    /// The target's server_version_num.
    pub fn server_version(&self) -> i32 {
        // SAFETY: a live connection.
        unsafe { ffi::PQserverVersion(self.conn) }
    }

    /// Run `sql` with `params` (text, None: NULL) over the extended protocol, unnamed, by
    /// `deadline`; `types` are the parameters' types (fewer, or 0: the target infers them).
    pub fn execute(
        &mut self,
        sql: &str,
        types: &[pg_sys::Oid],
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        blocking(self.execute_async(sql, types, params, deadline))
    }

    /// [`Connection::execute`] as a future (for a connection of a worker's several clients).
    pub async fn execute_async(
        &mut self,
        sql: &str,
        types: &[pg_sys::Oid],
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        self.run(Statement::Text(sql, types), params, deadline)
            .await
    }

    /// Prepare `sql` as statement `name`, its parameters of `types` (fewer, or 0: the target
    /// infers them).
    pub fn prepare(
        &mut self,
        name: &str,
        sql: &str,
        types: &[pg_sys::Oid],
        deadline: pg_sys::TimestampTz,
    ) -> Result<(), RemoteError> {
        blocking(self.prepare_async(name, sql, types, deadline))
    }

    /// [`Connection::prepare`] as a future.
    pub async fn prepare_async(
        &mut self,
        name: &str,
        sql: &str,
        types: &[pg_sys::Oid],
        deadline: pg_sys::TimestampTz,
    ) -> Result<(), RemoteError> {
        let (name, sql) = (c_string(name)?, c_string(sql)?);
        let types: Vec<std::ffi::c_uint> = types.iter().map(|t| t.to_u32()).collect();
        // SAFETY: a live connection; the strings and the type array outlive the call.
        let sent = unsafe {
            ffi::PQsendPrepare(
                self.conn,
                name.as_ptr(),
                sql.as_ptr(),
                types.len() as c_int,
                types.as_ptr(),
            )
        };
        self.results(sent, deadline).await.map(|_| ())
    }

    /// Run `sql` over the simple query protocol (what PgBouncer's admin console speaks), by
    /// `deadline`.
    pub fn simple_query(
        &mut self,
        sql: &str,
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        let sql = c_string(sql)?;
        // SAFETY: a live connection; the text outlives the call.
        let sent = unsafe { ffi::PQsendQuery(self.conn, sql.as_ptr()) };
        blocking(self.results(sent, deadline))
    }

    /// Run prepared statement `name` with `params` by `deadline`.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn execute_prepared(
        &mut self,
        name: &str,
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        blocking(self.execute_prepared_async(name, params, deadline))
    }

    /// [`Connection::execute_prepared`] as a future.
    pub async fn execute_prepared_async(
        &mut self,
        name: &str,
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        self.run(Statement::Prepared(name), params, deadline).await
    }

    /// Send `statement` with text `params` (NULL pointers for NULLs), then read its results.
    async fn run(
        &mut self,
        statement: Statement<'_>,
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        let (Statement::Text(text, _) | Statement::Prepared(text)) = statement;
        let text = c_string(text)?;
        let values = params
            .iter()
            .map(|p| p.map(c_string).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let pointers: Vec<*const c_char> = values
            .iter()
            .map(|v| v.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
            .collect();
        let count = pointers.len() as c_int;
        // SAFETY: a live connection; the text, the types and the parameter arrays outlive the call
        // (libpq copies what it sends); NULL lengths and formats: all text.
        let sent = unsafe {
            match statement {
                Statement::Text(_, types) => {
                    // (as many types as parameters, 0 for those left to the target)
                    let types: Vec<std::ffi::c_uint> = (0..pointers.len())
                        .map(|i| types.get(i).map_or(0, |t| t.to_u32()))
                        .collect();
                    ffi::PQsendQueryParams(
                        self.conn,
                        text.as_ptr(),
                        count,
                        types.as_ptr(),
                        pointers.as_ptr(),
                        std::ptr::null(),
                        std::ptr::null(),
                        0,
                    )
                }
                Statement::Prepared(_) => ffi::PQsendQueryPrepared(
                    self.conn,
                    text.as_ptr(),
                    count,
                    pointers.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                ),
            }
        };
        self.results(sent, deadline).await
    }

    /// Wait on the socket for a result; an error when the wait did not end ready.
    async fn wait_for(
        &mut self,
        readable: bool,
        writable: bool,
        deadline: pg_sys::TimestampTz,
    ) -> Result<(), RemoteError> {
        match self.wait_socket(readable, writable, deadline).await {
            Wait::Ready => Ok(()),
            Wait::Late => Err(self.given_up(RemoteError::new(
                "08006",
                "the target did not answer before the run's deadline",
            ))),
            Wait::Stopped => Err(self.given_up(RemoteError::new(
                "57014",
                "the statement on the target was cancelled: the run was told to stop",
            ))),
        }
    }

    /// After a send (`sent`: libpq's answer): flush it, wait for the results and read them all.
    /// The last statement's rows, or the first error. Past `deadline`, or when the stop predicate
    /// says so, the target is asked to cancel and the connection is given up.
    async fn results(
        &mut self,
        sent: c_int,
        deadline: pg_sys::TimestampTz,
    ) -> Result<Answer, RemoteError> {
        if sent == 0 {
            return Err(self.broken());
        }
        loop {
            // SAFETY: a live, non-blocking connection: 1 = more to send, 0 = sent, -1 = failed.
            match unsafe { ffi::PQflush(self.conn) } {
                0 => break,
                1 => {
                    self.wait_for(true, true, deadline).await?;
                    // SAFETY: as above; reading what came lets libpq go on sending.
                    if unsafe { ffi::PQconsumeInput(self.conn) } == 0 {
                        return Err(self.broken());
                    }
                }
                _ => return Err(self.broken()),
            }
        }
        let mut answer = Answer::default();
        let mut error = None;
        loop {
            // SAFETY: a live connection.
            while unsafe { ffi::PQisBusy(self.conn) } != 0 {
                self.wait_for(true, false, deadline).await?;
                // SAFETY: as above.
                if unsafe { ffi::PQconsumeInput(self.conn) } == 0 {
                    return Err(self.broken());
                }
            }
            // SAFETY: not busy: PQgetResult returns at once. Each result is cleared below.
            let result = unsafe { ffi::PQgetResult(self.conn) };
            if result.is_null() {
                break;
            }
            let read = Self::read_result(result);
            // SAFETY: the result read, cleared once.
            unsafe { ffi::PQclear(result) };
            match read {
                Ok(a) => answer = a,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        error.map_or(Ok(answer), Err)
    }

    /// One result: its rows and count, or the error it carries.
    fn read_result(result: *mut ffi::PGresult) -> Result<Answer, RemoteError> {
        // SAFETY: a result libpq returned, not yet cleared; its strings NUL-terminated.
        unsafe {
            let text = |p: *const c_char| {
                (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
            };
            let status = ffi::PQresultStatus(result);
            if !matches!(
                status,
                ffi::PGRES_COMMAND_OK | ffi::PGRES_EMPTY_QUERY | ffi::PGRES_TUPLES_OK
            ) {
                return Err(RemoteError {
                    sqlstate: text(ffi::PQresultErrorField(result, ffi::PG_DIAG_SQLSTATE))
                        .unwrap_or_else(|| "08P01".to_owned()),
                    // (the server's primary message, as SPI's errors give it; libpq's own
                    // errors, a lost connection, have only the whole text)
                    message: text(ffi::PQresultErrorField(
                        result,
                        ffi::PG_DIAG_MESSAGE_PRIMARY,
                    ))
                    .or_else(|| text(ffi::PQresultErrorMessage(result)))
                    .unwrap_or_default()
                    .trim()
                    .replace('\n', " "),
                    detail: text(ffi::PQresultErrorField(result, ffi::PG_DIAG_MESSAGE_DETAIL)),
                });
            }
            // ("" for a command that counts nothing)
            let processed = text(ffi::PQcmdTuples(result))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let (mut rows, mut names) = (Vec::new(), Vec::new());
            if status == ffi::PGRES_TUPLES_OK {
                let (n, columns) = (ffi::PQntuples(result), ffi::PQnfields(result));
                names = (0..columns)
                    .map(|c| text(ffi::PQfname(result, c)).unwrap_or_default())
                    .collect();
                rows = (0..n)
                    .map(|row| {
                        (0..columns)
                            .map(|column| {
                                (ffi::PQgetisnull(result, row, column) == 0)
                                    .then(|| text(ffi::PQgetvalue(result, row, column)))
                                    .flatten()
                            })
                            .collect()
                    })
                    .collect();
            }
            Ok(Answer {
                rows,
                processed,
                columns: names,
            })
        }
    }

    /// The connection failed (08006), with libpq's words.
    fn broken(&self) -> RemoteError {
        RemoteError::new(
            "08006",
            format!(
                "the connection to the target failed: {}",
                self.error_message()
            ),
        )
    }

    /// A statement in flight is given up: ask the target to cancel it and close the connection
    /// (its state is unknown); `why` is returned.
    fn given_up(&mut self, why: RemoteError) -> RemoteError {
        self.cancel_in_flight();
        self.close();
        why
    }

    /// Whether the connection is still open (not given up after a timeout, a stop or a failure).
    pub fn is_open(&self) -> bool {
        // SAFETY: a live connection, if any.
        !self.conn.is_null() && unsafe { ffi::PQstatus(self.conn) } == ffi::CONNECTION_OK
    }

    /// Ask the target to cancel what this connection runs (best effort: libpq's cancel request
    /// is a new connection of its own, which may fail), waiting at most [`CANCEL_WAIT_MS`].
    ///
    /// `PQcancel` blocks until the target's postmaster answers, which over a partitioned network
    /// is the TCP timeout; libpq 17's non-blocking `PQcancelStart` is not in every libpq this
    /// links to (Debian 12's is 15's). So the request is sent from a thread of its own, which
    /// touches nothing of PostgreSQL's and blocks every signal, and this backend goes on when it
    /// answers or the wait is over, whichever is first.
    fn cancel_in_flight(&mut self) {
        if self.conn.is_null() {
            return;
        }
        // SAFETY: a live connection; the cancel object is the thread's to free.
        let cancel = unsafe { ffi::PQgetCancel(self.conn) };
        if cancel.is_null() {
            return;
        }
        /// The cancel object, moved to the thread that sends it.
        struct Request(*mut ffi::PGcancel);
        // SAFETY: a PGcancel is a copy of the connection's address and key, used by the one
        // thread it is moved to (PQcancel is documented thread-safe), and freed there.
        unsafe impl Send for Request {}
        let request = Request(cancel);
        let (done, answered) = std::sync::mpsc::channel::<()>();
        let send = move || {
            let request = request;
            let mut buffer = [0 as c_char; 256];
            // SAFETY: the cancel object this thread owns, freed once after its request.
            unsafe {
                ffi::PQcancel(request.0, buffer.as_mut_ptr(), buffer.len() as c_int);
                ffi::PQfreeCancel(request.0);
            }
            let _ = done.send(());
        };
        // (the thread blocks every signal, so that the postmaster's and the latch's signals keep
        // reaching this backend's own thread: the mask is inherited, then restored here)
        // SAFETY: sigset_t values on this stack, filled by sigfillset; pthread_sigmask on this
        // thread only.
        let spawned = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
            let spawned = std::thread::Builder::new()
                .name("pg_stress cancel".into())
                .spawn(send);
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            spawned
        };
        if spawned.is_ok() {
            let _ = answered.recv_timeout(std::time::Duration::from_millis(CANCEL_WAIT_MS));
        }
    }

    /// Close the connection and give its descriptor back to fd.c (once).
    fn close(&mut self) {
        if !self.waits.is_null() {
            // SAFETY: the set made in keep_waits, freed once (then NULL).
            unsafe { pg_sys::FreeWaitEventSet(self.waits) };
            self.waits = std::ptr::null_mut();
        }
        if !self.conn.is_null() {
            // SAFETY: a connection this struct owns, finished once (then NULL).
            unsafe { ffi::PQfinish(self.conn) };
            self.conn = std::ptr::null_mut();
        }
        if self.fd_reserved {
            // SAFETY: the descriptor acquired in connect, released once.
            unsafe { pg_sys::ReleaseExternalFD() };
            self.fd_reserved = false;
        }
    }
}

impl Drop for Connection {
    /// Closed when its worker is done with it, or when an ERROR (a cancel, say) unwinds past it:
    /// a statement still running on the target is asked to cancel first.
    fn drop(&mut self) {
        // SAFETY: a live connection, if any.
        if !self.conn.is_null() && unsafe { ffi::PQisBusy(self.conn) } != 0 {
            self.cancel_in_flight();
        }
        self.close();
    }
}

/// What a connection runs: SQL text (unnamed) with its parameters' types, or a statement it
/// prepared, by name.
#[derive(Clone, Copy)]
enum Statement<'a> {
    Text(&'a str, &'a [pg_sys::Oid]),
    Prepared(&'a str),
}

/// `text` for libpq: a zero byte cannot be sent (22021, as PostgreSQL reports it in text).
fn c_string(text: &str) -> Result<CString, RemoteError> {
    CString::new(text).map_err(|_| {
        RemoteError::new(
            "22021",
            "a statement or parameter for the target contains a zero byte",
        )
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::Connection;
    use crate::postgres::backend::now;
    use crate::postgres::subxact::run_isolated;
    use crate::tests::one;
    use pgrx::prelude::*;

    /// This test server, over its Unix socket (trust authentication, as pgrx's test cluster is
    /// made), as `user`.
    fn this_server(user: &str) -> String {
        let socket =
            one::<String>("SELECT split_part(current_setting('unix_socket_directories'), ',', 1)");
        let port = one::<String>("SELECT current_setting('port')");
        let database = one::<String>("SELECT current_database()::text");
        format!("host='{socket}' port={port} dbname='{database}' user='{user}'")
    }

    fn seconds_from(t: pg_sys::TimestampTz) -> f64 {
        (now() - t) as f64 / 1e6
    }

    /// How reaching a target with `conninfo` by `ms` ends: its SQLSTATE.
    fn connect_fails(conninfo: &str, ms: i64) -> PgSqlErrorCode {
        let conninfo = conninfo.to_owned();
        run_isolated(move || {
            Connection::connect(&conninfo, "pg_stress test", now() + ms * 1000);
        })
        .expect_err("the connection should fail")
        .sql_error_code()
    }

    #[pg_test]
    fn statements_run_on_the_target_with_parameters_prepared_or_not() {
        let user = one::<String>("SELECT current_user::text");
        let deadline = now() + 10_000_000;
        let mut target = Connection::connect(&this_server(&user), "pg_stress test", deadline);
        assert_eq!(
            target.server_version(),
            one::<String>("SELECT current_setting('server_version_num')")
                .parse::<i32>()
                .unwrap()
        );
        let rows = target
            .execute(
                "SELECT $1 + 1, NULL::text",
                &[pg_sys::INT4OID],
                &[Some("41")],
                deadline,
            )
            .unwrap();
        assert_eq!(rows.rows, vec![vec![Some("42".to_owned()), None]]);
        // an UPDATE's count
        target
            .execute(
                "CREATE TEMP TABLE t_libpq_answer AS SELECT generate_series(1, 2) AS x",
                &[],
                &[],
                deadline,
            )
            .unwrap();
        let updated = target
            .execute("UPDATE t_libpq_answer SET x = x + 1", &[], &[], deadline)
            .unwrap();
        assert_eq!((updated.rows.len(), updated.processed), (0, 2));
        let counted = target
            .execute("SELECT generate_series(1, 3)", &[], &[], deadline)
            .unwrap();
        assert_eq!((counted.rows.len(), counted.processed), (3, 3));
        target
            .prepare(
                "add",
                "SELECT $1 + $2",
                &[pg_sys::INT8OID, pg_sys::INT8OID],
                deadline,
            )
            .unwrap();
        for i in 0..3 {
            let rows = target
                .execute_prepared("add", &[Some(&i.to_string()), Some("10")], deadline)
                .unwrap();
            assert_eq!(
                rows.rows[0][0].as_deref(),
                Some((10 + i).to_string().as_str())
            );
        }
        // the target's own error, with its SQLSTATE; the connection goes on
        let error = target
            .execute("SELECT 1 / 0", &[], &[], deadline)
            .unwrap_err();
        assert_eq!(error.sqlstate, "22012");
        assert!(error.message.contains("division by zero"), "{error}");
        let rows = target
            .execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
                &[],
                deadline,
            )
            .unwrap();
        assert_eq!(rows.rows[0][0].as_deref(), Some("pg_stress test"));
    }

    /// Three connections of one backend on one executor (`multiplex`): two in a 1-second
    /// pg_sleep at the same time, which the third sees from its own connection while they sleep.
    #[pg_test]
    fn several_connections_run_at_once_on_one_executor() {
        use crate::postgres::multiplex::{self, Client, Reactor};
        let conninfo = this_server(&one::<String>("SELECT current_user::text"));
        let reactor = Reactor::new(3);
        let deadline = now() + 10_000_000;
        let sleeper = |i: usize| {
            let (slot, conninfo) = (reactor.slot(i), conninfo.clone());
            async move {
                let name = format!("pg_stress multiplexed {i}");
                let mut conn =
                    Connection::open_in(&conninfo, &name, deadline, false, || false, Some(slot))
                        .await
                        .unwrap();
                conn.execute_async("SELECT pg_sleep(1)", &[], &[], deadline)
                    .await
                    .unwrap();
            }
        };
        let most_seen = std::cell::Cell::new(0);
        let watcher = {
            let (slot, conninfo, most_seen) = (reactor.slot(2), conninfo.clone(), &most_seen);
            async move {
                let name = "pg_stress watcher";
                let mut conn = Connection::open_in(
                    &conninfo,
                    name,
                    deadline,
                    false,
                    || false,
                    Some(slot.clone()),
                )
                .await
                .unwrap();
                for _ in 0..100 {
                    let answer = conn
                        .execute_async(
                            "SELECT count(*) FROM pg_stat_activity
                             WHERE application_name LIKE 'pg_stress multiplexed %'
                               AND state = 'active' AND query = 'SELECT pg_sleep(1)'",
                            &[],
                            &[],
                            deadline,
                        )
                        .await
                        .unwrap();
                    let n: i64 = answer.rows[0][0].as_deref().unwrap().parse().unwrap();
                    most_seen.set(most_seen.get().max(n));
                    if n == 2 {
                        break;
                    }
                    slot.sleep_until(now() + 20_000).await;
                }
            }
        };
        let clients: Vec<Client<'_>> = vec![
            Box::pin(sleeper(0)),
            Box::pin(sleeper(1)),
            Box::pin(watcher),
        ];
        multiplex::run_all(&reactor, clients);
        assert_eq!(
            most_seen.get(),
            2,
            "both sleepers were never active at once"
        );
    }

    /// Waits (up to 5 s) until no backend matches `condition` (on pg_stat_activity); how many are
    /// left. (pg_stat_activity is read afresh each time: a transaction keeps its first read.)
    fn backends_left(condition: &str) -> i64 {
        let mut left = 0;
        for _ in 0..50 {
            Spi::run("SELECT pg_stat_clear_snapshot()").unwrap();
            left = one::<i64>(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE {condition}"
            ));
            if left == 0 {
                break;
            }
            crate::postgres::transaction::sleep_ms(100);
        }
        left
    }

    #[pg_test]
    fn a_non_superuser_must_give_a_password_and_the_target_must_ask_for_it() {
        // (the role the target is reached as must exist there, committed: this session's own)
        let user = one::<String>("SELECT session_user::text");
        let conninfo = format!("{} application_name=t_libpq_password", this_server(&user));
        Spi::run("CREATE ROLE t_libpq_user; SET LOCAL ROLE t_libpq_user").unwrap();
        // none given: refused before any connection is made
        assert_eq!(
            connect_fails(&conninfo, 5000),
            PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED
        );
        // given, but this server trusts its socket and never asks for it: refused once connected
        assert_eq!(
            connect_fails(&format!("{conninfo} password=secret-t-libpq"), 5000),
            PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED
        );
        // and what was refused left no connection behind
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(backends_left("application_name = 't_libpq_password'"), 0);
    }

    #[pg_test]
    fn unreadable_unreachable_silent_and_garbage_targets_fail_cleanly() {
        assert_eq!(
            connect_fails("host='unterminated", 1000),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            connect_fails("nonsense_keyword=1", 1000),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
        // nothing listens on this port
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = free.local_addr().unwrap().port();
        drop(free);
        assert_eq!(
            connect_fails(&format!("host=127.0.0.1 port={closed_port}"), 5000),
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
        );
        // a listener that never answers (the kernel completes the handshake; nothing replies):
        // the deadline ends the wait
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = now();
        assert_eq!(
            connect_fails(&format!("host=127.0.0.1 port={port} sslmode=disable"), 300),
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
        );
        let waited = seconds_from(started);
        assert!((0.25..3.0).contains(&waited), "waited {waited} s");
        drop(silent);
        // a server that answers with something else than PostgreSQL's protocol
        let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = garbage.local_addr().unwrap().port();
        let answering = std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut client, _)) = garbage.accept() {
                let mut buffer = [0u8; 512];
                let _ = client.read(&mut buffer);
                let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n<html>nope</html>");
            }
        });
        assert_eq!(
            connect_fails(&format!("host=127.0.0.1 port={port} sslmode=disable"), 5000),
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
        );
        answering.join().unwrap();
    }

    /// A cancel (here the statement timeout's) ends a wait on the target at once, and the
    /// target's statement is cancelled too, not left running.
    #[pg_test]
    fn a_cancel_ends_the_wait_and_the_targets_statement() {
        let user = one::<String>("SELECT current_user::text");
        let conninfo = this_server(&user);
        let started = now();
        // (run_isolated lets a cancel through, as PL/pgSQL does; caught here without a
        // subtransaction: the closure holds no PostgreSQL resource but the connection, which its
        // Drop closes)
        let code = pgrx::PgTryBuilder::new(move || {
            let mut target =
                Connection::connect(&conninfo, "pg_stress cancel test", now() + 10_000_000);
            let _ = crate::postgres::transaction::with_statement_timeout(300, || {
                target.execute("SELECT pg_sleep(30)", &[], &[], now() + 60_000_000)
            });
            None
        })
        .catch_others(|caught| match caught {
            pgrx::pg_sys::panic::CaughtError::PostgresError(report) => {
                Some(report.sql_error_code())
            }
            other => other.rethrow(),
        })
        .execute()
        .expect("cancelled");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED);
        let waited = seconds_from(started);
        assert!(waited < 5.0, "waited {waited} s");
        // the target's backend stops sleeping (the cancel request) and is gone (the connection
        // closed)
        let left = backends_left("application_name = 'pg_stress cancel test'");
        assert_eq!(left, 0, "the target's backend is still there");
    }
}
