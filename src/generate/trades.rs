//! `stress.generate_trades(n, seed, …)`: fills of the FILLED and PARTIAL orders.
//!
//! Trades are derived from the orders table as it is (whatever generated it): each eligible order,
//! in id order, gets its share of the `n` fills (n/E each, E = eligible orders, so the total is
//! exactly n), splitting the order's quantity (all of it for FILLED, 10–90% for PARTIAL), executed
//! after the order was placed as a Poisson process of `fill_rate` fills per second. A call appends
//! fills only for orders after the last one that already has trades, so repeated calls never overfill.

use super::bulk::{numeric_datum, text_datum};
use super::model::{NUMERIC_SCALE, SIDES, SYMBOLS, row_rng};
use super::parallel::{ChunkReader, MAX_CHUNK_BYTES, RowProducer, RowSink, Workers};
use super::tables::{ORDERS, TRADES};
use crate::error::{OrRaise, StressError};
use crate::gucs;
use crate::postgres::quote::qualified;
use pgrx::prelude::*;
use rand::RngExt;
use rand_distr::{Distribution, Exp, Exp1, Normal};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Most fills one order may be split into.
pub const MAX_FILLS_PER_ORDER: i64 = 1000;
const US_PER_SECOND: f64 = 1_000_000.0;

/// What a trade needs to know about its order.
#[derive(Debug, Clone)]
pub struct OrderToFill {
    pub id: i64,
    pub account_id: i64,
    pub symbol: String,
    /// Its index in [`SYMBOLS`], if it is one of ours (tick and lot sizes, a prebuilt datum).
    pub symbol_index: Option<usize>,
    pub side: String,
    pub market: bool,
    pub partial: bool,
    /// 10^-8 units
    pub quantity: i64,
    pub price: i64,
    pub created_at: i64,
}

/// One fill, as plain values (quantity, price, fee in 10^-8 units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub quantity: i64,
    pub price: i64,
    pub fee: i64,
    pub executed_at: i64,
}

pub struct FillModel {
    seed: u64,
    delay: Exp<f64>,
    slippage: Normal<f64>,
}

impl FillModel {
    pub fn new(seed: u64, fill_rate: f64) -> Result<Self, String> {
        let delay = Exp::new(fill_rate)
            .ok()
            .filter(|_| fill_rate.is_finite() && fill_rate > 0.0)
            .ok_or_else(|| {
                format!("fill_rate must be a positive number of fills per second, got {fill_rate}")
            })?;
        Ok(FillModel {
            seed,
            delay,
            slippage: Normal::new(0.0, 0.0005).expect("valid normal"),
        })
    }

    /// The `k` fills of `order`: a pure function of (seed, order id, k).
    pub fn fills(&self, order: &OrderToFill, k: usize, out: &mut Vec<Fill>) {
        out.clear();
        if k == 0 {
            return;
        }
        let mut rng = row_rng(self.seed ^ 0x7EAD_E500, order.id);
        let (tick, lot) = order.symbol_index.map(|i| &SYMBOLS[i]).map_or((1, 1), |s| {
            (
                10i64.pow(NUMERIC_SCALE as u32 - s.tick_decimals),
                10i64.pow(NUMERIC_SCALE as u32 - s.lot_decimals),
            )
        });
        let total = if order.partial {
            let fraction = rng.random_range(0.1..0.9);
            (order.quantity as f64 * fraction) as i64
        } else {
            order.quantity
        };
        // Split in lots when the order allows k of them, else in the finest unit.
        let unit = if total / lot >= k as i64 && order.quantity % lot == 0 {
            lot
        } else {
            1
        };
        let units = (total / unit).max(k as i64);
        let weights: Vec<f64> = (0..k).map(|_| Exp1.sample(&mut rng)).collect();
        let sum: f64 = weights.iter().sum();
        let spare = units - k as i64;
        let mut given = 0;
        let mut at = order.created_at;
        let maker = !order.market;
        for (i, w) in weights.iter().enumerate() {
            let parts = if i + 1 == k {
                units - given
            } else {
                1 + (spare as f64 * w / sum) as i64
            };
            given += parts;
            let price = if order.market {
                let p = order.price as f64 * self.slippage.sample(&mut rng).exp();
                ((p / tick as f64).round() as i64).max(1) * tick
            } else {
                order.price
            };
            let quantity = parts * unit;
            let notional = quantity as i128 * price as i128 / 100_000_000;
            let fee = (notional * if maker { 2 } else { 10 } / 10_000) as i64;
            at += (self.delay.sample(&mut rng) * US_PER_SECOND).max(1.0) as i64;
            out.push(Fill {
                quantity,
                price,
                fee,
                executed_at: at,
            });
        }
    }
}

