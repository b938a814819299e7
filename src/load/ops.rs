//! The built-in trading transactions a load run executes, and the mix that weighs them.
//!
//! Each operation is one transaction of a trading system against the generated tables. The seed's
//! mix keys map onto them: `insert` = place_order, `update` = execute_trade and balance_update
//! (equal halves), `select` = open_orders, recent_trades and position (equal thirds), `delete` =
//! cancel_order. The finer names can be used directly, and both kinds mixed.

use crate::generate::model::{SYMBOLS, Symbol};
use crate::postgres::quote::qualified;
use crate::postgres::read_only;
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pgrx::{AnyNumeric, PgBuiltInOids, PgOid};
use rand::{Rng, RngExt};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// an OPEN limit order and its ORDER_PLACED audit event
    PlaceOrder,
    /// the newest OPEN order of an account becomes CANCELLED
    CancelOrder,
    /// an OPEN order of an account fills: trade row, order FILLED, money between the two accounts,
    /// the position upserted
    ExecuteTrade,
    /// a deposit or withdrawal on an account (never below zero)
    BalanceUpdate,
    /// an account's open orders, newest first
    OpenOrders,
    /// a symbol's last 50 trades
    RecentTrades,
    /// one position
    Position,
    /// money from one account to another: the first one is debited, then the second credited, each
    /// locked as it is updated, so two transfers in opposite directions can deadlock (the seed's
    /// deadlock test)
    Transfer,
}

pub const OPS: [Op; 8] = [
    Op::PlaceOrder,
    Op::CancelOrder,
    Op::ExecuteTrade,
    Op::BalanceUpdate,
    Op::OpenOrders,
    Op::RecentTrades,
    Op::Position,
    Op::Transfer,
];

/// Weights indexed like [`OPS`].
pub type Weights = [f64; OPS.len()];

/// Whether a mix runs any built-in operation (which need the trading dataset); custom
/// transactions alone do not.
pub fn uses_builtins(weights: &Weights) -> bool {
    weights.iter().any(|&w| w > 0.0)
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::PlaceOrder => "place_order",
            Op::CancelOrder => "cancel_order",
            Op::ExecuteTrade => "execute_trade",
            Op::BalanceUpdate => "balance_update",
            Op::OpenOrders => "open_orders",
            Op::RecentTrades => "recent_trades",
            Op::Position => "position",
            Op::Transfer => "transfer",
        }
    }

    /// Whether the operation only reads (it may run on a hot standby, through read-only SPI).
    pub fn reads_only(self) -> bool {
        matches!(self, Op::OpenOrders | Op::RecentTrades | Op::Position)
    }

    pub fn index(self) -> usize {
        OPS.iter()
            .position(|&o| o == self)
            .expect("every op is in OPS")
    }
}

/// What a seed mix key stands for.
fn seed_key(key: &str) -> Option<&'static [Op]> {
    Some(match key {
        "insert" => &[Op::PlaceOrder],
        "update" => &[Op::ExecuteTrade, Op::BalanceUpdate],
        "select" => &[Op::OpenOrders, Op::RecentTrades, Op::Position],
        "delete" => &[Op::CancelOrder],
        _ => return None,
    })
}

/// The seed's default: `{"insert":0.3,"update":0.3,"select":0.3,"delete":0.1}`.
pub fn default_mix() -> Weights {
    parse_mix(&serde_json::json!({"insert": 0.3, "update": 0.3, "select": 0.3, "delete": 0.1}))
        .expect("the default mix is valid")
}

/// Parse a `mix` object into weights (relative: they are normalised with the custom transactions').
pub fn parse_mix(spec: &Value) -> Result<Weights, String> {
    let entries = spec.as_object().ok_or(
        "mix must be a JSON object of operation weights, e.g. {\"insert\": 0.3, \"select\": 0.7}",
    )?;
    let mut weights = [0.0; OPS.len()];
    for (key, weight) in entries {
        let w = crate::args::weight(&format!("mix.{key}"), weight)?;
        if let Some(ops) = seed_key(key) {
            for op in ops {
                weights[op.index()] += w / ops.len() as f64;
            }
        } else if let Some(op) = OPS.iter().find(|o| o.name() == key) {
            weights[op.index()] += w;
        } else {
            let names: Vec<_> = OPS.iter().map(|o| o.name()).collect();
            return Err(format!(
                "mix.{key}: unknown operation; use insert, update, select, delete or {}",
                names.join(", ")
            ));
        }
    }
    Ok(weights)
}

