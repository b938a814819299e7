//! The trading model: what one generated row *is*, as plain Rust values.
//!
//! Nothing here touches PostgreSQL, so the realism (skewed symbols, log-normal prices, peak hours) and
//! the determinism (row = f(seed, id)) can be unit-tested without a server. The bulk writer turns these
//! rows into heap tuples.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, LogNormal, Zipf};

use super::distribution::{self, Dist};

/// Fixed-point scale of every numeric column we write: `numeric(20,8)`, so values carry 10^-8 units.
pub const NUMERIC_SCALE: i32 = 8;
#[cfg(test)]
const UNITS_PER_ONE: f64 = 100_000_000.0;

/// 2025-01-01 00:00:00 UTC as a `timestamptz` datum: where generated activity starts by default
/// (a fixed instant, so the same seed gives the same rows on any day).
pub const DEFAULT_START: i64 = 789_004_800_000_000;
pub const US_PER_HOUR: i64 = 3_600_000_000;
pub const US_PER_DAY: i64 = 24 * US_PER_HOUR;

/// A traded pair. `base_price` is where its log-normal price distribution is centred; `tick` and `lot`
/// are decimal places of price and quantity, as an exchange would round them.
#[derive(Debug, Clone, Copy)]
pub struct Symbol {
    pub name: &'static str,
    pub base_price: f64,
    pub tick_decimals: u32,
    pub lot_decimals: u32,
}

/// Ordered by popularity: the zipf rank of a symbol is its index + 1, so BTC/USDT is the hottest and
/// the tail (DOT/USDT and after) is traded far less.
pub const SYMBOLS: &[Symbol] = &[
    sym("BTC/USDT", 65_000.0, 2, 5),
    sym("ETH/USDT", 3_400.0, 2, 4),
    sym("SOL/USDT", 150.0, 2, 2),
    sym("BNB/USDT", 580.0, 2, 3),
    sym("XRP/USDT", 0.52, 4, 0),
    sym("DOGE/USDT", 0.15, 5, 0),
    sym("ADA/USDT", 0.45, 4, 1),
    sym("AVAX/USDT", 35.0, 2, 2),
    sym("LINK/USDT", 15.0, 3, 2),
    sym("DOT/USDT", 7.0, 3, 2),
    sym("LTC/USDT", 80.0, 2, 3),
    sym("TRX/USDT", 0.12, 5, 0),
    sym("ATOM/USDT", 9.0, 3, 2),
    sym("UNI/USDT", 8.0, 3, 2),
    sym("NEAR/USDT", 5.0, 3, 1),
    sym("XLM/USDT", 0.11, 5, 0),
    sym("ETC/USDT", 25.0, 2, 2),
    sym("FIL/USDT", 5.0, 3, 2),
    sym("APT/USDT", 9.0, 3, 2),
    sym("ARB/USDT", 1.1, 4, 1),
];

const fn sym(name: &'static str, base_price: f64, tick_decimals: u32, lot_decimals: u32) -> Symbol {
    Symbol {
        name,
        base_price,
        tick_decimals,
        lot_decimals,
    }
}

pub const SIDES: &[&str] = &["BUY", "SELL"];
const SIDE_WEIGHTS: &[f64] = &[0.52, 0.48];
pub const ORDER_TYPES: &[&str] = &["LIMIT", "MARKET", "STOP"];
const ORDER_TYPE_WEIGHTS: &[f64] = &[0.70, 0.25, 0.05];
pub const STATUSES: &[&str] = &["FILLED", "CANCELLED", "OPEN", "PARTIAL", "REJECTED"];
const STATUS_WEIGHTS: &[f64] = &[0.55, 0.20, 0.15, 0.07, 0.03];

/// Peak hours (UTC) weigh this many times more than an ordinary daytime hour.
const PEAK_WEIGHT: f64 = 4.0;
/// Night hours (00–05 UTC) weigh this much of an ordinary hour.
const NIGHT_WEIGHT: f64 = 0.25;

/// Why a model could not be built from the caller's parameters; the SQL layer turns these into 22023.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("accounts must be at least 1, got {0}")]
    Accounts(i64),
    #[error("days must be between 1 and 36500, got {0}")]
    Days(i32),
    #[error("peak_hours must be hours between 0 and 23, got {0}")]
    PeakHour(i32),
}

/// Everything needed to generate an order; built once per call, then shared read-only.
pub struct OrderModel {
    seed: u64,
    accounts: u64,
    start_us: i64,
    days: i64,
    /// Zipf(n = number of symbols, s = 1.1) as exact weights: 20 ranks are a table lookup, cheaper
    /// than rejection sampling.
    symbol: WeightedIndex<f64>,
    account_rank: Zipf<f64>,
    prices: Vec<LogNormal<f64>>,
    notional_usd: LogNormal<f64>,
    time_of_day: TimeOfDay,
    /// Per-column distributions a caller set (see [`OrderModel::apply_distribution`]).
    overrides: Overrides,
    side: WeightedIndex<f64>,
    order_type: WeightedIndex<f64>,
    status: WeightedIndex<f64>,
}

