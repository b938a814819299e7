//! `stress.generate_audit_log(n, seed, …)`: an audit trail of who did what to which entity, with a
//! jsonb payload per event.

use super::bulk::{JsonValue, jsonb_object_datum, numeric_datum, text_datum};
use super::model::{DEFAULT_START, US_PER_DAY, US_PER_HOUR, row_rng};
use super::parallel::{IdRows, RowProducer, RowSink, produce_ids};
use super::tables::AUDIT_LOG;
use crate::error::{OrRaise, StressError};
use crate::gucs;
use pgrx::prelude::*;
use rand::RngExt;
use rand_distr::Distribution;
use rand_distr::weighted::WeightedIndex;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// (action, entity it acts on, weight)
pub const ACTIONS: &[(&str, &str, f64)] = &[
    ("ORDER_PLACED", "orders", 0.40),
    ("ORDER_CANCELLED", "orders", 0.15),
    ("TRADE_EXECUTED", "trades", 0.25),
    ("LOGIN", "accounts", 0.10),
    ("BALANCE_UPDATED", "accounts", 0.08),
    ("SETTINGS_CHANGED", "accounts", 0.02),
];
const USER_AGENTS: &[&str] = &[
    "web/4.2.1",
    "ios/3.9.0",
    "android/3.8.7",
    "api/v2",
    "fix/4.4",
];

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub ts: i64,
    pub actor: String,
    pub action: usize,
    pub entity_id: i64,
    /// payload members
    pub ip: String,
    pub user_agent: &'static str,
    pub request_id: String,
    /// for BALANCE_UPDATED: the change, in cents
    pub delta_cents: Option<i64>,
}

pub struct AuditModel {
    seed: u64,
    start: i64,
    days: i64,
    accounts: i64,
    entities: i64,
    action: WeightedIndex<f64>,
}

impl AuditModel {
    pub fn new(
        seed: u64,
        start: i64,
        days: i32,
        accounts: i64,
        entities: i64,
    ) -> Result<Self, String> {
        if !(1..=36_500).contains(&days) {
            return Err(format!("days must be between 1 and 36500, got {days}"));
        }
        if accounts < 1 || entities < 1 {
            return Err(format!(
                "accounts and entities must be at least 1, got {accounts} and {entities}"
            ));
        }
        Ok(AuditModel {
            seed,
            start,
            days: days as i64,
            accounts,
            entities,
            action: WeightedIndex::new(ACTIONS.iter().map(|a| a.2)).expect("valid weights"),
        })
    }

    /// The event with this id: a pure function of (seed, id).
    pub fn event(&self, id: i64) -> AuditEvent {
        let mut rng = row_rng(self.seed ^ 0xA0D1_7000, id);
        let action = self.action.sample(&mut rng);
        let account = rng.random_range(1..=self.accounts);
        let entity_id = if ACTIONS[action].1 == "accounts" {
            account
        } else {
            rng.random_range(1..=self.entities)
        };
        // 2% of events come from the system (risk engine, liquidations), the rest from users.
        let actor = if rng.random_range(0..50) == 0 {
            "system".to_owned()
        } else {
            format!("user:{account}")
        };
        let ip = format!(
            "10.{}.{}.{}",
            rng.random_range(0..256),
            rng.random_range(0..256),
            rng.random_range(1..255)
        );
        let user_agent = USER_AGENTS[rng.random_range(0..USER_AGENTS.len())];
        let request_id = format!("{:016x}", rng.random::<u64>());
        let delta_cents =
            (ACTIONS[action].0 == "BALANCE_UPDATED").then(|| rng.random_range(-500_000..500_000));
        AuditEvent {
            id,
            ts: self.start
                + rng.random_range(0..self.days) * US_PER_DAY
                + rng.random_range(0..24 * US_PER_HOUR),
            actor,
            action,
            entity_id,
            ip,
            user_agent,
            request_id,
            delta_cents,
        }
    }
}

/// Audit events as datums (see [`super::parallel::IdRows`]).
pub struct AuditRows {
    model: AuditModel,
    actions: Vec<(pg_sys::Datum, pg_sys::Datum)>,
}

impl AuditRows {
    pub fn new(
        seed: u64,
        start: i64,
        days: i32,
        accounts: i64,
        entities: i64,
    ) -> Result<Self, String> {
        Ok(AuditRows {
            model: AuditModel::new(seed, start, days, accounts, entities)?,
            actions: ACTIONS
                .iter()
                .map(|a| (text_datum(a.0), text_datum(a.1)))
                .collect(),
        })
    }
}

