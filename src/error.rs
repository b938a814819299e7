//! The errors pg_stress raises itself, each with its SQLSTATE and a hint that says what to do.
//! Errors PostgreSQL raises for us (permission denied, undefined table, …) pass through untouched.

use pgrx::PgSqlErrorCode;
use pgrx::pg_sys::elog::PgLogLevel;
use pgrx::pg_sys::panic::ErrorReport;

#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// 22023: an argument out of its domain.
    #[error("{function}: {message}")]
    InvalidParameter {
        function: &'static str,
        message: String,
        hint: String,
    },
    /// 42P16: a table we write to exists with another shape than the one we create.
    #[error("{table} does not have the columns pg_stress writes")]
    TableShape { table: String, detail: String },
    /// 42809: e.g. a checksum of a view or an index.
    #[error("\"{0}\" is not a table, partitioned table or materialized view")]
    WrongObjectType(String),
    /// 42809: a relation of a kind pg_stress does not read or write (a view as a generated table).
    #[error("{message}")]
    WrongKind { message: String, hint: String },
    /// 55000: a materialized view that was never refreshed has no content to digest.
    #[error("materialized view \"{0}\" has not been populated")]
    NotPopulated(String),
    /// 0A000: something we refuse rather than do wrongly.
    #[error("{message}")]
    NotSupported { message: String, hint: String },
    /// 23503: generated rows whose foreign key has no referenced row.
    #[error("{message}")]
    ForeignKeyViolation { message: String, hint: String },
    /// 53000: not enough background worker slots for the workers asked for.
    #[error("{message}")]
    OutOfWorkerSlots { message: String, hint: String },
    /// 42501: e.g. cancelling another role's run.
    #[error("{message}")]
    PermissionDenied { message: String, hint: String },
    /// 55000: a function that needs pg_stress in shared_preload_libraries.
    #[error("stress.{0} needs pg_stress in shared_preload_libraries")]
    NeedsPreload(&'static str),
    /// 25006: something that writes, asked of a hot standby.
    #[error("{message}")]
    ReadOnly { message: String, hint: String },
    /// 25001: a procedure that commits, called where it cannot (inside a transaction block).
    #[error("{message}")]
    InTransactionBlock { message: String, hint: String },
    /// 57000: a background worker of this call stopped before its work was done.
    #[error("{message}")]
    WorkerLost { message: String, hint: String },
    /// Reaching a load target (postgres::libpq): 22023 an unreadable connection string, 08001
    /// unreachable, 2F003 no password, 53000 no file descriptor left.
    #[error("{message}")]
    Target {
        code: PgSqlErrorCode,
        message: String,
        detail: Option<String>,
        hint: String,
    },
}

/// An error code's five characters, as a client sees it ("40P01"): PostgreSQL packs them six
/// bits each (PGUNSIXBIT).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let code = code as i32;
    (0..5)
        .map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

impl StressError {
    pub fn invalid(
        function: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        StressError::InvalidParameter {
            function,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            StressError::InvalidParameter { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            StressError::TableShape { .. } => PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            StressError::WrongObjectType(_) | StressError::WrongKind { .. } => {
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE
            }
            StressError::NotPopulated(_) | StressError::NeedsPreload(_) => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            StressError::NotSupported { .. } => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            StressError::ForeignKeyViolation { .. } => {
                PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION
            }
            StressError::OutOfWorkerSlots { .. } => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            StressError::WorkerLost { .. } => PgSqlErrorCode::ERRCODE_OPERATOR_INTERVENTION,
            StressError::ReadOnly { .. } => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            StressError::InTransactionBlock { .. } => {
                PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION
            }
            StressError::PermissionDenied { .. } => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            StressError::Target { code, .. } => *code,
        }
    }

    /// Raise as a PostgreSQL ERROR; never returns.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_stress");
        match &self {
            StressError::InvalidParameter { hint, .. }
            | StressError::NotSupported { hint, .. }
            | StressError::ForeignKeyViolation { hint, .. }
            | StressError::PermissionDenied { hint, .. }
            | StressError::OutOfWorkerSlots { hint, .. }
            | StressError::WorkerLost { hint, .. }
            | StressError::ReadOnly { hint, .. }
            | StressError::InTransactionBlock { hint, .. }
            | StressError::WrongKind { hint, .. }
                if !hint.is_empty() =>
            {
                report = report.set_hint(hint.clone());
            }
            StressError::NotPopulated(_) => {
                report = report.set_hint("Use the REFRESH MATERIALIZED VIEW command.");
            }
            StressError::NeedsPreload(_) => {
                report = report.set_detail("Load runs keep their state in shared memory, which is set up when the server starts.")
                    .set_hint("Add pg_stress to shared_preload_libraries (e.g. ALTER SYSTEM SET shared_preload_libraries = 'pg_stress') and restart PostgreSQL.");
            }
            StressError::Target { detail, hint, .. } => {
                if let Some(detail) = detail {
                    report = report.set_detail(detail.clone());
                }
                report = report.set_hint(hint.clone());
            }
            StressError::TableShape { detail, .. } => {
                report = report.set_detail(detail.clone()).set_hint(
                    "Drop or rename the table, or point stress.data_schema at another schema.",
                );
            }
            _ => {}
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

/// `Result::unwrap_or_raise` for our own errors.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, StressError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| e.raise())
    }
}