/// The SQL statements of each operation (one transaction), for tables in `schema`: one statement,
/// except execute_trade (see [`execute_trade_sql`]).
pub fn sql(op: Op, schema: &str) -> Vec<(String, Vec<PgOid>)> {
    let int8 = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
    let float8 = PgOid::BuiltIn(PgBuiltInOids::FLOAT8OID);
    match op {
        Op::ExecuteTrade => execute_trade_sql(schema),
        // $1 account, $2 cents: debit (only what the account has), pause (pg_sleep $1 seconds, for
        // the deadlock test), credit
        Op::Transfer => {
            let accounts = qualified(schema, "accounts");
            vec![
                (
                    format!(
                        "UPDATE {accounts} SET balance = balance - $2::numeric / 100 WHERE id = $1 AND balance >= $2::numeric / 100"
                    ),
                    vec![int8, int8],
                ),
                ("SELECT pg_sleep($1)".into(), vec![float8]),
                (
                    format!(
                        "UPDATE {accounts} SET balance = balance + $2::numeric / 100 WHERE id = $1"
                    ),
                    vec![int8, int8],
                ),
            ]
        }
        _ => vec![single_statement_sql(op, schema)],
    }
}

fn single_statement_sql(op: Op, schema: &str) -> (String, Vec<PgOid>) {
    let t = |name| qualified(schema, name);
    let (orders, trades, accounts, positions, audit) = (
        t("orders"),
        t("trades"),
        t("accounts"),
        t("positions"),
        t("audit_log"),
    );
    let int8 = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
    let text = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
    let float8 = PgOid::BuiltIn(PgBuiltInOids::FLOAT8OID);
    match op {
        // $1 order id, $2 account, $3 symbol, $4 side, $5 quantity, $6 price, $7 audit event id
        Op::PlaceOrder => (
            format!(
                "WITH o AS (
                   INSERT INTO {orders} (id, account_id, symbol, side, order_type, status, quantity, price, created_at)
                   VALUES ($1, $2, $3, $4, 'LIMIT', 'OPEN', round($5::numeric, 4), round($6::numeric, 2), now())
                   RETURNING id, account_id, price)
                 INSERT INTO {audit} (id, ts, actor, action, entity, entity_id, payload)
                 SELECT $7, now(), 'user:' || account_id, 'ORDER_PLACED', 'orders', id, jsonb_build_object('price', price)
                 FROM o"
            ),
            vec![int8, int8, text, text, float8, float8, int8],
        ),
        // $1 account
        Op::CancelOrder => (
            format!(
                "UPDATE {orders} SET status = 'CANCELLED'
                 WHERE id = (SELECT id FROM {orders} WHERE account_id = $1 AND status = 'OPEN'
                             ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED)"
            ),
            vec![int8],
        ),
        Op::ExecuteTrade | Op::Transfer => unreachable!("several statements"),
        // $1 account, $2 amount (negative: a withdrawal, refused below zero)
        Op::BalanceUpdate => (
            format!(
                "UPDATE {accounts} SET balance = balance + round($2::numeric, 2)
                 WHERE id = $1 AND balance + round($2::numeric, 2) >= 0"
            ),
            vec![int8, float8],
        ),
        Op::OpenOrders => (
            format!(
                "SELECT id, symbol, side, quantity, price FROM {orders}
                 WHERE account_id = $1 AND status = 'OPEN' ORDER BY created_at DESC LIMIT 50"
            ),
            vec![int8],
        ),
        Op::RecentTrades => (
            format!(
                "SELECT id, price, quantity, executed_at FROM {trades}
                 WHERE symbol = $1 ORDER BY executed_at DESC LIMIT 50"
            ),
            vec![text],
        ),
        Op::Position => (
            format!("SELECT quantity, avg_price FROM {positions} WHERE account_id = $1 AND symbol = $2"),
            vec![int8, text],
        ),
    }
}