/// When in the day orders are placed.
enum TimeOfDay {
    /// Hours weighted: peak hours ×4, night hours ×¼ (the default).
    Weighted(WeightedIndex<f64>),
    /// Evenly over the day.
    Uniform,
    /// Clustered around each peak hour's middle, normally with this standard deviation (µs).
    Normal { peaks: Vec<i32>, stddev_us: f64 },
}

#[derive(Default)]
struct Overrides {
    symbol: Option<Dist>,
    account_id: Option<Dist>,
    price: Option<Dist>,
    quantity: Option<Dist>,
}

/// Columns of orders whose distribution a caller may set.
pub const ORDER_DISTRIBUTION_COLUMNS: &[&str] =
    &["symbol", "account_id", "price", "quantity", "created_at"];

/// One order, as fixed-point integers and indexes into the model's tables, so that turning it into
/// datums needs no parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub account_id: i64,
    pub symbol: usize,
    pub side: usize,
    pub order_type: usize,
    pub status: usize,
    /// in 10^-8 units
    pub quantity: i64,
    /// in 10^-8 units
    pub price: i64,
    /// microseconds since 2000-01-01 UTC (a PostgreSQL `timestamptz` datum)
    pub created_at: i64,
}

impl OrderModel {
    /// `start` is the first instant of the generated period (a `timestamptz` datum: microseconds since
    /// 2000-01-01 UTC); rows fall in `[start, start + days)`, weighted towards `peak_hours` (UTC).
    pub fn new(
        seed: u64,
        accounts: i64,
        start: i64,
        days: i32,
        peak_hours: &[i32],
    ) -> Result<Self, ModelError> {
        if accounts < 1 {
            return Err(ModelError::Accounts(accounts));
        }
        if !(1..=36_500).contains(&days) {
            return Err(ModelError::Days(days));
        }
        if let Some(&h) = peak_hours.iter().find(|h| !(0..=23).contains(*h)) {
            return Err(ModelError::PeakHour(h));
        }
        let hour_weights = hour_weights(peak_hours);
        // Prices wander ~3% around their base; order sizes span cents to six figures of notional.
        let prices = SYMBOLS
            .iter()
            .map(|s| LogNormal::new(s.base_price.ln(), 0.03).expect("valid lognormal"))
            .collect();
        Ok(OrderModel {
            seed,
            accounts: accounts as u64,
            start_us: start,
            days: days as i64,
            symbol: WeightedIndex::new((1..=SYMBOLS.len()).map(|rank| (rank as f64).powf(-1.1)))
                .expect("valid weights"),
            account_rank: Zipf::new(accounts as f64, 0.8).expect("valid zipf"),
            prices,
            notional_usd: LogNormal::new(500f64.ln(), 1.3).expect("valid lognormal"),
            time_of_day: TimeOfDay::Weighted(
                WeightedIndex::new(hour_weights).expect("valid weights"),
            ),
            overrides: Overrides::default(),
            side: WeightedIndex::new(SIDE_WEIGHTS).expect("valid weights"),
            order_type: WeightedIndex::new(ORDER_TYPE_WEIGHTS).expect("valid weights"),
            status: WeightedIndex::new(STATUS_WEIGHTS).expect("valid weights"),
        })
    }

    /// Apply a caller's per-column distributions (see [`super::distribution`]):
    /// - `symbol`: rank 1–20 by popularity (zipf's `n` defaults to 20);
    /// - `account_id`: the id, clamped to 1…accounts (zipf's `n` defaults to accounts);
    /// - `price`: a multiplier of the symbol's base price (e.g. normal, mean 1, stddev 0.02);
    /// - `quantity`: in whole units of the symbol, rounded to its lot (at least one lot);
    /// - `created_at`: `uniform`, or `normal` around `peak_hours` (`stddev_hours`, default 1), or
    ///   only `peak_hours` for the default weighting.
    pub fn apply_distribution(&mut self, spec: &serde_json::Value) -> Result<(), String> {
        let columns = distribution::columns(spec, ORDER_DISTRIBUTION_COLUMNS)?;
        for (column, spec) in columns {
            let dist = |n| Dist::parse(column, spec, n);
            match column.as_str() {
                "symbol" => self.overrides.symbol = Some(dist(Some(SYMBOLS.len() as f64))?),
                "account_id" => self.overrides.account_id = Some(dist(Some(self.accounts as f64))?),
                "price" => self.overrides.price = Some(dist(None)?),
                "quantity" => self.overrides.quantity = Some(dist(None)?),
                _ => self.time_of_day = time_of_day(spec)?,
            }
        }
        Ok(())
    }

