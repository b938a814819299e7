//! The tables the generators write, declared once: their DDL and the shape the bulk writer relies on.
//!
//! A generator creates its table when it is missing. When the table exists, its columns must be
//! exactly the declared ones (names, types and typmods, in order), because rows are written as
//! datums straight into the heap; anything else is refused with 42P16 instead of written wrongly.

use crate::error::StressError;
use crate::postgres::quote::{qualified, quote_ident};
use pgrx::PgTupleDesc;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// `numeric(20,8)`'s typmod: ((precision << 16) | scale) + VARHDRSZ.
pub const NUMERIC_20_8: i32 = ((20 << 16) | 8) + 4;

pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub type_oid: pg_sys::Oid,
    pub typmod: i32,
    /// Collation and constraints after the type (`NOT NULL`, `CHECK (…)`). Codes such as symbols and
    /// statuses are ASCII and compared as bytes (`COLLATE "C"`): faster sorts and index builds, and
    /// `LIKE 'BTC%'` can use an index.
    pub constraint: &'static str,
}

pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Table constraints, e.g. `PRIMARY KEY (id)`.
    pub constraints: &'static [&'static str],
    /// Foreign keys (column, referenced table in the same schema, referenced column), declared only
    /// when the referenced table exists at creation: orders can be generated without accounts.
    pub references: &'static [(&'static str, &'static str, &'static str)],
    /// (index name, column list)
    pub indexes: &'static [(&'static str, &'static str)],
}

const fn col(
    name: &'static str,
    sql_type: &'static str,
    type_oid: pg_sys::Oid,
    typmod: i32,
    constraint: &'static str,
) -> Column {
    Column {
        name,
        sql_type,
        type_oid,
        typmod,
        constraint,
    }
}

use pg_sys::{
    INT8OID as INT8, JSONBOID as JSONB, NUMERICOID as NUMERIC, TEXTOID as TEXT,
    TIMESTAMPTZOID as TSTZ,
};
const N20_8: i32 = NUMERIC_20_8;