/// execute_trade's statements, in order, in one transaction:
/// 1. the oldest OPEN order of account $1 fills and its trade (id $2, counterparty $3) is written;
///    returns one row: whether an order filled, payer, payee, the notional, and the position change
///    (always one row, so that a pgbench script can `\gset` it: see scripts/bench.sh);
/// 2. both accounts are locked, in id order (so two trades never deadlock on them);
/// 3. what the payer pays: the notional, or all it has (balances never go negative);
/// 4. the money moves, one statement for both rows (money is conserved to the 10^-8);
/// 5. the position of the order's account is upserted.
pub fn execute_trade_sql(schema: &str) -> Vec<(String, Vec<PgOid>)> {
    let t = |name| qualified(schema, name);
    let (orders, trades, accounts, positions) =
        (t("orders"), t("trades"), t("accounts"), t("positions"));
    let int8 = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
    let text = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
    let numeric = PgOid::BuiltIn(PgBuiltInOids::NUMERICOID);
    vec![
        (
            format!(
                "WITH o AS (SELECT id, account_id, symbol, side, quantity, price FROM {orders}
                            WHERE account_id = $1 AND status = 'OPEN' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED),
                  filled AS (UPDATE {orders} f SET status = 'FILLED' FROM o WHERE f.id = o.id RETURNING o.*),
                  trade AS (INSERT INTO {trades} (id, order_id, account_id, symbol, side, quantity, price, fee, executed_at)
                            SELECT $2, id, account_id, symbol, side, quantity, price, round(quantity * price * 0.001, 8), now()
                            FROM filled RETURNING account_id, symbol, side, quantity, price)
                 SELECT count(*) > 0 AS filled,
                        max(CASE WHEN side = 'BUY' THEN account_id ELSE $3 END) AS payer,
                        max(CASE WHEN side = 'BUY' THEN $3 ELSE account_id END) AS payee,
                        max(round(quantity * price, 8)) AS notional,
                        max(account_id) AS owner, max(symbol) AS symbol,
                        max(CASE WHEN side = 'BUY' THEN quantity ELSE -quantity END) AS change,
                        max(price) AS price
                 FROM trade"
            ),
            vec![int8, int8, int8],
        ),
        (
            format!("SELECT id FROM {accounts} WHERE id IN ($1, $2) ORDER BY id FOR UPDATE"),
            vec![int8, int8],
        ),
        (
            format!("SELECT least(balance, $2) FROM {accounts} WHERE id = $1"),
            vec![int8, numeric],
        ),
        (
            format!(
                "UPDATE {accounts} SET balance = balance + CASE WHEN id = $1 THEN -$3::numeric ELSE $3::numeric END
                 WHERE id IN ($1, $2)"
            ),
            vec![int8, int8, numeric],
        ),
        (
            format!(
                "INSERT INTO {positions} AS p (account_id, symbol, quantity, avg_price, updated_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (account_id, symbol) DO UPDATE
                 SET quantity = p.quantity + EXCLUDED.quantity, avg_price = EXCLUDED.avg_price,
                     updated_at = EXCLUDED.updated_at"
            ),
            vec![int8, text, numeric, numeric],
        ),
    ]
}

/// Ids of new rows: each worker takes every `step`-th id after the highest at the start of the run,
/// so workers never collide and need no shared counter.
#[derive(Debug, Clone, Copy)]
pub struct IdSequence {
    pub next: i64,
    pub step: i64,
}

impl IdSequence {
    pub fn take(&mut self) -> i64 {
        let id = self.next;
        self.next += self.step;
        id
    }
}

/// What operations need to know about the data: how many accounts, where new ids go.
pub struct DataInUse {
    pub accounts: i64,
    /// transfers only between accounts 1..=hot_accounts (0: all)
    pub hot_accounts: i64,
    /// transfers pause this long between debit and credit (seconds)
    pub transfer_pause: f64,
    pub order_ids: IdSequence,
    pub trade_ids: IdSequence,
    pub audit_ids: IdSequence,
}

/// Prepared plans of every operation, kept across transactions.
pub struct Plans {
    /// per operation (indexed like [`OPS`], then the custom transactions), its statements; empty for
    /// operations that are not prepared
    plans: Vec<Vec<OwnedPreparedStatement>>,
    customs: Vec<super::custom::Custom>,
    /// whether the custom transactions run from prepared plans (else planned at every execution)
    prepared: bool,
    /// per custom transaction, per statement: it only reads (see [`custom_reads_only`])
    custom_reads_only: Vec<Vec<bool>>,
}

/// Per statement of each custom transaction: whether it is a plain SELECT. Those run through
/// read-only SPI, which gives the transaction no id (no xid, no commit record for a read, and what
/// lets them run on a hot standby). Needs a transaction; the statements must parse.
pub fn custom_reads_only(customs: &[super::custom::Custom]) -> Vec<Vec<bool>> {
    customs
        .iter()
        .map(|c| {
            let types: Vec<pgrx::pg_sys::Oid> =
                c.params.iter().map(|p| p.pg_type().value()).collect();
            c.statements
                .iter()
                .map(|sql| crate::postgres::read_only::statement_reads_only(sql, &types))
                .collect()
        })
        .collect()
}