/// The parameters of a audit_log call, as its workers receive them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditLogJob {
    pub seed: u64,
    pub start: i64,
    pub days: i32,
    pub accounts: i64,
    pub entities: i64,
}

impl RowProducer for AuditRows {
    type Job = AuditLogJob;
    const ENTRY_POINT: &'static str = "pg_stress_generate_audit_log_main";

    fn from_job(job: &AuditLogJob) -> Result<Self, String> {
        AuditRows::new(job.seed, job.start, job.days, job.accounts, job.entities)
    }

    fn produce(&self, chunk: &[u8], sink: &mut impl RowSink) {
        produce_ids(self, chunk, sink);
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_generate_audit_log_main(arg: pg_sys::Datum) {
    super::parallel::worker_main::<AuditRows>(arg);
}

impl IdRows for AuditRows {
    fn fill(&self, id: i64, v: &mut [pg_sys::Datum], _nulls: &mut [bool]) {
        let e = self.model.event(id);
        v[0] = e.id.into();
        v[1] = e.ts.into();
        v[2] = text_datum(&e.actor);
        v[3] = self.actions[e.action].0;
        v[4] = self.actions[e.action].1;
        v[5] = e.entity_id.into();
        let delta = e.delta_cents.map(|cents| numeric_datum(cents, 2));
        let mut payload = vec![
            ("ip", JsonValue::Text(&e.ip)),
            ("user_agent", JsonValue::Text(e.user_agent)),
            ("request_id", JsonValue::Text(&e.request_id)),
        ];
        if let Some(delta) = delta {
            payload.push(("delta", JsonValue::Numeric(delta)));
        }
        v[6] = jsonb_object_datum(&payload);
    }
}

/// Appends `n` audit events to `stress_data.audit_log` (created when missing); returns how many.
pub fn generate_audit_log(
    n: Option<i64>,
    seed: Option<i64>,
    start_at: Option<TimestampWithTimeZone>,
    days: Option<i32>,
    accounts: Option<i64>,
    entities: Option<i64>,
    workers: Option<i32>,
) -> i64 {
    const F: &str = "generate_audit_log";
    let start_at = crate::args::finite_time(F, "start_at", start_at);
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let n = crate::args::row_count(F, n).or_raise();
    let seed = crate::args::seed_or_random(seed);
    let schema = gucs::data_schema();
    let (days, accounts, entities) = (
        days.unwrap_or(30),
        super::accounts_or_existing(&schema, accounts, 10_000),
        entities.unwrap_or(1_000_000),
    );
    let start = start_at
        .map(pg_sys::TimestampTz::from)
        .unwrap_or(DEFAULT_START);
    let workers = crate::args::worker_count(F, workers).or_raise();
    let job = AuditLogJob {
        seed: seed as u64,
        start,
        days,
        accounts,
        entities,
    };
    let rows = AuditRows::from_job(&job)
        .map_err(|e| {
            StressError::invalid(
                F,
                e,
                "See docs/generate.md for the parameters of stress.generate_audit_log.",
            )
        })
        .or_raise();
    let outcome = super::write_id_rows(&AUDIT_LOG, &schema, n, F, &job, &rows, workers);
    let parameters = json!({"n": n, "seed": seed, "start_at": start_at.map(|t| t.to_iso_string()), "days": days,
                            "accounts": accounts, "entities": entities, "workers": workers});
    super::record(F, parameters, started_at, &schema, "audit_log", &outcome);
    outcome.rows as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_deterministic_and_in_domain() {
        let m = AuditModel::new(3, 0, 30, 100, 1000).unwrap();
        assert_eq!(m.event(5), m.event(5));
        for id in 1..=5000 {
            let e = m.event(id);
            assert!(e.ts >= 0 && e.ts < 30 * US_PER_DAY);
            assert!((1..=1000).contains(&e.entity_id));
            assert!(e.actor == "system" || e.actor.starts_with("user:"));
            assert!(e.ip.starts_with("10.") && e.request_id.len() == 16);
            assert_eq!(
                e.delta_cents.is_some(),
                ACTIONS[e.action].0 == "BALANCE_UPDATED"
            );
        }
        assert!(AuditModel::new(1, 0, 0, 1, 1).is_err());
        assert!(AuditModel::new(1, 0, 1, 0, 1).is_err());
    }
}
