//! Every SQL example in README.md and docs/*.md runs, in doc order, on a database set up as
//! `make demo` sets one up (pg_stress and pg_cron, orders in stress_data, a trading dataset in
//! schema trading), with the few objects the prose says to have (a role alice, the operations
//! guide's app.* log tables, the custom-transaction example's items and hits).
//!
//! Each file's ```sql blocks run in one psql session, as a reader would paste them (psql's \gset
//! and \g included), stopping at the first error. Two things differ from the page, so that the
//! whole set takes a minute rather than an hour: intervals of seconds and minutes become
//! '1 second', and the row counts of a million or more become tens of thousands ([`scaled`]). A
//! block that cannot run on one server says why in a `<!-- docs-test: not run: … -->` line above
//! its fence.

use crate::common::pgcluster_with;
use postgres::NoTls;
use std::path::PathBuf;
use std::process::Command;

const CLUSTER: &str = "it-docs";
const DB: &str = "docs";
/// In doc order: the README, then the guides as the README lists them.
const FILES: &[&str] = &[
    "README.md",
    "docs/generate.md",
    "docs/load.md",
    "docs/benchmark.md",
    "docs/capacity.md",
    "docs/integrity.md",
    "docs/report.md",
    "docs/operations.md",
    "docs/replication.md",
    "docs/reference.md",
];

/// The SQL blocks of a Markdown page that are meant to run, and how many say why they are not.
fn sql_blocks(page: &str) -> (Vec<String>, usize) {
    let (mut blocks, mut skipped) = (Vec::new(), 0);
    let mut lines = page.lines().peekable();
    let mut previous = "";
    while let Some(line) = lines.next() {
        if line.trim() == "```sql" {
            let mut block = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            if previous.starts_with("<!-- docs-test: not run:") {
                skipped += 1;
            } else {
                blocks.push(block);
            }
        }
        previous = line;
    }
    (blocks, skipped)
}