impl Plans {
    /// Prepare the operations (in a transaction, with SPI connected): the built-in ones when
    /// `builtins` (they need the trading dataset), the custom transactions when `prepared`.
    pub fn prepare(
        client: &SpiClient<'_>,
        schema: &str,
        customs: Vec<super::custom::Custom>,
        builtins: bool,
        prepared: bool,
    ) -> SpiResult<Self> {
        let mut plans: Vec<Vec<OwnedPreparedStatement>> = OPS
            .iter()
            .map(|&op| {
                if !builtins {
                    return Ok(Vec::new());
                }
                sql(op, schema)
                    .into_iter()
                    .map(|(sql, types)| Ok(client.prepare_mut(sql.as_str(), &types)?.keep()))
                    .collect::<SpiResult<Vec<_>>>()
            })
            .collect::<SpiResult<_>>()?;
        for custom in &customs {
            let types: Vec<PgOid> = custom.params.iter().map(|p| p.pg_type()).collect();
            plans.push(if prepared {
                custom
                    .statements
                    .iter()
                    .map(|sql| Ok(client.prepare_mut(sql.as_str(), &types)?.keep()))
                    .collect::<SpiResult<Vec<_>>>()?
            } else {
                Vec::new()
            });
        }
        let custom_reads_only = custom_reads_only(&customs);
        Ok(Plans {
            plans,
            customs,
            prepared,
            custom_reads_only,
        })
    }

    /// A run on a target prepares nothing here (`load::remote` prepares there): the custom
    /// transactions only, for their names and weights.
    pub fn for_target(customs: Vec<super::custom::Custom>) -> Self {
        Plans {
            plans: Vec::new(),
            custom_reads_only: Vec::new(),
            customs,
            prepared: false,
        }
    }

    pub fn customs(&self) -> &[super::custom::Custom] {
        &self.customs
    }

    /// Run custom transaction `i` once: its statements in order, the same parameter values for all.
    pub fn execute_custom(
        &self,
        client: &mut SpiClient<'_>,
        i: usize,
        rng: &mut impl Rng,
    ) -> SpiResult<()> {
        let custom = &self.customs[i];
        let args: Vec<_> = custom.params.iter().map(|p| p.sample(rng)).collect();
        let reads_only = &self.custom_reads_only[i];
        if self.prepared {
            for (plan, &read) in self.plans[OPS.len() + i].iter().zip(reads_only) {
                read_only::execute(client, plan, read, &args)?;
            }
        } else {
            for (sql, &read) in custom.statements.iter().zip(reads_only) {
                read_only::execute(client, sql.as_str(), read, &args)?;
            }
        }
        Ok(())
    }

    /// Run `op` once over SPI, with parameters drawn from `rng` (in the caller's transaction).
    pub fn execute(
        &self,
        client: &mut SpiClient<'_>,
        op: Op,
        work: &mut DataInUse,
        rng: &mut impl Rng,
    ) -> SpiResult<()> {
        // (SPI's statements run as they are called: the future is ready at once)
        crate::postgres::multiplex::blocking(execute(
            &mut SpiSession {
                client,
                plans: self,
            },
            op,
            work,
            rng,
        ))
    }
}

/// A value an operation passes to its statements; `N` a numeric as its session carries it.
pub enum Arg<'a, N> {
    Int(i64),
    Float(f64),
    Text(&'a str),
    Numeric(&'a N),
}

/// What execute_trade's first statement returned when an order filled.
pub struct Fill<N> {
    pub payer: i64,
    pub payee: i64,
    pub notional: N,
    pub owner: i64,
    pub symbol: String,
    pub change: N,
    pub price: N,
}

/// Where the operations' statements run: SPI in this backend ([`SpiSession`]), or a connection to
/// a target (`load::remote`). Each statement is named by its operation and its place in it
/// ([`sql`]). Its statements are futures: a target's connection may be one of a worker's several
/// clients, waiting while the others run (`postgres::multiplex`); SPI's are ready at once.
// (never sent between threads: no Send bound is wanted on the futures)
#[allow(async_fn_in_trait)]
pub trait Session {
    type Numeric;
    type Error;
    /// Statement `step` of `op` with `args`: how many rows it returned or changed.
    async fn run(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, Self::Numeric>],
    ) -> Result<u64, Self::Error>;
    /// Statement `step` of `op`, which returns one numeric (NULL, or no row: 0).
    async fn numeric(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, Self::Numeric>],
    ) -> Result<Self::Numeric, Self::Error>;
    /// execute_trade's first statement: the fill, None when no order filled.
    async fn fill(
        &mut self,
        args: &[Arg<'_, Self::Numeric>],
    ) -> Result<Option<Fill<Self::Numeric>>, Self::Error>;
}

