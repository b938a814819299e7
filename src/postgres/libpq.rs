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
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)
    }
}

const CONNINFO_HINT: &str =
    "Give the target as a libpq connection string: 'host=… port=… dbname=… user=… password=…'.";

/// Raise an ERROR of reaching a target.
fn fail(code: PgSqlErrorCode, message: String, detail: Option<&str>, hint: &str) -> ! {
    crate::error::StressError::Target {
        code,
        message,
        detail: detail.map(str::to_owned),
        hint: hint.to_owned(),
    }
    .raise()
}

/// What a statement returned: its rows, each column as text (None: NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// The keywords of connection string `conninfo`, as libpq reads them (keyword, value), with the
/// options it gave no value left out. ERROR 22023 when libpq cannot read it; libpq's message names
/// the part it could not read (never a value it read).
pub fn conninfo_options(conninfo: &str) -> Vec<(String, String)> {
    let text = CString::new(conninfo).unwrap_or_else(|_| {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the target's connection string contains a zero byte".to_owned(),
            None,
            CONNINFO_HINT,
        )
    });
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
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("the target's connection string is not one libpq reads: {why}"),
            None,
            CONNINFO_HINT,
        );
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
    found
}

/// A connection to a target, open until dropped. Not `Send`: it belongs to the backend that made
/// it.
pub struct Connection {
    conn: *mut ffi::PGconn,
    /// the descriptor reserved with fd.c for this connection's socket
    fd_reserved: bool,
}

impl Connection {
    /// Connect to `conninfo` by `deadline` (a TimestampTz), named `application_name` unless the
    /// connection string names itself. ERROR 08001 when the target cannot be reached or refuses,
    /// 2F003 when a non-superuser's connection names no password or the target did not ask for it,
    /// 53000 when the backend has no file descriptor left; a cancel or terminate ends the wait.
    pub fn connect(conninfo: &str, application_name: &str, deadline: pg_sys::TimestampTz) -> Self {
        // SAFETY: a catalog lookup of the current user, in a transaction.
        let superuser = unsafe { pg_sys::superuser() };
        // (read first: a string libpq cannot read is the caller's mistake, 22023, for anyone)
        let options = conninfo_options(conninfo);
        if !superuser
            && !options
                .iter()
                .any(|(keyword, value)| keyword == "password" && !value.is_empty())
        {
            fail(
                PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
                "password is required to reach a target".to_owned(),
                None,
                "Non-superusers must give a password in the target's connection string \
                 (password=…): the database server's own trust, peer or ident authentication is \
                 not theirs to use.",
            );
        }
        // (no file descriptor left: an error before libpq opens a socket fd.c does not know of)
        // SAFETY: fd.c's counter of descriptors held outside it, in this backend.
        if !unsafe { pg_sys::AcquireExternalFD() } {
            fail(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
                "could not reach the target: out of file descriptors".to_owned(),
                None,
                "Raise max_files_per_process or the operating system's limit on open files, or \
                 use fewer connections per worker.",
            );
        }
        let keywords = [c"fallback_application_name", c"dbname"];
        let name = CString::new(application_name.replace('\0', "")).expect("no zero byte");
        let dsn = CString::new(conninfo).expect("checked by conninfo_options");
        let keyword_ptrs = [keywords[0].as_ptr(), keywords[1].as_ptr(), std::ptr::null()];
        let value_ptrs = [name.as_ptr(), dsn.as_ptr(), std::ptr::null()];
        // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call;
        // expand_dbname = 1 reads `dbname` as the whole connection string.
        let conn =
            unsafe { ffi::PQconnectStartParams(keyword_ptrs.as_ptr(), value_ptrs.as_ptr(), 1) };
        let mut connection = Connection {
            conn,
            fd_reserved: true,
        };
        if conn.is_null() {
            connection.refused("out of memory");
        }
        // SAFETY: a connection being made (not NULL).
        if unsafe { ffi::PQstatus(conn) } == ffi::CONNECTION_BAD {
            let why = connection.error_message();
            connection.refused(&why);
        }
        connection.poll_connect(deadline);
        // SAFETY: conn is a live connection (not NULL: checked above).
        if !superuser && unsafe { ffi::PQconnectionUsedPassword(conn) } == 0 {
            drop(connection);
            fail(
                PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
                "password is required to reach a target".to_owned(),
                Some("The target let the connection in without asking for its password."),
                "Non-superusers may only reach targets that authenticate them by password: \
                 use scram-sha-256 (or md5) for this role in the target's pg_hba.conf.",
            );
        }
        // SAFETY: a live connection; non-blocking sends, so that a full socket waits on the latch.
        unsafe { ffi::PQsetnonblocking(conn, 1) };
        connection
    }

