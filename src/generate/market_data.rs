//! `stress.generate_market_data(symbols, start_at, end_at, step, seed)`: OHLCV candles, one row per
//! symbol per step, from a per-symbol random walk with log-normal returns.

use super::bulk::{numeric_datum, text_datum};
use super::model::{NUMERIC_SCALE, SYMBOLS, Symbol, row_rng, to_units};
use super::tables::MARKET_DATA;
use crate::error::{OrRaise, StressError};
use crate::gucs;
use pgrx::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, LogNormal, StandardNormal};
use serde_json::json;

/// Daily volatility of log returns (3%, a calm crypto day).
const DAILY_VOLATILITY: f64 = 0.03;
const US_PER_DAY: f64 = 86_400_000_000.0;
/// Price moves simulated inside each candle, to give it a high and a low.
const SUBSTEPS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candle {
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i64,
}

/// The walk of one symbol: call `next` once per step, in time order.
pub struct Walk {
    rng: Xoshiro256PlusPlus,
    symbol: Symbol,
    price: f64,
    substep_sigma: f64,
    volume: LogNormal<f64>,
}

impl Walk {
    pub fn new(seed: u64, symbol_index: usize, step_us: i64) -> Self {
        let symbol = SYMBOLS[symbol_index];
        let step_sigma = DAILY_VOLATILITY * (step_us as f64 / US_PER_DAY).sqrt();
        // Traded notional per step: about 2 million USDT a day for the top pair, scaled by step.
        let notional = 2e6 / (symbol_index as f64 + 1.0) * step_us as f64 / US_PER_DAY;
        Walk {
            rng: row_rng(seed ^ 0x0C4D_1E00, symbol_index as i64),
            symbol,
            price: symbol.base_price,
            substep_sigma: step_sigma / (SUBSTEPS as f64).sqrt(),
            volume: LogNormal::new(notional.max(1e-6).ln(), 0.5).expect("valid lognormal"),
        }
    }

    pub fn next(&mut self) -> Candle {
        let open = self.price;
        let (mut high, mut low) = (open, open);
        for _ in 0..SUBSTEPS {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            self.price *= (z * self.substep_sigma).exp();
            high = high.max(self.price);
            low = low.min(self.price);
        }
        let tick = self.symbol.tick_decimals;
        let (open, close) = (to_units(open, tick), to_units(self.price, tick));
        // Rounding can cross: keep low ≤ open, close ≤ high.
        let high = to_units(high, tick).max(open).max(close);
        let low = to_units(low, tick).min(open).min(close);
        let volume = to_units(
            self.volume.sample(&mut self.rng) / self.price,
            self.symbol.lot_decimals,
        );
        Candle {
            open,
            high,
            low,
            close,
            volume,
        }
    }
}

/// Appends one candle per symbol per `step` in [start_at, end_at) to `stress_data.market_data`.
pub fn generate_market_data(
    symbols: Option<Vec<Option<String>>>,
    start_at: Option<TimestampWithTimeZone>,
    end_at: Option<TimestampWithTimeZone>,
    step: Option<Interval>,
    seed: Option<i64>,
) -> i64 {
    const F: &str = "generate_market_data";
    let start_at = crate::args::finite_time(F, "start_at", start_at);
    let end_at = crate::args::finite_time(F, "end_at", end_at);
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let seed = crate::args::seed_or_random(seed);
    let indexes = symbol_indexes(symbols.as_deref());
    let (Some(start_at), Some(end_at), Some(step)) = (start_at, end_at, step) else {
        StressError::invalid(F, "start_at, end_at and step must not be NULL", HINT).raise();
    };
    let (start, end) = (
        pg_sys::TimestampTz::from(start_at),
        pg_sys::TimestampTz::from(end_at),
    );
    let step_us = step_micros(step);
    if end <= start {
        StressError::invalid(F, "end_at must be after start_at", HINT).raise();
    }
    let steps = (end - start) / step_us + i64::from((end - start) % step_us != 0);
    let rows = steps.saturating_mul(indexes.len() as i64);
    if rows > crate::args::MAX_ROWS_PER_CALL {
        StressError::invalid(
            F,
            format!(
                "{rows} candles is more than {} in one call",
                crate::args::MAX_ROWS_PER_CALL
            ),
            HINT,
        )
        .raise();
    }

    let schema = gucs::data_schema();
    let relid = MARKET_DATA.ensure(&schema, F);
    let mut write = super::TableWrite::open(&MARKET_DATA, &schema, relid, rows as u64, F);
    let table = crate::postgres::quote::qualified(&schema, MARKET_DATA.name);
    let skipped = write_candles(&mut write, &table, &indexes, seed, start, end, step_us);
    if skipped > 0 {
        pgrx::notice!(
            "{F}: kept {skipped} candles that {table} already had (same symbol and ts), appended the rest"
        );
    }
    let outcome = write.finish(&[]);
    let names: Vec<_> = indexes.iter().map(|&i| SYMBOLS[i].name).collect();
    let parameters = json!({"symbols": names, "start_at": start_at.to_iso_string(), "end_at": end_at.to_iso_string(),
                            "step_seconds": step_us as f64 / 1e6, "seed": seed, "kept_existing": skipped});
    super::record(F, parameters, started_at, &schema, "market_data", &outcome);
    outcome.rows as i64
}