/// Run `op` once in `session`, with parameters drawn from `rng` (in the session's transaction).
pub async fn execute<S: Session>(
    session: &mut S,
    op: Op,
    work: &mut DataInUse,
    rng: &mut impl Rng,
) -> Result<(), S::Error> {
    use Arg::{Float, Int, Text};
    let account = rng.random_range(1..=work.accounts.max(1));
    let symbol = &SYMBOLS[rng.random_range(0..SYMBOLS.len())];
    match op {
        Op::PlaceOrder => place_order(session, symbol, account, work, rng).await?,
        Op::CancelOrder | Op::OpenOrders => {
            session.run(op, 0, &[Int(account)]).await?;
        }
        Op::ExecuteTrade => {
            let mut counterparty = rng.random_range(1..=work.accounts.max(1));
            if counterparty == account {
                counterparty = account % work.accounts.max(1) + 1;
            }
            execute_trade(session, account, work.trade_ids.take(), counterparty).await?;
        }
        Op::BalanceUpdate => {
            let amount: f64 = rng.random_range(-500.0..1000.0);
            session.run(op, 0, &[Int(account), Float(amount)]).await?;
        }
        Op::RecentTrades => {
            session.run(op, 0, &[Text(symbol.name)]).await?;
        }
        Op::Position => {
            session
                .run(op, 0, &[Int(account), Text(symbol.name)])
                .await?;
        }
        Op::Transfer => transfer(session, work, rng).await?,
    }
    Ok(())
}

/// place_order: one order (and its audit row) of a random side, near the symbol's price.
async fn place_order<S: Session>(
    session: &mut S,
    symbol: &Symbol,
    account: i64,
    work: &mut DataInUse,
    rng: &mut impl Rng,
) -> Result<(), S::Error> {
    use Arg::{Float, Int, Text};
    let side = if rng.random_bool(0.5) { "BUY" } else { "SELL" };
    let price = symbol.base_price * rng.random_range(0.97..1.03);
    let quantity = (500.0 / price * rng.random_range(0.2..5.0)).max(0.0001);
    session
        .run(
            Op::PlaceOrder,
            0,
            &[
                Int(work.order_ids.take()),
                Int(account),
                Text(symbol.name),
                Text(side),
                Float(quantity),
                Float(price),
                Int(work.audit_ids.take()),
            ],
        )
        .await?;
    Ok(())
}

/// transfer: debit, pause, credit between two accounts (the hot ones when set). Nothing moves
/// when the account has too little: money is conserved either way.
async fn transfer<S: Session>(
    session: &mut S,
    work: &mut DataInUse,
    rng: &mut impl Rng,
) -> Result<(), S::Error> {
    use Arg::{Float, Int};
    let op = Op::Transfer;
    let range = if work.hot_accounts > 0 {
        work.hot_accounts
    } else {
        work.accounts
    };
    let from = rng.random_range(1..=range.max(2));
    let mut to = rng.random_range(1..=range.max(2));
    if to == from {
        to = from % range.max(2) + 1;
    }
    let cents: i64 = rng.random_range(1..=10_000);
    if session.run(op, 0, &[Int(from), Int(cents)]).await? == 1 {
        if work.transfer_pause > 0.0 {
            session.run(op, 1, &[Float(work.transfer_pause)]).await?;
        }
        session.run(op, 2, &[Int(to), Int(cents)]).await?;
    }
    Ok(())
}