/// Trades as datums: the fills of one order at a time (see [`super::parallel::RowSink`]).
pub struct TradeRows {
    model: FillModel,
    symbols: Vec<pg_sys::Datum>,
    sides: Vec<pg_sys::Datum>,
}

impl TradeRows {
    pub fn new(seed: u64, fill_rate: f64) -> Result<Self, String> {
        Ok(TradeRows {
            model: FillModel::new(seed, fill_rate)?,
            symbols: SYMBOLS.iter().map(|s| text_datum(s.name)).collect(),
            sides: SIDES.iter().map(|s| text_datum(s)).collect(),
        })
    }

    /// Write the `k` fills of `order` with ids from `first_id`; returns the next free id.
    /// `fills` is scratch space, reused from order to order.
    pub fn write_order(
        &self,
        order: &OrderToFill,
        k: usize,
        first_id: i64,
        fills: &mut Vec<Fill>,
        sink: &mut impl RowSink,
    ) -> i64 {
        self.model.fills(order, k, fills);
        let symbol = order.symbol_index;
        let side = SIDES.iter().position(|s| *s == order.side);
        let mut id = first_id;
        for fill in fills.iter() {
            sink.push(|v, _| {
                v[0] = id.into();
                v[1] = order.id.into();
                v[2] = order.account_id.into();
                v[3] = symbol.map_or_else(|| text_datum(&order.symbol), |i| self.symbols[i]);
                v[4] = side.map_or_else(|| text_datum(&order.side), |i| self.sides[i]);
                v[5] = numeric_datum(fill.quantity, NUMERIC_SCALE);
                v[6] = numeric_datum(fill.price, NUMERIC_SCALE);
                v[7] = numeric_datum(fill.fee, NUMERIC_SCALE);
                v[8] = fill.executed_at.into();
            });
            id += 1;
        }
        id
    }
}

/// Fills for order number `rank` (0-based) of `eligible`, so that all of them add up to exactly `n`.
pub fn fills_for_rank(n: i64, eligible: i64, rank: i64) -> usize {
    let upto = |r: i64| (n as i128 * r as i128 / eligible as i128) as i64;
    (upto(rank + 1) - upto(rank)) as usize
}

/// Appends `n` trades to `stress_data.trades` for the FILLED/PARTIAL orders that have none yet.
pub fn generate_trades(
    n: Option<i64>,
    seed: Option<i64>,
    fill_rate: Option<f64>,
    distribution: Option<crate::postgres::json_arg::JsonArg>,
    workers: Option<i32>,
) -> i64 {
    const F: &str = "generate_trades";
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let distribution = distribution.map(|d| d.parse(F, "distribution").or_raise());
    let n = crate::args::row_count(F, n).or_raise() as i64;
    let seed = crate::args::seed_or_random(seed);
    let mut fill_rate = fill_rate.unwrap_or(0.1);
    if let Some(spec) = &distribution {
        fill_rate = fill_rate_of(spec)
            .map_err(|e| StressError::invalid(F, e, "See docs/generate.md, \"Distributions\"."))
            .or_raise();
    }
    let workers = crate::args::worker_count(F, workers).or_raise();
    let rows = TradeRows::new(seed as u64, fill_rate)
        .map_err(|e| {
            StressError::invalid(
                F,
                e,
                "fill_rate is the Poisson rate of fills after an order is placed, e.g. 0.1.",
            )
        })
        .or_raise();
    let schema = gucs::data_schema();
    let orders = qualified(&schema, ORDERS.name);
    EligibleOrders::require_orders(&schema, &orders);
    let relid = TRADES.ensure(&schema, F);
    let eligible = EligibleOrders::find(&schema, &orders, n);
    let mut write = super::TableWrite::open(&TRADES, &schema, relid, n as u64, F);
    let job = TradesJob {
        seed: seed as u64,
        fill_rate,
    };
    // With workers, the orders read here go out in chunks; each worker computes and forms the
    // fills of its chunks and this backend writes them.
    let pool =
        (workers > 1 && n > 0).then(|| Workers::launch::<TradeRows>(&job, &write, workers, F));
    fill_orders(&orders, &eligible, n, &rows, pool, &mut write);
    // order_id and account_id come from order rows read under a SHARE lock on orders.
    let trusted: &[&str] = if super::fk_holds_on(&orders, "account_id") {
        &["order_id", "account_id"]
    } else {
        &["order_id"]
    };
    let outcome = write.finish(trusted);
    let parameters = json!({"n": n, "seed": seed, "fill_rate": fill_rate,
                            "after_order_id": eligible.after_order, "workers": workers});
    super::record(F, parameters, started_at, &schema, "trades", &outcome);
    outcome.rows as i64
}

