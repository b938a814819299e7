//! `stress.generate_positions()`: each account's net position per symbol, exactly what its trades
//! imply. Recomputed from scratch on every call (the table is emptied first).
//!
//! quantity = Σ BUY quantity − Σ SELL quantity; avg_price = Σ quantity·price / Σ quantity over all
//! fills (VWAP, rounded half up to 8 decimals); updated_at = the last fill. Computed in exact
//! fixed-point integers from one heap scan of the trades, faster than numeric aggregation in SQL.

use super::bulk::{numeric_datum, numeric_units, text_datum};
use super::model::NUMERIC_SCALE;
use super::tables::{POSITIONS, TRADES};
use crate::error::{OrRaise, StressError};
use crate::gucs;
use crate::postgres::quote::qualified;
use pgrx::PgRelation;
use pgrx::prelude::*;
use serde_json::json;
use std::collections::HashMap;

/// Running totals of one (account, symbol).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PositionTotals {
    /// net quantity, 10^-8 units
    pub net: i128,
    /// Σ quantity, 10^-8 units
    pub volume: i128,
    /// Σ quantity·price, 10^-16 units
    pub notional: i128,
    pub last_fill: i64,
}

impl PositionTotals {
    pub fn add(&mut self, buy: bool, quantity: i128, price: i128, at: i64) {
        self.net += if buy { quantity } else { -quantity };
        self.volume += quantity;
        self.notional += quantity * price;
        self.last_fill = self.last_fill.max(at);
    }

    /// VWAP in 10^-8 units, rounded half up.
    pub fn avg_price(&self) -> i128 {
        (2 * self.notional + self.volume) / (2 * self.volume)
    }
}

pub fn generate_positions() -> i64 {
    const F: &str = "generate_positions";
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let call_started = std::time::Instant::now();
    let schema = gucs::data_schema();
    let trades = qualified(&schema, TRADES.name);
    let Some(trades_oid) = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT to_regclass($1)::oid",
        &[trades.as_str().into()],
    )
    .unwrap() else {
        StressError::invalid(
            F,
            format!("{schema}.trades does not exist"),
            "Generate trades first: SELECT stress.generate_trades(5000000);",
        )
        .raise();
    };
    let trades_display = format!("{schema}.trades");
    crate::postgres::privilege::check_scan_source(trades_oid, &trades_display);
    crate::postgres::privilege::require(trades_oid, pg_sys::ACL_SELECT, &trades_display);
    crate::postgres::privilege::require_share_lock(trades_oid, &trades_display);
    let relid = POSITIONS.ensure(&schema, F);
    crate::postgres::privilege::check_bulk_target(relid, &format!("{schema}.positions"));
    Spi::run(&format!("TRUNCATE {}", qualified(&schema, POSITIONS.name)))
        .expect("emptying positions");

    // SHARE: no trade may be added while we add them up.
    // SAFETY: trades_oid is the data schema's trades table, looked up just above; it is locked
    // SHARE here, checked for kind, privilege and shape before the heap is read.
    let totals = unsafe {
        let rel = PgRelation::with_lock(trades_oid, pg_sys::ShareLock as pg_sys::LOCKMODE);
        let display = format!("{schema}.trades");
        crate::integrity::check_can_read(&rel, &display);
        TRADES.check_shape(rel.as_ptr(), &display).or_raise();
        sum_trades(&rel)
    };
    let (totals, symbol_names) = totals;
    // Built in the call's context: they outlive every batch.
    let symbol_datums: Vec<_> = symbol_names.iter().map(|s| text_datum(s)).collect();
    let mut keys: Vec<_> = totals.keys().copied().collect();
    keys.sort_by(|a, b| (a.0, &symbol_names[a.1]).cmp(&(b.0, &symbol_names[b.1])));
    let mut write = super::TableWrite::open(&POSITIONS, &schema, relid, keys.len() as u64, F);
    for key in &keys {
        let t = totals[key];
        let symbol = symbol_datums[key.1];
        write.push(|v, _| {
            v[0] = key.0.into();
            v[1] = symbol;
            v[2] = numeric_datum(t.net as i64, NUMERIC_SCALE);
            v[3] = numeric_datum(t.avg_price() as i64, NUMERIC_SCALE);
            v[4] = t.last_fill.into();
        });
    }
    // account_id comes from trades, whose own foreign key (when present) vouches for it.
    let trusted: &[&str] = if super::fk_holds_on(&trades, "account_id") {
        &["account_id"]
    } else {
        &[]
    };
    let mut outcome = write.finish(trusted);
    // The measure of this generator is the whole pass, adding up included, not only the write.
    outcome.seconds = call_started.elapsed().as_secs_f64();
    super::record(F, json!({}), started_at, &schema, "positions", &outcome);
    outcome.rows as i64
}

/// Totals per (account, index into the symbol names), and the symbol names.
type Totals = (HashMap<(i64, usize), PositionTotals>, Vec<String>);

/// One pass over the trades heap: totals per (account, symbol).
unsafe fn sum_trades(rel: &PgRelation) -> Totals {
    let mut totals: HashMap<(i64, usize), PositionTotals> = HashMap::new();
    let mut symbols: Vec<String> = Vec::new();
    // SAFETY: the caller's contract: rel is open and locked (SHARE); check_shape has made sure its
    // first nine columns are the ones read here.
    unsafe {
        crate::postgres::scan::for_each_row(rel.as_ptr(), |v, nulls| {
            // (check_shape insists on NOT NULL columns; a row with a NULL cannot be added up anyway)
            if nulls[..9].iter().any(|&n| n) {
                return;
            }
            let account = v[2].value() as i64;
            let buy = crate::postgres::datum::with_varlena_bytes(v[4], |side| side == b"BUY");
            let quantity = numeric_units(v[5]).unwrap_or(0);
            let price = numeric_units(v[6]).unwrap_or(0);
            let at = v[8].value() as i64;
            // A handful of symbols: a linear search beats hashing the string.
            let symbol = crate::postgres::datum::with_varlena_bytes(v[3], |name| {
                symbols
                    .iter()
                    .position(|s| s.as_bytes() == name)
                    .unwrap_or_else(|| {
                        symbols.push(String::from_utf8_lossy(name).into_owned());
                        symbols.len() - 1
                    })
            });
            totals
                .entry((account, symbol))
                .or_default()
                .add(buy, quantity, price, at);
        });
    }
    (totals, symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vwap_rounds_half_up() {
        let mut t = PositionTotals::default();
        t.add(true, 100_000_000, 300_000_000, 5); // 1 @ 3
        t.add(false, 200_000_000, 150_000_001, 9); // 2 @ 1.50000001
        assert_eq!(t.net, -100_000_000);
        assert_eq!(t.volume, 300_000_000);
        // (3 + 3.00000002) / 3 = 2.000000006… → 2.00000001
        assert_eq!(t.avg_price(), 200_000_001);
        assert_eq!(t.last_fill, 9);
    }
}
