//! Integration tests against a running PostgreSQL 15 with pg_stress and pg_cron preloaded, for what
//! the in-transaction #[pg_test]s cannot do: several databases, pg_dump/pg_restore, VACUUM FULL,
//! cancellation and statement_timeout, NOTICEs as a client sees them.
//!
//! `scripts/test.sh` (run by `make test`) starts the cluster and exports PGHOST/PGPORT/PGUSER.

mod benchmark;
/// The caller does not distort the run (procedures that commit).
mod caller;
/// The chaos tier: every run ends when told, and is recorded honestly after any crash.
mod chaos;
mod common;
mod compare;
mod contention;
/// Every SQL example in the docs runs, in doc order.
mod docs;
mod generate;
mod integrity;
/// REPEATABLE READ and SERIALIZABLE callers.
mod isolation;
mod load;
mod operations;
mod replication;
mod report_html;
mod scenarios;
/// The hostile-role tier.
mod security;
mod target;
/// ALTER EXTENSION pg_stress UPDATE ends where a fresh install does.
mod upgrade;