/// The orders a call fills: those after the last one with trades, FILLED or PARTIAL.
struct EligibleOrders {
    after_order: i64,
    count: i64,
}

impl EligibleOrders {
    /// 22023 unless the data schema has orders to fill.
    fn require_orders(schema: &str, orders: &str) {
        const F: &str = "generate_trades";
        if Spi::get_one_with_args::<bool>("SELECT to_regclass($1) IS NULL", &[orders.into()])
            .unwrap()
            == Some(true)
        {
            StressError::invalid(
                F,
                format!("{schema}.orders does not exist"),
                "Generate orders first: SELECT stress.generate_orders(1000000);",
            )
            .raise();
        }
    }

    /// Count them (the trades table exists), and check that `n` trades fit them (22023
    /// otherwise).
    fn find(schema: &str, orders: &str, n: i64) -> EligibleOrders {
        let trades = qualified(schema, TRADES.name);
        let after_order =
            Spi::get_one::<i64>(&format!("SELECT coalesce(max(order_id), 0) FROM {trades}"))
                .unwrap()
                .unwrap_or(0);
        let count = Spi::get_one_with_args::<i64>(
            &format!(
                "SELECT count(*) FROM {orders} WHERE status IN ('FILLED', 'PARTIAL') AND id > $1"
            ),
            &[after_order.into()],
        )
        .unwrap()
        .unwrap_or(0);
        const F: &str = "generate_trades";
        if n > 0 && count == 0 {
            StressError::invalid(
                F,
                format!("no FILLED or PARTIAL orders without trades in {schema}.orders"),
                "Generate more orders first: each call fills only orders that have no trades yet.",
            )
            .raise();
        }
        if n > 0 && n > count * MAX_FILLS_PER_ORDER {
            StressError::invalid(
                F,
                format!("{n} trades over {count} eligible orders is more than {MAX_FILLS_PER_ORDER} fills per order"),
                "Generate more orders, or fewer trades.",
            )
            .raise();
        }
        EligibleOrders { after_order, count }
    }
}

/// Read the eligible orders in id order and write their `n` fills: formed here, or by the `pool`'s
/// workers from chunks of orders.
fn fill_orders(
    orders: &str,
    eligible: &EligibleOrders,
    n: i64,
    rows: &TradeRows,
    mut pool: Option<Workers>,
    write: &mut super::TableWrite,
) {
    let mut id = write.first_id();
    let mut pending = OrdersChunk::new(id);
    let mut rank = 0i64;
    let mut fills = Vec::new();
    // One cursor over the eligible orders, in id order; rows are converted without numeric
    // arithmetic in SQL (numeric_units decodes the stored digits).
    Spi::connect(|client| {
        let mut cursor = client.open_cursor(
            &format!(
                "SELECT id, account_id, symbol, side, order_type <> 'LIMIT', status = 'PARTIAL', quantity, price, created_at
                 FROM {orders} WHERE status IN ('FILLED', 'PARTIAL') AND id > $1 ORDER BY id"
            ),
            &[eligible.after_order.into()],
        );
        // What is copied out of a chunk (numerics, …) lives in this context, reset per chunk, and
        // each chunk's tuple table is freed once used: memory stays flat however many orders.
        let chunk_memory = pgrx::PgMemoryContexts::new("pg_stress trades chunk");
        while rank < eligible.count && n > 0 {
            let chunk = cursor.fetch(10_000)?;
            if chunk.is_empty() {
                break;
            }
            // SAFETY: chunk_memory is a context of ours that lives across the loop; the previous
            // context is restored below.
            let outer = unsafe { pg_sys::MemoryContextSwitchTo(chunk_memory.value()) };
            for r in chunk {
                let order = order_of(&r)?;
                let k = fills_for_rank(n, eligible.count, rank);
                rank += 1;
                match pool.as_mut() {
                    None => id = rows.write_order(&order, k, id, &mut fills, write),
                    Some(pool) => {
                        pending.add(&order, k);
                        id += k as i64;
                        if pending.is_full() {
                            let full = std::mem::replace(&mut pending, OrdersChunk::new(id));
                            pool.submit(&full.bytes, write);
                        }
                    }
                }
            }
            // SAFETY: restores the context switched from above, and frees the cursor's last fetched
            // tuple table, which nothing refers to any more (its rows were copied into plain Rust
            // values).
            unsafe {
                pg_sys::MemoryContextSwitchTo(outer);
                pg_sys::MemoryContextReset(chunk_memory.value());
                pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
                pg_sys::SPI_tuptable = std::ptr::null_mut();
            }
        }
        Ok::<_, pgrx::spi::SpiError>(())
    })
    .expect("reading orders to fill");
    if let Some(mut pool) = pool {
        if pending.orders > 0 {
            pool.submit(&pending.bytes, write);
        }
        pool.finish(write);
    }
}

