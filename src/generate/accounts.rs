//! `stress.generate_accounts(n, seed, …)`: trading accounts with owners, currencies and balances.

use super::bulk::{numeric_datum, text_datum};
use super::model::{NUMERIC_SCALE, US_PER_DAY, row_rng, to_units};
use super::parallel::{IdRows, RowProducer, RowSink, produce_ids};
use super::tables::ACCOUNTS;
use crate::error::{OrRaise, StressError};
use crate::gucs;
use pgrx::prelude::*;
use rand::RngExt;
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};
use serde_json::json;

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "uma", "victor", "wendy", "xavier",
    "yasmin", "zoe", "amir", "bianca", "chen", "dmitri", "elena", "farah", "goran", "hiro", "ines",
];
const LAST: &[&str] = &[
    "smith", "garcia", "chen", "muller", "rossi", "kowalski", "tanaka", "silva", "novak", "dubois",
    "jensen", "ivanova", "haddad", "okafor", "lee", "nguyen",
];
/// 2024-01-01 00:00:00 UTC: accounts open during the year before the default trading period.
const ACCOUNTS_DEFAULT_START: i64 = 757_382_400_000_000;
pub const CURRENCIES: &[&str] = &["USDT", "USD", "EUR", "BTC"];
const CURRENCY_WEIGHTS: &[f64] = &[0.70, 0.15, 0.10, 0.05];

/// One account as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub owner: String,
    pub currency: usize,
    /// 10^-8 units, two decimals of precision
    pub balance: i64,
    pub created_at: i64,
}

pub struct AccountModel {
    seed: u64,
    start: i64,
    days: i64,
    currency: WeightedIndex<f64>,
    balance: LogNormal<f64>,
}

impl AccountModel {
    pub fn new(seed: u64, start: i64, days: i32) -> Result<Self, String> {
        if !(1..=36_500).contains(&days) {
            return Err(format!("days must be between 1 and 36500, got {days}"));
        }
        Ok(AccountModel {
            seed,
            start,
            days: days as i64,
            currency: WeightedIndex::new(CURRENCY_WEIGHTS).expect("valid weights"),
            // Balances span a few dollars to millions, most around ten thousand.
            balance: LogNormal::new(10_000f64.ln(), 1.5).expect("valid lognormal"),
        })
    }

    /// The account with this id: a pure function of (seed, id).
    pub fn account(&self, id: i64) -> Account {
        let mut rng = row_rng(self.seed ^ 0xACC0_0000, id);
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        Account {
            id,
            owner: format!("{first}.{last}.{id}"),
            currency: self.currency.sample(&mut rng),
            balance: to_units(self.balance.sample(&mut rng).min(1e9), 2),
            created_at: self.start + rng.random_range(0..self.days * US_PER_DAY),
        }
    }
}

/// Account rows as datums (see [`super::parallel::IdRows`]).
pub struct AccountRows {
    model: AccountModel,
    currencies: Vec<pg_sys::Datum>,
}

impl AccountRows {
    pub fn new(seed: u64, start: i64, days: i32) -> Result<Self, String> {
        Ok(AccountRows {
            model: AccountModel::new(seed, start, days)?,
            currencies: CURRENCIES.iter().map(|c| text_datum(c)).collect(),
        })
    }
}

/// The parameters of a accounts call, as its workers receive them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountsJob {
    pub seed: u64,
    pub start: i64,
    pub days: i32,
}

impl RowProducer for AccountRows {
    type Job = AccountsJob;
    const ENTRY_POINT: &'static str = "pg_stress_generate_accounts_main";

    fn from_job(job: &AccountsJob) -> Result<Self, String> {
        AccountRows::new(job.seed, job.start, job.days)
    }

    fn produce(&self, chunk: &[u8], sink: &mut impl RowSink) {
        produce_ids(self, chunk, sink);
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_generate_accounts_main(arg: pg_sys::Datum) {
    super::parallel::worker_main::<AccountRows>(arg);
}

impl IdRows for AccountRows {
    fn fill(&self, id: i64, v: &mut [pg_sys::Datum], _nulls: &mut [bool]) {
        let a = self.model.account(id);
        v[0] = a.id.into();
        v[1] = text_datum(&a.owner);
        v[2] = self.currencies[a.currency];
        v[3] = numeric_datum(a.balance, NUMERIC_SCALE);
        v[4] = a.created_at.into();
    }
}

/// Appends `n` accounts to `stress_data.accounts` (created when missing); returns how many.
pub fn generate_accounts(
    n: Option<i64>,
    seed: Option<i64>,
    start_at: Option<TimestampWithTimeZone>,
    days: Option<i32>,
    workers: Option<i32>,
) -> i64 {
    const F: &str = "generate_accounts";
    let start_at = crate::args::finite_time(F, "start_at", start_at);
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let n = crate::args::row_count(F, n).or_raise();
    let seed = crate::args::seed_or_random(seed);
    let days = days.unwrap_or(365);
    let start = start_at
        .map(pg_sys::TimestampTz::from)
        .unwrap_or(ACCOUNTS_DEFAULT_START);
    let workers = crate::args::worker_count(F, workers).or_raise();
    let job = AccountsJob {
        seed: seed as u64,
        start,
        days,
    };
    let rows = AccountRows::from_job(&job)
        .map_err(|e| StressError::invalid(F, e, "days is the period accounts were opened in."))
        .or_raise();
    let schema = gucs::data_schema();
    let outcome = super::write_id_rows(&ACCOUNTS, &schema, n, F, &job, &rows, workers);
    let parameters = json!({"n": n, "seed": seed, "start_at": start_at.map(|t| t.to_iso_string()), "days": days,
                            "workers": workers});
    super::record(F, parameters, started_at, &schema, "accounts", &outcome);
    outcome.rows as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_deterministic_and_in_domain() {
        let m = AccountModel::new(1, 0, 365).unwrap();
        assert_eq!(m.account(7), m.account(7));
        let mut usdt = 0;
        for id in 1..=10_000 {
            let a = m.account(id);
            assert!(a.balance > 0 && a.created_at >= 0 && a.created_at < 365 * US_PER_DAY);
            assert!(a.owner.ends_with(&format!(".{id}")));
            usdt += (a.currency == 0) as i32;
        }
        assert!((6_500..7_500).contains(&usdt), "USDT share {usdt}");
    }
}
