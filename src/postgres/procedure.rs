//! Procedures that commit: long work (a load run, a series of runs, a replay) that must hold no
//! snapshot and no transaction id while it waits. PostgreSQL's way is a procedure called with
//! `CALL` outside a transaction block, which may COMMIT as it goes (as pg_partman's
//! `run_maintenance_proc`); between its commits this backend shows no `backend_xid` and no
//! `backend_xmin`, so nothing the run kills is kept from being pruned on its account.
//!
//! pgrx declares functions only, so the procedures are C entry points of our own ([`procedure!`])
//! with SQL from `extension_sql!`; [`Call`] is what their bodies use.

use crate::error::StressError;
use pgrx::datum::{FromDatum, IntoDatum};
use pgrx::pg_sys;

/// A procedure's call in progress, in a non-atomic context (so it may commit).
pub struct Call {
    fcinfo: pg_sys::FunctionCallInfo,
}

impl Call {
    /// The call behind `fcinfo`; ERROR 25001 when it cannot commit (CALL inside BEGIN … COMMIT,
    /// or from a function), with `hint` saying what to do instead.
    ///
    /// # Safety
    /// `fcinfo` is the call's own, from PostgreSQL's function manager.
    pub unsafe fn enter(fcinfo: pg_sys::FunctionCallInfo, name: &str, hint: &str) -> Call {
        // SAFETY: fcinfo is valid for the call; context is either NULL or a Node.
        let non_atomic = unsafe {
            let context = (*fcinfo).context;
            !context.is_null()
                && (*context).type_ == pg_sys::NodeTag::T_CallContext
                && !(*(context as *mut pg_sys::CallContext)).atomic
        };
        // SAFETY: IsSubTransaction reads this backend's transaction state, which exists in a call.
        if !non_atomic || unsafe { pg_sys::IsSubTransaction() } {
            StressError::InTransactionBlock {
                message: format!(
                    "CALL stress.{name}(…) cannot run inside a transaction block: it commits while it waits, so that it holds no snapshot"
                ),
                hint: hint.to_owned(),
            }
            .raise();
        }
        Call { fcinfo }
    }

    /// Argument `n` (None: NULL).
    pub fn arg<T: FromDatum>(&self, n: usize) -> Option<T> {
        // SAFETY: fcinfo is the call's; n is checked against the arguments PostgreSQL passed, and
        // T is the type the procedure's SQL declares for argument n (its SQL and its body are
        // written side by side in api/).
        unsafe {
            assert!(
                n < (*self.fcinfo).nargs as usize,
                "argument {n} of a procedure"
            );
            pgrx::fcinfo::pg_getarg::<T>(self.fcinfo, n)
        }
    }

    /// Argument `n`, which the procedure's SQL gives a default: NULL is 22023 naming it.
    pub fn required<T: FromDatum>(&self, function: &'static str, n: usize, name: &str) -> T {
        self.arg(n).unwrap_or_else(|| {
            StressError::invalid(
                function,
                format!("{name} must not be NULL"),
                format!("Leave {name} out for its default."),
            )
            .raise()
        })
    }

    /// Commit what this call did so far and start a new transaction, which holds no snapshot
    /// and no transaction id until something reads or writes again.
    pub fn commit(&self) {
        // SAFETY: the call is non-atomic and not in a subtransaction (checked by `enter`), which is
        // what SPI_commit needs; nothing of ours holds an active snapshot across this call (it
        // pops the portal's own). The memory context in use is the call's, which survives.
        unsafe {
            let rc = pg_sys::SPI_connect_ext(pg_sys::SPI_OPT_NONATOMIC as i32);
            if rc != pg_sys::SPI_OK_CONNECT as i32 {
                pgrx::error!("SPI_connect_ext failed: {rc}");
            }
            pg_sys::SPI_commit();
            pg_sys::SPI_finish();
        }
    }

    /// The call's answer: one row of its INOUT parameters, in their order.
    pub fn row(self, values: Vec<Option<pg_sys::Datum>>) -> pg_sys::Datum {
        // SAFETY: the procedure's SQL declares INOUT parameters, so its result type is a record
        // whose descriptor get_call_result_type builds from them; `values` has one entry per
        // column (checked), each of the column's type (the bodies build them with IntoDatum).
        unsafe {
            let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
            let kind = pg_sys::get_call_result_type(self.fcinfo, std::ptr::null_mut(), &mut desc);
            if kind != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE || desc.is_null() {
                pgrx::error!("a pg_stress procedure was declared without INOUT parameters");
            }
            let desc = pg_sys::BlessTupleDesc(desc);
            let natts = (*desc).natts as usize;
            assert_eq!(natts, values.len(), "the procedure's columns and its row");
            let mut datums: Vec<pg_sys::Datum> = values
                .iter()
                .map(|v| v.unwrap_or(pg_sys::Datum::from(0)))
                .collect();
            let mut nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
            let tuple = pg_sys::heap_form_tuple(desc, datums.as_mut_ptr(), nulls.as_mut_ptr());
            (*self.fcinfo).isnull = false;
            pg_sys::Datum::from((*tuple).t_data)
        }
    }
}

/// One column of a procedure's row.
pub fn value<T: IntoDatum>(v: T) -> Option<pg_sys::Datum> {
    v.into_datum()
}

/// A procedure's C entry point `$symbol` (with its V1 info function) running `$body(call)`, which
/// returns the row.
#[macro_export]
macro_rules! procedure {
    ($symbol:ident, $finfo:ident, $name:literal, $hint:expr, $body:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[::pgrx::pg_guard]
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            let (name, hint): (&str, &str) = ($name, $hint);
            // SAFETY: PostgreSQL calls this through the function manager with the call's fcinfo.
            let call = unsafe { $crate::postgres::procedure::Call::enter(fcinfo, name, hint) };
            let body: fn($crate::postgres::procedure::Call) -> ::pgrx::pg_sys::Datum = $body;
            body(call)
        }
    };
}