/// An order row of the cursor in [`fill_orders`], as the model takes it.
fn order_of(r: &pgrx::spi::SpiHeapTupleData) -> pgrx::spi::SpiResult<OrderToFill> {
    let symbol: String = r.get(3)?.unwrap_or_default();
    Ok(OrderToFill {
        id: r.get(1)?.unwrap_or_default(),
        account_id: r.get(2)?.unwrap_or_default(),
        symbol_index: SYMBOLS.iter().position(|s| s.name == symbol),
        symbol,
        side: r.get(4)?.unwrap_or_default(),
        market: r.get(5)?.unwrap_or_default(),
        partial: r.get(6)?.unwrap_or_default(),
        quantity: units_of(r.get::<pgrx::AnyNumeric>(7)?),
        price: units_of(r.get::<pgrx::AnyNumeric>(8)?),
        created_at: r
            .get::<TimestampWithTimeZone>(9)?
            .map_or(0, pg_sys::TimestampTz::from),
    })
}

/// The fill rate a `distribution` spec sets: executed_at arrives as a Poisson process (equivalently,
/// exponential gaps) of `lambda` fills per second after the order.
pub fn fill_rate_of(spec: &serde_json::Value) -> Result<f64, String> {
    let columns = super::distribution::columns(spec, &["executed_at"])?;
    let Some(executed_at) = columns.get("executed_at") else {
        return Ok(0.1);
    };
    match super::distribution::Dist::parse("executed_at", executed_at, None)? {
        super::distribution::Dist::Poisson(_) | super::distribution::Dist::Exponential(_) => {
            Ok(executed_at["lambda"].as_f64().unwrap_or(0.1))
        }
        _ => Err("column executed_at: fills arrive as a Poisson process; use poisson or exponential with \"lambda\" (fills per second)".into()),
    }
}

/// A numeric(20,8) value in 10^-8 units (0 for NULL, NaN or out of i64 range).
fn units_of(n: Option<pgrx::AnyNumeric>) -> i64 {
    n.and_then(|n| n.into_datum())
        // SAFETY: into_datum of a Some numeric gives a non-null numeric datum.
        .and_then(|d| unsafe { super::bulk::numeric_units(d) })
        .and_then(|u| i64::try_from(u).ok())
        .unwrap_or(0)
}

/// The parameters of a generate_trades call, as its workers receive them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradesJob {
    pub seed: u64,
    pub fill_rate: f64,
}

/// Most orders in one chunk (each gets its fills computed by the same worker).
pub const TRADE_CHUNK_ORDERS: usize = 1_000;

/// A chunk of orders to fill, built up one order at a time; trade ids start at `first_trade_id`.
pub struct OrdersChunk {
    pub bytes: Vec<u8>,
    pub orders: usize,
}

impl OrdersChunk {
    pub fn new(first_trade_id: i64) -> Self {
        let mut bytes = Vec::with_capacity(64 * TRADE_CHUNK_ORDERS);
        bytes.extend_from_slice(&first_trade_id.to_ne_bytes());
        OrdersChunk { bytes, orders: 0 }
    }

    pub fn add(&mut self, order: &OrderToFill, fills: usize) {
        let b = &mut self.bytes;
        for v in [
            order.id,
            order.account_id,
            order.quantity,
            order.price,
            order.created_at,
        ] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&(fills as u32).to_ne_bytes());
        b.push(order.market as u8 | (order.partial as u8) << 1);
        for s in [&order.symbol, &order.side] {
            b.extend_from_slice(&(s.len() as u32).to_ne_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        self.orders += 1;
    }

    pub fn is_full(&self) -> bool {
        self.orders >= TRADE_CHUNK_ORDERS || self.bytes.len() >= MAX_CHUNK_BYTES
    }
}

/// The orders of an [`OrdersChunk`], each with its number of fills; and its first trade id.
fn read_orders_chunk(chunk: &[u8]) -> (i64, Vec<(OrderToFill, usize)>) {
    let mut r = ChunkReader::new(chunk);
    let first_trade_id = r.i64();
    let mut orders = Vec::new();
    while !r.done() {
        let (id, account_id, quantity, price, created_at) =
            (r.i64(), r.i64(), r.i64(), r.i64(), r.i64());
        let k = r.u32() as usize;
        let flags = r.u8();
        let symbol = r.string();
        let side = r.string();
        let order = OrderToFill {
            id,
            account_id,
            symbol_index: SYMBOLS.iter().position(|s| s.name == symbol),
            symbol,
            side,
            market: flags & 1 != 0,
            partial: flags & 2 != 0,
            quantity,
            price,
            created_at,
        };
        orders.push((order, k));
    }
    (first_trade_id, orders)
}

impl RowProducer for TradeRows {
    type Job = TradesJob;
    const ENTRY_POINT: &'static str = "pg_stress_generate_trades_main";