#[rustfmt::skip]
pub const ACCOUNTS: TableSpec = TableSpec {
    name: "accounts",
    columns: &[
        col("id", "bigint", INT8, -1, "NOT NULL"),
        col("owner", "text", TEXT, -1, "NOT NULL"),
        col("currency", "text", TEXT, -1, "COLLATE \"C\" NOT NULL CHECK (currency IN ('USDT', 'USD', 'EUR', 'BTC'))"),
        col("balance", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (balance >= 0)"),
        col("created_at", "timestamptz", TSTZ, -1, "NOT NULL"),
    ],
    constraints: &["PRIMARY KEY (id)"],
    references: &[],
    indexes: &[("accounts_owner_idx", "owner")],
};

#[rustfmt::skip]
pub const ORDERS: TableSpec = TableSpec {
    name: "orders",
    columns: &[
        col("id", "bigint", INT8, -1, "NOT NULL"),
        col("account_id", "bigint", INT8, -1, "NOT NULL"),
        col("symbol", "text", TEXT, -1, "COLLATE \"C\" NOT NULL"),
        col("side", "text", TEXT, -1, "COLLATE \"C\" NOT NULL CHECK (side IN ('BUY', 'SELL'))"),
        col("order_type", "text", TEXT, -1, "COLLATE \"C\" NOT NULL CHECK (order_type IN ('LIMIT', 'MARKET', 'STOP'))"),
        col("status", "text", TEXT, -1,
            "COLLATE \"C\" NOT NULL CHECK (status IN ('OPEN', 'PARTIAL', 'FILLED', 'CANCELLED', 'REJECTED'))"),
        col("quantity", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (quantity > 0)"),
        col("price", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (price > 0)"),
        col("created_at", "timestamptz", TSTZ, -1, "NOT NULL"),
    ],
    constraints: &["PRIMARY KEY (id)"],
    references: &[("account_id", "accounts", "id")],
    indexes: &[
        ("orders_status_idx", "status"),
        ("orders_symbol_created_at_idx", "symbol, created_at"),
        // (with id: an account's oldest or newest open order — execute_trade, cancel_order — is
        // found in this index; on (account_id) alone the planner walks the primary key for
        // `ORDER BY id LIMIT 1`, and as open orders drift to high ids that read 24,000 blocks a
        // call and took a run from 7,300 to 780 ops/s within 20 seconds)
        ("orders_account_id_idx", "account_id, id"),
    ],
};

#[rustfmt::skip]
pub const TRADES: TableSpec = TableSpec {
    name: "trades",
    columns: &[
        col("id", "bigint", INT8, -1, "NOT NULL"),
        col("order_id", "bigint", INT8, -1, "NOT NULL"),
        col("account_id", "bigint", INT8, -1, "NOT NULL"),
        col("symbol", "text", TEXT, -1, "COLLATE \"C\" NOT NULL"),
        col("side", "text", TEXT, -1, "COLLATE \"C\" NOT NULL CHECK (side IN ('BUY', 'SELL'))"),
        col("quantity", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (quantity > 0)"),
        col("price", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (price > 0)"),
        col("fee", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (fee >= 0)"),
        col("executed_at", "timestamptz", TSTZ, -1, "NOT NULL"),
    ],
    constraints: &["PRIMARY KEY (id)"],
    references: &[("order_id", "orders", "id"), ("account_id", "accounts", "id")],
    indexes: &[
        ("trades_order_id_idx", "order_id"),
        ("trades_symbol_executed_at_idx", "symbol, executed_at"),
        ("trades_account_id_idx", "account_id"),
    ],
};

/// `numeric(28,8)`: net positions can exceed any single order.
pub const NUMERIC_28_8: i32 = ((28 << 16) | 8) + 4;

#[rustfmt::skip]
pub const POSITIONS: TableSpec = TableSpec {
    name: "positions",
    columns: &[
        col("account_id", "bigint", INT8, -1, "NOT NULL"),
        col("symbol", "text", TEXT, -1, "COLLATE \"C\" NOT NULL"),
        col("quantity", "numeric(28,8)", NUMERIC, NUMERIC_28_8, "NOT NULL"),
        col("avg_price", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (avg_price > 0)"),
        col("updated_at", "timestamptz", TSTZ, -1, "NOT NULL"),
    ],
    constraints: &["PRIMARY KEY (account_id, symbol)"],
    references: &[("account_id", "accounts", "id")],
    indexes: &[("positions_symbol_idx", "symbol")],
};

#[rustfmt::skip]
pub const MARKET_DATA: TableSpec = TableSpec {
    name: "market_data",
    columns: &[
        col("symbol", "text", TEXT, -1, "COLLATE \"C\" NOT NULL"),
        col("ts", "timestamptz", TSTZ, -1, "NOT NULL"),
        col("open", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (open > 0)"),
        col("high", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL"),
        col("low", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (low > 0)"),
        col("close", "numeric(20,8)", NUMERIC, N20_8, "NOT NULL CHECK (close > 0)"),
        col("volume", "numeric(28,8)", NUMERIC, NUMERIC_28_8, "NOT NULL CHECK (volume >= 0)"),
    ],
    constraints: &[
        "PRIMARY KEY (symbol, ts)",
        "CHECK (low <= least(open, close) AND high >= greatest(open, close))",
    ],
    references: &[],
    indexes: &[("market_data_ts_idx", "ts")],
};

#[rustfmt::skip]
pub const AUDIT_LOG: TableSpec = TableSpec {
    name: "audit_log",
    columns: &[
        col("id", "bigint", INT8, -1, "NOT NULL"),
        col("ts", "timestamptz", TSTZ, -1, "NOT NULL"),
        col("actor", "text", TEXT, -1, "NOT NULL"),
        col("action", "text", TEXT, -1, "COLLATE \"C\" NOT NULL"),
        col("entity", "text", TEXT, -1, "COLLATE \"C\" NOT NULL"),
        col("entity_id", "bigint", INT8, -1, "NOT NULL"),
        col("payload", "jsonb", JSONB, -1, "NOT NULL"),
    ],
    constraints: &["PRIMARY KEY (id)"],
    references: &[],
    indexes: &[("audit_log_ts_idx", "ts"), ("audit_log_entity_idx", "entity, entity_id")],
};

impl TableSpec {
    /// `CREATE TABLE` and `CREATE INDEX` statements for this table in `schema`.
    pub fn ddl(&self, schema: &str) -> Vec<String> {
        let table = qualified(schema, self.name);
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {} {}", quote_ident(c.name), c.sql_type, c.constraint))
            .collect();
        parts.extend(self.constraints.iter().map(|c| c.to_string()));
        for (column, parent, parent_column) in self.references {
            if lookup(&qualified(schema, parent)).is_some() {
                parts.push(format!(
                    "FOREIGN KEY ({}) REFERENCES {} ({})",
                    quote_ident(column),
                    qualified(schema, parent),
                    quote_ident(parent_column)
                ));
            }
        }
        let mut ddl = vec![format!(
            "CREATE TABLE {table} (\n    {}\n)",
            parts.join(",\n    ")
        )];
        ddl.extend(
            self.indexes.iter().map(|(name, cols)| {
                format!("CREATE INDEX {} ON {table} ({cols})", quote_ident(name))
            }),
        );
        ddl
    }

    /// The table's oid in `schema`, creating schema and table when missing.
    /// The table's oid, creating it (and its schema) when missing. First refuses, as PostgreSQL's own
    /// writing commands do, in a read-only transaction or on a standby (25006): the bulk path writes
    /// below the executor, which is where PostgreSQL would otherwise say so.
    pub fn ensure(&self, schema: &str, function: &'static str) -> pg_sys::Oid {
        super::prevent_writes_where_read_only(function);
        let table = qualified(schema, self.name);
        if let Some(oid) = lookup(&table) {
            return oid;
        }
        // Two first calls at once must not both create the table: serialise creators (only them)
        // until commit, and look again once we hold the lock.
        Spi::run_with_args(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[table.as_str().into()],
        )
        .expect("taking the table-creation lock");
        if let Some(oid) = lookup(&table) {
            return oid;
        }
        // Only when missing: CREATE SCHEMA IF NOT EXISTS would NOTICE on every new table.
        let schema_missing = Spi::get_one_with_args::<bool>(
            "SELECT to_regnamespace($1) IS NULL",
            &[quote_ident(schema).as_str().into()],
        )
        .expect("looking up the data schema")
        .unwrap_or(true);
        if schema_missing {
            Spi::run(&format!("CREATE SCHEMA {}", quote_ident(schema)))
                .expect("creating the data schema");
        }
        for statement in self.ddl(schema) {
            Spi::run(&statement).expect("creating a generated table");
        }
        lookup(&table).expect("table exists after CREATE TABLE")
    }

    /// Refuse a table whose live columns differ from ours.
    ///
    /// # Safety
    /// `rel` must be an open relation.
    pub unsafe fn check_shape(
        &self,
        rel: pg_sys::Relation,
        display: &str,
    ) -> Result<(), StressError> {
        // SAFETY: rel is an open relation (the callers hold it); its descriptor is borrowed, not
        // freed, for this call.
        let tupdesc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
        let live: Vec<_> = tupdesc.iter().filter(|a| !a.is_dropped()).collect();
        // NOT NULL too: readers of these tables (positions reads trades' heap) rely on it.
        let matches = live.len() == self.columns.len()
            && live.iter().zip(self.columns).all(|(a, c)| {
                a.name() == c.name
                    && a.type_oid().value() == c.type_oid
                    && a.type_mod() == c.typmod
                    && a.attnotnull
            });
        if matches && live.len() == tupdesc.len() {
            return Ok(());
        }
        let expected: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect();
        Err(StressError::TableShape {
            table: display.to_owned(),
            detail: format!(
                "Expected exactly these columns, in order, each NOT NULL, and no dropped ones: {}.",
                expected.join(", ")
            ),
        })
    }
}

/// `to_regclass(name)`.
fn lookup(qualified_name: &str) -> Option<pg_sys::Oid> {
    Spi::get_one_with_args::<pg_sys::Oid>("SELECT to_regclass($1)::oid", &[qualified_name.into()])
        .expect("to_regclass")
}