    /// PQconnectPoll until the connection is made, waiting on the socket and the latch.
    fn poll_connect(&mut self, deadline: pg_sys::TimestampTz) {
        let mut status = ffi::PGRES_POLLING_WRITING;
        loop {
            match status {
                ffi::PGRES_POLLING_OK => break,
                ffi::PGRES_POLLING_FAILED => {
                    let why = self.error_message();
                    self.refused(&why);
                }
                _ => {}
            }
            let readable = status == ffi::PGRES_POLLING_READING;
            if !self.wait_socket(readable, !readable, deadline) {
                self.refused("timed out");
            }
            // SAFETY: a connection being made; PQconnectPoll never blocks.
            status = unsafe { ffi::PQconnectPoll(self.conn) };
        }
        // SAFETY: as above.
        if unsafe { ffi::PQstatus(self.conn) } != ffi::CONNECTION_OK {
            let why = self.error_message();
            self.refused(&why);
        }
    }

    /// ERROR 08001: the target could not be reached, `why` (libpq's words, which never include a
    /// password). The connection is closed first.
    fn refused(&mut self, why: &str) -> ! {
        self.close();
        fail(
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!("could not connect to the target: {why}"),
            None,
            "Check the target's host, port, database, user and password, and that it accepts \
             connections from this server (listen_addresses, pg_hba.conf).",
        )
    }