    /// The order with this id. A pure function of (seed, id): whichever batch, worker or call
    /// generates id 42 produces the same row.
    pub fn order(&self, id: i64) -> Order {
        let mut rng = row_rng(self.seed, id);
        let o = &self.overrides;
        let symbol = match &o.symbol {
            Some(d) => (d.sample(&mut rng).round().clamp(1.0, SYMBOLS.len() as f64) as usize) - 1,
            None => self.symbol.sample(&mut rng),
        };
        let sym = &SYMBOLS[symbol];
        let price_whole = match &o.price {
            Some(d) => sym.base_price * d.sample(&mut rng).max(1e-9),
            None => self.prices[symbol].sample(&mut rng),
        };
        let price = to_units(price_whole, sym.tick_decimals);
        let quantity_whole = match &o.quantity {
            Some(d) => d.sample(&mut rng).max(0.0),
            None => self.notional_usd.sample(&mut rng).min(5_000_000.0) / price_whole,
        };
        let quantity = to_units(quantity_whole.min(1e11), sym.lot_decimals);
        let account_id = match &o.account_id {
            Some(d) => d.sample(&mut rng).round().clamp(1.0, self.accounts as f64) as i64,
            None => (self.account_rank.sample(&mut rng) as u64).min(self.accounts) as i64,
        };
        let day = rng.random_range(0..self.days);
        let in_day = match &self.time_of_day {
            TimeOfDay::Weighted(hours) => {
                hours.sample(&mut rng) as i64 * US_PER_HOUR + rng.random_range(0..US_PER_HOUR)
            }
            TimeOfDay::Uniform => rng.random_range(0..US_PER_DAY),
            TimeOfDay::Normal { peaks, stddev_us } => {
                let peak = peaks[rng.random_range(0..peaks.len())] as f64 + 0.5;
                let z: f64 = rand_distr::StandardNormal.sample(&mut rng);
                ((peak * US_PER_HOUR as f64 + z * stddev_us) as i64).rem_euclid(US_PER_DAY)
            }
        };
        Order {
            id,
            account_id,
            symbol,
            side: self.side.sample(&mut rng),
            order_type: self.order_type.sample(&mut rng),
            status: self.status.sample(&mut rng),
            quantity,
            price,
            created_at: self.start_us + day * US_PER_DAY + in_day,
        }
    }
}

/// The time-of-day spec of `created_at`.
fn time_of_day(spec: &serde_json::Value) -> Result<TimeOfDay, String> {
    let peaks = distribution::peak_hours("created_at", spec)?;
    match spec.get("distribution").and_then(serde_json::Value::as_str) {
        Some("uniform") => Ok(TimeOfDay::Uniform),
        Some("normal") => {
            let peaks = peaks
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec![9, 10, 14, 15]);
            let hours = spec
                .get("stddev_hours")
                .map_or(Some(1.0), serde_json::Value::as_f64);
            match hours {
                Some(h) if h > 0.0 && h <= 24.0 => Ok(TimeOfDay::Normal {
                    peaks,
                    stddev_us: h * US_PER_HOUR as f64,
                }),
                _ => Err(
                    "column created_at: parameter \"stddev_hours\" of normal must be in (0, 24]"
                        .into(),
                ),
            }
        }
        None => Ok(TimeOfDay::Weighted(
            WeightedIndex::new(hour_weights(&peaks.unwrap_or_default())).expect("valid weights"),
        )),
        Some(other) => Err(format!(
            "column created_at: distribution \"{other}\" does not apply to a time of day; use uniform or normal (with peak_hours)"
        )),
    }
}

/// Hour weights: peak hours ×4, night hours (00–05) ×¼, the rest ×1.
fn hour_weights(peak_hours: &[i32]) -> Vec<f64> {
    (0..24)
        .map(|h| {
            if peak_hours.contains(&h) {
                PEAK_WEIGHT
            } else if h < 6 {
                NIGHT_WEIGHT
            } else {
                1.0
            }
        })
        .collect()
}