/// execute_trade's statements (see [`execute_trade_sql`]): fill, lock, amount, transfer, position.
async fn execute_trade<S: Session>(
    session: &mut S,
    account: i64,
    trade_id: i64,
    counterparty: i64,
) -> Result<(), S::Error> {
    use Arg::{Int, Numeric, Text};
    let op = Op::ExecuteTrade;
    // No OPEN order of this account (all filled or taken by another worker): nothing to do.
    let Some(fill) = session
        .fill(&[Int(account), Int(trade_id), Int(counterparty)])
        .await?
    else {
        return Ok(());
    };
    session
        .run(op, 1, &[Int(fill.payer), Int(fill.payee)])
        .await?;
    let paid = session
        .numeric(op, 2, &[Int(fill.payer), Numeric(&fill.notional)])
        .await?;
    session
        .run(op, 3, &[Int(fill.payer), Int(fill.payee), Numeric(&paid)])
        .await?;
    session
        .run(
            op,
            4,
            &[
                Int(fill.owner),
                Text(&fill.symbol),
                Numeric(&fill.change),
                Numeric(&fill.price),
            ],
        )
        .await?;
    Ok(())
}

/// The operations over SPI, from their prepared plans (the reads through read-only SPI: no
/// transaction id).
pub struct SpiSession<'a, 'c> {
    client: &'a mut SpiClient<'c>,
    plans: &'a Plans,
}

impl SpiSession<'_, '_> {
    fn call(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, AnyNumeric>],
    ) -> SpiResult<pgrx::spi::SpiTupleTable<'_>> {
        let plan = &self.plans.plans[op.index()][step];
        let args: Vec<DatumWithOid<'_>> = args
            .iter()
            .map(|a| match a {
                Arg::Int(i) => (*i).into(),
                Arg::Float(f) => (*f).into(),
                Arg::Text(t) => (*t).into(),
                Arg::Numeric(n) => (*n).clone().into(),
            })
            .collect();
        if op.reads_only() {
            self.client.select(plan, None, &args)
        } else {
            self.client.update(plan, None, &args)
        }
    }
}

impl Session for SpiSession<'_, '_> {
    type Numeric = AnyNumeric;
    type Error = pgrx::spi::SpiError;

    async fn run(&mut self, op: Op, step: usize, args: &[Arg<'_, AnyNumeric>]) -> SpiResult<u64> {
        Ok(self.call(op, step, args)?.len() as u64)
    }

    async fn numeric(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, AnyNumeric>],
    ) -> SpiResult<AnyNumeric> {
        let table = self.call(op, step, args)?;
        Ok(if table.is_empty() {
            AnyNumeric::default()
        } else {
            table.first().get_one()?.unwrap_or_default()
        })
    }

    async fn fill(&mut self, args: &[Arg<'_, AnyNumeric>]) -> SpiResult<Option<Fill<AnyNumeric>>> {
        let trade = self.call(Op::ExecuteTrade, 0, args)?;
        let row = trade.first();
        if row.get::<bool>(1)? != Some(true) {
            return Ok(None);
        }
        Ok(Some(Fill {
            payer: row.get(2)?.unwrap_or_default(),
            payee: row.get(3)?.unwrap_or_default(),
            notional: row.get(4)?.unwrap_or_default(),
            owner: row.get(5)?.unwrap_or_default(),
            symbol: row.get(6)?.unwrap_or_default(),
            change: row.get(7)?.unwrap_or_default(),
            price: row.get(8)?.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seed_mix_spreads_over_trading_operations() {
        let w = default_mix();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((w[Op::PlaceOrder.index()] - 0.3).abs() < 1e-12);
        assert!((w[Op::ExecuteTrade.index()] - 0.15).abs() < 1e-12);
        assert!((w[Op::Position.index()] - 0.1).abs() < 1e-12);
        assert!((w[Op::CancelOrder.index()] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn finer_names_and_relative_weights() {
        let w = parse_mix(&json!({"execute_trade": 3, "select": 3})).unwrap();
        assert!((w[Op::ExecuteTrade.index()] - 3.0).abs() < 1e-12);
        assert!((w[Op::RecentTrades.index()] - 1.0).abs() < 1e-12);
        assert_eq!(w[Op::PlaceOrder.index()], 0.0);
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        assert!(parse_mix(&json!([1])).unwrap_err().contains("JSON object"));
        assert!(
            parse_mix(&json!({"upsert": 1}))
                .unwrap_err()
                .contains("mix.upsert")
        );
        for bad in [json!(-1), json!(1e300), json!(1_000_001)] {
            assert!(
                parse_mix(&json!({"insert": bad}))
                    .unwrap_err()
                    .contains("must be a number from 0 to 1000000"),
                "{bad}"
            );
        }
        assert!(
            parse_mix(&json!({"insert": "a"}))
                .unwrap_err()
                .contains("mix.insert")
        );
    }
}