    /// Wait until the socket is readable or writable (as asked), the latch is set (interrupts are
    /// then honoured: a cancel raises its ERROR here) or `deadline` passes. False: the deadline
    /// passed. At once when libpq has no socket (it gave the connection up; its next call says
    /// why).
    fn wait_socket(&self, readable: bool, writable: bool, deadline: pg_sys::TimestampTz) -> bool {
        // SAFETY: a live connection's socket (or -1, which WaitLatchOrSocket treats as none).
        let socket = unsafe { ffi::PQsocket(self.conn) };
        if socket < 0 {
            // (no socket: libpq gave the connection up; the caller reads why)
            return true;
        }
        loop {
            let left_ms = (deadline - crate::postgres::backend::now()) / 1000;
            if left_ms <= 0 {
                return false;
            }
            let mut events =
                pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
            if readable {
                events |= pg_sys::WL_SOCKET_READABLE;
            }
            if writable {
                events |= pg_sys::WL_SOCKET_WRITEABLE;
            }
            // SAFETY: this process's latch, a socket this connection owns, and a timeout in ms;
            // WL_EXIT_ON_PM_DEATH needs no postmaster handle of ours.
            let fired = unsafe {
                pg_sys::WaitLatchOrSocket(
                    pg_sys::MyLatch,
                    events as c_int,
                    socket as pg_sys::pgsocket,
                    left_ms.min(i32::MAX as i64) as std::ffi::c_long,
                    pg_sys::PG_WAIT_EXTENSION,
                )
            } as u32;
            if fired & pg_sys::WL_LATCH_SET != 0 {
                // SAFETY: this process's latch.
                unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
                pg_sys::check_for_interrupts!();
            }
            if fired & (pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE) != 0 {
                return true;
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
    /// `deadline`.
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Rows, RemoteError> {
        self.run(Statement::Text(sql), params, deadline)
    }

    /// Prepare `sql` as statement `name` (its parameters' types as the target infers them).
    pub fn prepare(
        &mut self,
        name: &str,
        sql: &str,
        deadline: pg_sys::TimestampTz,
    ) -> Result<(), RemoteError> {
        let (name, sql) = (c_string(name)?, c_string(sql)?);
        // SAFETY: a live connection; the strings outlive the call.
        let sent = unsafe {
            ffi::PQsendPrepare(self.conn, name.as_ptr(), sql.as_ptr(), 0, std::ptr::null())
        };
        self.results(sent, deadline).map(|_| ())
    }

    /// Run prepared statement `name` with `params` by `deadline`.
    pub fn execute_prepared(
        &mut self,
        name: &str,
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Rows, RemoteError> {
        self.run(Statement::Prepared(name), params, deadline)
    }

    /// Send `statement` with text `params` (NULL pointers for NULLs), then read its results.
    fn run(
        &mut self,
        statement: Statement<'_>,
        params: &[Option<&str>],
        deadline: pg_sys::TimestampTz,
    ) -> Result<Rows, RemoteError> {
        let (Statement::Text(text) | Statement::Prepared(text)) = statement;
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
        // SAFETY: a live connection; the text and the parameter arrays outlive the call (libpq
        // copies what it sends); NULL types, lengths and formats: all text, types inferred.
        let sent = unsafe {
            match statement {
                Statement::Text(_) => ffi::PQsendQueryParams(
                    self.conn,
                    text.as_ptr(),
                    count,
                    std::ptr::null(),
                    pointers.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                ),
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
        self.results(sent, deadline)
    }

    /// After a send (`sent`: libpq's answer): flush it, wait for the results and read them all.
    /// The last statement's rows, or the first error. Past `deadline` the target is asked to
    /// cancel and the connection is given up (08006).
    fn results(&mut self, sent: c_int, deadline: pg_sys::TimestampTz) -> Result<Rows, RemoteError> {
        if sent == 0 {
            return Err(self.broken());
        }
        loop {
            // SAFETY: a live, non-blocking connection: 1 = more to send, 0 = sent, -1 = failed.
            match unsafe { ffi::PQflush(self.conn) } {
                0 => break,
                1 => {
                    if !self.wait_socket(true, true, deadline) {
                        return Err(self.timed_out());
                    }
                    // SAFETY: as above; reading what came lets libpq go on sending.
                    if unsafe { ffi::PQconsumeInput(self.conn) } == 0 {
                        return Err(self.broken());
                    }
                }
                _ => return Err(self.broken()),
            }
        }
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            // SAFETY: a live connection.
            while unsafe { ffi::PQisBusy(self.conn) } != 0 {
                if !self.wait_socket(true, false, deadline) {
                    return Err(self.timed_out());
                }
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
                Ok(r) => rows = r,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        error.map_or(Ok(rows), Err)
    }

    /// One result: its rows, or the error it carries.
    fn read_result(result: *const ffi::PGresult) -> Result<Rows, RemoteError> {
        // SAFETY: a result libpq returned, not yet cleared; its strings NUL-terminated.
        unsafe {
            match ffi::PQresultStatus(result) {
                ffi::PGRES_COMMAND_OK | ffi::PGRES_EMPTY_QUERY => Ok(Vec::new()),
                ffi::PGRES_TUPLES_OK => {
                    let (n, columns) = (ffi::PQntuples(result), ffi::PQnfields(result));
                    Ok((0..n)
                        .map(|row| {
                            (0..columns)
                                .map(|column| {
                                    (ffi::PQgetisnull(result, row, column) == 0).then(|| {
                                        CStr::from_ptr(ffi::PQgetvalue(result, row, column))
                                            .to_string_lossy()
                                            .into_owned()
                                    })
                                })
                                .collect()
                        })
                        .collect())
                }
                _ => {
                    let state = ffi::PQresultErrorField(result, ffi::PG_DIAG_SQLSTATE);
                    Err(RemoteError {
                        sqlstate: if state.is_null() {
                            "08P01".to_owned()
                        } else {
                            CStr::from_ptr(state).to_string_lossy().into_owned()
                        },
                        message: CStr::from_ptr(ffi::PQresultErrorMessage(result))
                            .to_string_lossy()
                            .trim()
                            .replace('\n', " "),
                    })
                }
            }
        }
    }

    /// The connection failed (08006), with libpq's words.
    fn broken(&self) -> RemoteError {
        RemoteError {
            sqlstate: "08006".to_owned(),
            message: format!(
                "the connection to the target failed: {}",
                self.error_message()
            ),
        }
    }

    /// The deadline passed with a statement in flight: ask the target to cancel it and give the
    /// connection up (08006: its state is unknown).
    fn timed_out(&mut self) -> RemoteError {
        self.cancel_in_flight();
        self.close();
        RemoteError {
            sqlstate: "08006".to_owned(),
            message: "the target did not answer before the run's deadline".to_owned(),
        }
    }

    /// Ask the target to cancel what this connection runs (best effort: libpq's cancel request
    /// is a new connection of its own, which may fail).
    ///
    /// Not yet bounded: `PQcancel` blocks until the target's postmaster answers, which over a
    /// partitioned network is the TCP timeout. Before a run's worker uses this module, it must
    /// send the cancel without blocking (libpq 17's `PQcancelStart`/`PQcancelPoll`, or the
    /// CancelRequest packet on a latch-aware socket); the linked libpq here is Debian's 15.
    fn cancel_in_flight(&mut self) {
        if self.conn.is_null() {
            return;
        }
        // SAFETY: a live connection; the cancel object is freed once.
        unsafe {
            let cancel = ffi::PQgetCancel(self.conn);
            if !cancel.is_null() {
                let mut buffer = [0 as c_char; 256];
                ffi::PQcancel(cancel, buffer.as_mut_ptr(), buffer.len() as c_int);
                ffi::PQfreeCancel(cancel);
            }
        }
    }

    /// Close the connection and give its descriptor back to fd.c (once).
    fn close(&mut self) {
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

/// What a connection runs: SQL text (unnamed), or a statement it prepared, by name.
#[derive(Clone, Copy)]
enum Statement<'a> {
    Text(&'a str),
    Prepared(&'a str),
}

/// `text` for libpq: a zero byte cannot be sent (22021, as PostgreSQL reports it in text).
fn c_string(text: &str) -> Result<CString, RemoteError> {
    CString::new(text).map_err(|_| RemoteError {
        sqlstate: "22021".to_owned(),
        message: "a statement or parameter for the target contains a zero byte".to_owned(),
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
            .execute("SELECT $1::int + 1, NULL::text", &[Some("41")], deadline)
            .unwrap();
        assert_eq!(rows, vec![vec![Some("42".to_owned()), None]]);
        target
            .prepare("add", "SELECT $1::bigint + $2::bigint", deadline)
            .unwrap();
        for i in 0..3 {
            let rows = target
                .execute_prepared("add", &[Some(&i.to_string()), Some("10")], deadline)
                .unwrap();
            assert_eq!(rows[0][0].as_deref(), Some((10 + i).to_string().as_str()));
        }
        // the target's own error, with its SQLSTATE; the connection goes on
        let error = target.execute("SELECT 1 / 0", &[], deadline).unwrap_err();
        assert_eq!(error.sqlstate, "22012");
        assert!(error.message.contains("division by zero"), "{error}");
        let rows = target
            .execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
                deadline,
            )
            .unwrap();
        assert_eq!(rows[0][0].as_deref(), Some("pg_stress test"));
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
                target.execute("SELECT pg_sleep(30)", &[], now() + 60_000_000)
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