/// A generator private to one row, seeded from the call's seed and the row id. splitmix64 spreads
/// neighbouring ids over unrelated states.
pub fn row_rng(seed: u64, id: i64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed ^ splitmix64(id as u64)))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `value` (in whole units) rounded to `decimals` places and expressed in 10^-8 units; never below
/// one tick or lot, since an exchange has no zero prices or sizes.
pub fn to_units(value: f64, decimals: u32) -> i64 {
    let steps = (value * 10f64.powi(decimals as i32)).round().max(1.0) as i64;
    steps * 10i64.pow(NUMERIC_SCALE as u32 - decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = DEFAULT_START;

    fn model() -> OrderModel {
        OrderModel::new(42, 10_000, START, 30, &[9, 10, 14, 15]).unwrap()
    }

    #[test]
    fn same_seed_same_row_whatever_the_order() {
        let m = model();
        let forward: Vec<Order> = (1..=1000).map(|id| m.order(id)).collect();
        let backward: Vec<Order> = (1..=1000).rev().map(|id| m.order(id)).collect();
        assert!(forward.iter().eq(backward.iter().rev()));
        let other = OrderModel::new(43, 10_000, START, 30, &[9]).unwrap();
        assert_ne!(m.order(1), other.order(1));
    }

    #[test]
    fn symbols_are_skewed_towards_btc() {
        let m = model();
        let mut counts = vec![0u32; SYMBOLS.len()];
        for id in 1..=100_000 {
            counts[m.order(id).symbol] += 1;
        }
        let dot = SYMBOLS.iter().position(|s| s.name == "DOT/USDT").unwrap();
        assert!(
            counts[0] > 5 * counts[dot],
            "BTC {} vs DOT {}",
            counts[0],
            counts[dot]
        );
        assert!(counts.windows(2).take(3).all(|w| w[0] > w[1]), "{counts:?}");
    }

    #[test]
    fn values_stay_in_domain() {
        let m = model();
        let start = START;
        for id in 1..=50_000 {
            let o = m.order(id);
            assert!(o.quantity > 0 && o.price > 0, "{o:?}");
            assert!((1..=10_000).contains(&o.account_id));
            assert!(o.created_at >= start && o.created_at < start + 30 * US_PER_DAY);
            let base = SYMBOLS[o.symbol].base_price * UNITS_PER_ONE;
            assert!(
                (o.price as f64) > base * 0.7 && (o.price as f64) < base * 1.3,
                "{o:?}"
            );
        }
    }

    #[test]
    fn peak_hours_are_busier() {
        let m = model();
        let mut per_hour = [0u32; 24];
        for id in 1..=100_000 {
            let o = m.order(id);
            per_hour[((o.created_at.rem_euclid(US_PER_DAY)) / US_PER_HOUR) as usize] += 1;
        }
        assert!(per_hour[9] > 3 * per_hour[12], "{per_hour:?}");
        assert!(per_hour[12] > 2 * per_hour[3], "{per_hour:?}");
    }

    #[test]
    fn distributions_override_columns() {
        let mut m = model();
        m.apply_distribution(&serde_json::json!({
            "quantity": {"distribution": "normal", "mean": 2, "stddev": 0.5},
            "account_id": {"distribution": "uniform", "min": 1, "max": 10000},
            "created_at": {"distribution": "normal", "peak_hours": [12], "stddev_hours": 0.5},
        }))
        .unwrap();
        let orders: Vec<_> = (1..=50_000).map(|id| m.order(id)).collect();
        let qty: Vec<f64> = orders.iter().map(|o| o.quantity as f64 / 1e8).collect();
        let mean = qty.iter().sum::<f64>() / qty.len() as f64;
        assert!((mean - 2.0).abs() < 0.02, "{mean}");
        let near_noon = orders
            .iter()
            .filter(|o| {
                (11 * US_PER_HOUR..14 * US_PER_HOUR).contains(&o.created_at.rem_euclid(US_PER_DAY))
            })
            .count();
        // within ±1.5 h (3 σ) of 12:30: nearly all
        assert!(near_noon as f64 > 0.99 * orders.len() as f64, "{near_noon}");
        let low_accounts = orders.iter().filter(|o| o.account_id <= 5000).count();
        assert!(
            (0.48..0.52).contains(&(low_accounts as f64 / 50_000.0)),
            "{low_accounts}"
        );
        assert!(
            m.apply_distribution(&serde_json::json!({"side": {}}))
                .unwrap_err()
                .contains("column side")
        );
        assert!(
            m.apply_distribution(
                &serde_json::json!({"created_at": {"distribution": "poisson", "lambda": 1}})
            )
            .unwrap_err()
            .contains("created_at")
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert_eq!(
            OrderModel::new(1, 0, 0, 30, &[]).err(),
            Some(ModelError::Accounts(0))
        );
        assert_eq!(
            OrderModel::new(1, 1, 0, 0, &[]).err(),
            Some(ModelError::Days(0))
        );
        assert_eq!(
            OrderModel::new(1, 1, 0, 1, &[24]).err(),
            Some(ModelError::PeakHour(24))
        );
    }
}