/// An example scaled to a test: '30 seconds', '1 minute', '24 minutes' … become '1 second' (5 seconds
/// or less stay); a
/// million rows become tens of thousands.
fn scaled(sql: &str) -> String {
    let mut out = String::new();
    for line in sql.lines() {
        // (a comment is copied as it is: its apostrophes open no literal)
        let mut rest = line;
        while !rest.is_empty() {
            let quote = rest.find('\'');
            let comment = rest.find("--");
            match (quote, comment) {
                (Some(q), c) if c.is_none_or(|c| q < c) => {
                    out.push_str(&rest[..q]);
                    let after = &rest[q + 1..];
                    let end = after.find('\'').unwrap_or(after.len());
                    let literal = &after[..end];
                    let mut words = literal.split(' ');
                    // (5 seconds or less stay: a verdict reads its noise from 3 seconds or more)
                    let short_interval = match (
                        words.next().and_then(|n| n.parse::<u32>().ok()),
                        words.next(),
                        words.next(),
                    ) {
                        (Some(n), Some("second" | "seconds"), None) => n > 5,
                        (Some(_), Some("minute" | "minutes"), None) => true,
                        _ => false,
                    };
                    if short_interval {
                        out.push_str("'1 second'");
                    } else {
                        out.push('\'');
                        out.push_str(literal);
                        if end < after.len() {
                            out.push('\'');
                        }
                    }
                    rest = after.get(end + 1..).unwrap_or("");
                }
                _ => {
                    out.push_str(rest);
                    rest = "";
                }
            }
        }
        out.push('\n');
    }
    for (from, to) in [
        ("orders => 1000000", "orders => 20000"),
        ("generate_orders(1000000", "generate_orders(20000"),
        ("generate_orders(200000", "generate_orders(20000"),
        ("generate_trades(5000000", "generate_trades(50000"),
        ("generate_trades(500000", "generate_trades(20000"),
        ("generate_audit_log(1000000", "generate_audit_log(20000"),
        ("\"count\": 1000000", "\"count\": 20000"),
        ("\"count\": 5000000", "\"count\": 50000"),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// What `make demo` leaves, and what the pages' prose asks the reader to have.
const SETUP: &str = "
CREATE EXTENSION pg_stress;
CREATE EXTENSION pg_cron;
CREATE EXTENSION pg_stat_statements;
SET stress.progress_interval = 0;
SELECT stress.generate_orders(20000, seed => 42);
SET stress.data_schema = 'trading';
SELECT count(*) FROM stress.generate_dataset(orders => 20000, seed => 42);
RESET stress.data_schema;
CREATE ROLE alice LOGIN;
CREATE SCHEMA app;
CREATE TABLE app.system_logs (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, message text);
CREATE TABLE app.error_logs (LIKE app.system_logs INCLUDING ALL);
CREATE TABLE app.error_logs_archive (LIKE app.system_logs);
CREATE TABLE app.performance_logs (LIKE app.system_logs INCLUDING ALL);
CREATE TABLE app.user_action_logs (LIKE app.system_logs INCLUDING ALL);
INSERT INTO app.system_logs (created_at, message)
    SELECT now() - g * interval '1 day', 'line ' || g FROM generate_series(1, 400) g;
INSERT INTO app.error_logs (created_at, message) SELECT created_at, message FROM app.system_logs;
CREATE MATERIALIZED VIEW app.dashboard_summary AS SELECT count(*) AS n FROM app.system_logs;
CREATE UNIQUE INDEX ON app.dashboard_summary (n);   -- (refreshed CONCURRENTLY: operations.md)
CREATE TABLE items (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, tag text);
INSERT INTO items (id) SELECT generate_series(1, 100000);
CREATE TABLE hits (id int, tag text);
";

/// A line whose comment says it raises an ERROR when a target is missed (assert_targets) runs with
/// ON_ERROR_STOP off: on two short runs it may well fail, as documented.
fn may_fail(block: &str) -> String {
    block
        .lines()
        .map(|line| {
            if line.contains("-- ERROR") {
                format!("\\set ON_ERROR_STOP 0\n{line}\n\\set ON_ERROR_STOP 1\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

#[test]
fn every_sql_example_in_the_docs_runs_in_doc_order() {
    if !crate::common::has_module("pg_cron", "every_sql_example_in_the_docs_runs_in_doc_order")
        || !crate::common::has_module(
            "pg_stat_statements",
            "every_sql_example_in_the_docs_runs_in_doc_order",
        )
    {
        return;
    }
    crate::common::pgcluster("destroy", CLUSTER);
    let config = pgcluster_with(
        "start",
        CLUSTER,
        &[
            "shared_preload_libraries = 'pg_stress, pg_cron, pg_stat_statements'",
            &format!("cron.database_name = '{DB}'"),
            "cron.use_background_workers = on",
        ],
    )
    .unwrap();
    let mut admin = config.connect(NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut db = config.clone();
    db.dbname(DB);
    db.connect(NoTls).unwrap().batch_execute(SETUP).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = crate::common::scratch_file("docs-examples");
    // (empty: the pages the examples write, checked below, are this run's)
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let (host, port) = match (config.get_hosts(), config.get_ports()) {
        ([postgres::config::Host::Unix(path)], [port]) => (path.display().to_string(), *port),
        other => panic!("{other:?}"),
    };
    let (mut ran, mut not_run) = (0, 0);
    for file in FILES {
        let page = std::fs::read_to_string(root.join(file)).unwrap();
        let (blocks, skipped) = sql_blocks(&page);
        not_run += skipped;
        ran += blocks.len();
        let script: String = blocks.iter().map(|b| may_fail(&scaled(b))).collect();
        let path = scratch.join(file.replace('/', "_") + ".sql");
        std::fs::write(&path, format!("\\set ON_ERROR_STOP 1\n{script}")).unwrap();
        let out = Command::new(format!("{}/psql", crate::common::bindir()))
            .current_dir(&scratch)
            .args([
                "-X",
                "-q",
                "-h",
                &host,
                "-p",
                &port.to_string(),
                "-d",
                DB,
                "-f",
            ])
            .arg(&path)
            .env("PGUSER", config.get_user().unwrap())
            .env("PGOPTIONS", "-c stress.progress_interval=0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: an example failed (script {}):\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("docs: {ran} SQL examples ran, {not_run} marked not run");
    assert!(ran >= 40, "only {ran} examples found");
    // (what the tour wrote is there)
    assert!(scratch.join("run.html").exists());
    crate::common::pgcluster("destroy", CLUSTER);
}

#[test]
fn examples_are_scaled_only_in_durations_and_row_counts() {
    assert_eq!(
        scaled("CALL stress.ramp('{1,2,4,8}', '30 seconds', max_p99_ms => 100)"),
        "CALL stress.ramp('{1,2,4,8}', '1 second', max_p99_ms => 100)\n"
    );
    assert_eq!(
        scaled("SELECT stress.archive('app.system_logs', 'created_at', '90 days')"),
        "SELECT stress.archive('app.system_logs', 'created_at', '90 days')\n"
    );
    assert_eq!(
        scaled("generate_dataset(orders => 1000000, seed => 1)"),
        "generate_dataset(orders => 20000, seed => 1)\n"
    );
    assert_eq!(
        scaled("CALL x('1 minute');  -- the seed's mix\nSELECT y('5 minutes', '{}');"),
        "CALL x('1 second');  -- the seed's mix\nSELECT y('1 second', '{}');\n"
    );
    assert_eq!(
        scaled("CALL z('5 seconds'), z('6 seconds')"),
        "CALL z('5 seconds'), z('1 second')\n"
    );
    let (blocks, skipped) = sql_blocks(
        "x\n```sql\nSELECT 1;\n```\n<!-- docs-test: not run: a standby -->\n```sql\nSELECT 2;\n```\n",
    );
    assert_eq!((blocks, skipped), (vec!["SELECT 1;\n".to_owned()], 1));
}
