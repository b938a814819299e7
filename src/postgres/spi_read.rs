//! Read-only queries through SPI that leave the transaction without a transaction id.
//!
//! pgrx's `Spi::get_one` and `SpiClient::update` "mark the transaction mutable": they assign it a
//! transaction id, as a write would. A function that wants to know whether its caller's transaction
//! has written (`runs::control`'s warning) reads through these before it asks.

use pgrx::datum::{FromDatum, IntoDatum};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// The first column of the first row of a read-only `query` (None: no row, or NULL).
pub fn one<T: FromDatum + IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> SpiResult<Option<T>> {
    Spi::connect(|client| {
        let table = client.select(query, Some(1), args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
}

/// Like [`one`], but under a snapshot taken now: it sees what other sessions committed since this
/// statement began (what a run's workers recorded, or the primary's record a standby just replayed),
/// whatever the caller's isolation level. Read-only SPI otherwise reads under the statement's own.
pub fn latest<T: FromDatum + IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> SpiResult<Option<T>> {
    struct Pushed;
    impl Drop for Pushed {
        fn drop(&mut self) {
            // (on an error, the transaction's abort pops it)
            if !std::thread::panicking() {
                // SAFETY: the snapshot pushed below is the active one again: the query between
                // popped whatever it pushed.
                unsafe { pg_sys::PopActiveSnapshot() };
            }
        }
    }
    // SAFETY: in a transaction (the caller's statement); the guard pops it on return.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let _pushed = Pushed;
    one(query, args)
}

/// The first column of the first row of `statement`, a utility statement that writes nothing
/// (EXPLAIN), which read-only SPI refuses ("not allowed in a non-volatile function"): executed
/// read-write, but without asking for a transaction id.
pub fn one_utility<T: FromDatum + IntoDatum>(statement: &str) -> Result<Option<T>, String> {
    let sql = std::ffi::CString::new(statement).map_err(|e| e.to_string())?;
    // SAFETY: SPI is connected for the closure's length; SPI_tuptable and SPI_processed are what
    // the SPI_execute just before set, read before any other SPI call.
    Spi::connect(|_client| unsafe {
        let rc = pg_sys::SPI_execute(sql.as_ptr(), false, 1);
        if rc < 0 {
            return Err(format!("SPI_execute failed: {rc}"));
        }
        let table = pg_sys::SPI_tuptable;
        if table.is_null() || pg_sys::SPI_processed == 0 {
            return Ok(None);
        }
        let tuple = *(*table).vals;
        let desc = (*table).tupdesc;
        let mut is_null = false;
        let datum = pg_sys::SPI_getbinval(tuple, desc, 1, &mut is_null);
        // (converted before SPI_finish frees the tuple: T owns its value)
        Ok(T::from_polymorphic_datum(
            datum,
            is_null,
            pg_sys::SPI_gettypeid(desc, 1),
        ))
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn a_read_assigns_no_transaction_id() {
        let seconds: f64 = super::one(
            "SELECT extract(epoch FROM $1)::float8",
            &[Interval::from_seconds(90.0).into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(seconds, 90.0);
        // (a #[pg_test] runs in a transaction that has written nothing yet)
        assert_eq!(
            crate::postgres::backend::transaction_id(),
            pg_sys::InvalidTransactionId
        );
        assert_eq!(
            super::one::<i32>("SELECT 1 WHERE false", &[]).unwrap(),
            None
        );
    }
}