const HINT: &str =
    "See docs/generate.md: symbols (NULL for all), start_at < end_at, a step such as '1 minute'.";

/// The symbols asked for, as indexes into [`SYMBOLS`] (None: all of them); 22023 for a NULL or an
/// unknown one.
fn symbol_indexes(symbols: Option<&[Option<String>]>) -> Vec<usize> {
    const F: &str = "generate_market_data";
    let hint = HINT;
    match symbols {
        None => (0..SYMBOLS.len()).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                let name = name.as_deref().ok_or_else(|| {
                    StressError::invalid(F, "symbols must not contain NULL", hint)
                })?;
                SYMBOLS.iter().position(|s| s.name == name).ok_or_else(|| {
                    let known: Vec<_> = SYMBOLS.iter().map(|s| s.name).collect();
                    StressError::invalid(
                        F,
                        format!("unknown symbol {name}"),
                        format!("Known symbols: {}.", known.join(", ")),
                    )
                })
            })
            .collect::<Result<_, _>>()
            .or_raise(),
    }
}

/// A candle step in µs: positive, without months, at least a second (22023 otherwise).
fn step_micros(step: Interval) -> i64 {
    const F: &str = "generate_market_data";
    if step.months() != 0 || step.days() < 0 || step.micros() < 0 {
        StressError::invalid(
            F,
            "step must be a positive interval without months, e.g. '1 minute'",
            HINT,
        )
        .raise();
    }
    let step_us = step.days() as i64 * US_PER_DAY as i64 + step.micros();
    if step_us < 1_000_000 {
        StressError::invalid(F, "step must be at least 1 second", HINT).raise();
    }
    step_us
}

/// Every symbol's candles, one per step in [start, end). Candles that exist already (the same
/// symbol at the same instant: the primary key) are kept and skipped, so that extending a period,
/// or generating it again, appends only what is missing (read under the write's lock: no other
/// call adds candles meanwhile). Returns how many were skipped.
fn write_candles(
    write: &mut super::TableWrite,
    table: &str,
    indexes: &[usize],
    seed: i64,
    start: pg_sys::TimestampTz,
    end: pg_sys::TimestampTz,
    step_us: i64,
) -> i64 {
    let steps = (end - start) / step_us + i64::from((end - start) % step_us != 0);
    let mut skipped = 0i64;
    for &i in indexes {
        let existing = existing_instants(table, SYMBOLS[i].name, start, end);
        let symbol = text_datum(SYMBOLS[i].name);
        let mut walk = Walk::new(seed as u64, i, step_us);
        for k in 0..steps {
            let c = walk.next();
            let ts = start + k * step_us;
            if existing.contains(&ts) {
                skipped += 1;
                continue;
            }
            write.push(|v, _| {
                v[0] = symbol;
                v[1] = ts.into();
                v[2] = numeric_datum(c.open, NUMERIC_SCALE);
                v[3] = numeric_datum(c.high, NUMERIC_SCALE);
                v[4] = numeric_datum(c.low, NUMERIC_SCALE);
                v[5] = numeric_datum(c.close, NUMERIC_SCALE);
                v[6] = numeric_datum(c.volume, NUMERIC_SCALE);
            });
        }
    }
    skipped
}

/// The instants in [start, end) that `table` has a candle of `symbol` at.
fn existing_instants(
    table: &str,
    symbol: &str,
    start: pg_sys::TimestampTz,
    end: pg_sys::TimestampTz,
) -> std::collections::HashSet<pg_sys::TimestampTz> {
    let (from, to) = (
        TimestampWithTimeZone::try_from(start).expect("a finite start"),
        TimestampWithTimeZone::try_from(end).expect("a finite end"),
    );
    Spi::connect(|client| {
        client
            .select(
                &format!("SELECT ts FROM {table} WHERE symbol = $1 AND ts >= $2 AND ts < $3"),
                None,
                &[symbol.into(), from.into(), to.into()],
            )?
            .map(|row| {
                row.get::<TimestampWithTimeZone>(1)
                    .map(|t| t.map(pg_sys::TimestampTz::from))
            })
            .filter_map(Result::transpose)
            .collect::<Result<std::collections::HashSet<_>, _>>()
    })
    .expect("reading the candles that exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_are_consistent_and_wander() {
        let mut walk = Walk::new(1, 0, 60_000_000);
        let mut last_close: Option<i64> = None;
        let mut closes = Vec::new();
        for _ in 0..10_000 {
            let c = walk.next();
            assert!(
                c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close) && c.low > 0,
                "{c:?}"
            );
            assert!(c.volume > 0);
            if let Some(prev) = last_close {
                // the next candle opens where the last closed (up to rounding)
                assert!((c.open - prev).abs() <= 1_000_000, "{prev} -> {}", c.open);
            }
            last_close = Some(c.close);
            closes.push(c.close as f64);
        }
        // one week of minutes at 3% daily volatility: the price moved, but stayed plausible
        let (min, max) = closes
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &c| (a.min(c), b.max(c)));
        assert!(
            max > min && min > 65_000e8 * 0.5 && max < 65_000e8 * 2.0,
            "{min} {max}"
        );
    }

    #[test]
    fn same_seed_same_walk() {
        let (mut a, mut b) = (Walk::new(5, 3, 60_000_000), Walk::new(5, 3, 60_000_000));
        assert!((0..100).all(|_| a.next() == b.next()));
    }
}