    fn from_job(job: &TradesJob) -> Result<Self, String> {
        TradeRows::new(job.seed, job.fill_rate)
    }

    /// The fills of each order of an [`OrdersChunk`].
    fn produce(&self, chunk: &[u8], sink: &mut impl RowSink) {
        let (mut trade_id, orders) = read_orders_chunk(chunk);
        let mut fills = Vec::new();
        for (order, k) in &orders {
            trade_id = self.write_order(order, *k, trade_id, &mut fills, sink);
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_generate_trades_main(arg: pg_sys::Datum) {
    super::parallel::worker_main::<TradeRows>(arg);
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_orders_chunk_reads_back_as_written() {
        let order = OrderToFill {
            id: 7,
            account_id: 3,
            symbol: "ÉTH/USDT".into(),
            symbol_index: None,
            side: "SELL".into(),
            market: true,
            partial: false,
            quantity: 12,
            price: 34,
            created_at: -5,
        };
        let mut chunk = OrdersChunk::new(100);
        chunk.add(&order, 4);
        let (first_trade_id, orders) = read_orders_chunk(&chunk.bytes);
        assert_eq!(first_trade_id, 100);
        assert_eq!(orders.len(), 1);
        let (read, fills) = &orders[0];
        assert_eq!(*fills, 4);
        assert_eq!(
            [
                read.id,
                read.account_id,
                read.quantity,
                read.price,
                read.created_at
            ],
            [7, 3, 12, 34, -5]
        );
        assert_eq!((read.market, read.partial), (true, false));
        assert_eq!(
            (read.symbol.as_str(), read.side.as_str()),
            ("ÉTH/USDT", "SELL")
        );
    }
    use super::*;

    fn order(partial: bool, market: bool) -> OrderToFill {
        OrderToFill {
            id: 42,
            account_id: 7,
            symbol: "BTC/USDT".into(),
            symbol_index: Some(0),
            side: "BUY".into(),
            market,
            partial,
            quantity: 1_234_000, // 0.01234 BTC
            price: 6_500_000_000_000,
            created_at: 1_000_000,
        }
    }

    #[test]
    fn fills_add_up_and_come_after_the_order() {
        let m = FillModel::new(1, 0.1).unwrap();
        let mut fills = Vec::new();
        for k in 1..=8 {
            m.fills(&order(false, false), k, &mut fills);
            assert_eq!(fills.len(), k);
            assert_eq!(fills.iter().map(|f| f.quantity).sum::<i64>(), 1_234_000);
            assert!(
                fills
                    .iter()
                    .all(|f| f.quantity > 0 && f.price == 6_500_000_000_000)
            );
            assert!(
                fills
                    .windows(2)
                    .all(|w| w[0].executed_at < w[1].executed_at)
            );
            assert!(fills[0].executed_at > 1_000_000);
            m.fills(&order(true, true), k, &mut fills);
            let sum: i64 = fills.iter().map(|f| f.quantity).sum();
            assert!(sum < 1_234_000 && sum >= k as i64, "{sum}");
            assert!(fills.iter().all(|f| f.fee > 0));
        }
    }

    #[test]
    fn shares_of_n_add_up_exactly() {
        for (n, e) in [(10, 3), (5_000_000, 550_000), (7, 7), (3, 10)] {
            assert_eq!(
                (0..e).map(|r| fills_for_rank(n, e, r) as i64).sum::<i64>(),
                n
            );
        }
    }

    #[test]
    fn bad_fill_rates_are_refused() {
        assert!(FillModel::new(1, 0.0).is_err());
        assert!(FillModel::new(1, -1.0).is_err());
        assert!(FillModel::new(1, f64::NAN).is_err());
    }
}
