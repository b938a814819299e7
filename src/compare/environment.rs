//! What a run ran on, recorded with it (`stress.runs.environment`) and compared between runs: the
//! server and pg_stress versions, the CPUs and memory, the settings that move performance and
//! every setting not at its default in the run's session, the extensions, and the data's size (the
//! data schema's tables and those the run's statements name).
//!
//! It is read in the session that runs the work (a load run's first worker, which connects as the
//! caller with the role's and database's settings; the caller's own session for calls that run
//! in it), as that session's role: it shows what pg_settings shows that role. Settings whose
//! names say they hold a secret (a password, a conninfo, a key) are never read.

use pgrx::JsonB;
use pgrx::pg_sys;
use serde_json::Value;

/// Settings recorded whether or not they are at their default.
const PERFORMANCE_SETTINGS: &[&str] = &[
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "wal_buffers",
    "wal_compression",
    "commit_delay",
    "max_wal_size",
    "min_wal_size",
    "checkpoint_timeout",
    "checkpoint_completion_target",
    "jit",
    "max_connections",
    "max_worker_processes",
    "max_parallel_workers",
    "max_parallel_workers_per_gather",
    "effective_io_concurrency",
    "random_page_cost",
    "huge_pages",
    "autovacuum",
    "track_io_timing",
    "default_transaction_isolation",
    "data_checksums",
    "shared_preload_libraries",
];

/// Settings left out even when not at their default: they say who is connected and how, or where
/// files are, not how fast the server is.
const NOT_RECORDED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "log_timezone",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "transaction_isolation",
    "transaction_read_only",
    "transaction_deferrable",
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "cluster_name",
];

/// A name that may hold a secret (primary_conninfo, ssl_passphrase_command, a custom
/// `app.password`): never read.
const SECRET_NAMES: &str = "password|passphrase|conninfo|secret|key|token";

/// The environment of this session, with the tables of `schema` (the run's data) when it has one
/// and the `relations` its statements name.
pub fn capture(schema: Option<&str>, relations: &[pg_sys::Oid]) -> Value {
    let recorded: Vec<&str> = PERFORMANCE_SETTINGS.to_vec();
    let left_out: Vec<&str> = NOT_RECORDED.to_vec();
    // (read-only SPI: no transaction id; every name qualified, as the caller's search_path is
    // whatever it is)
    // (in a subtransaction: what a run ran on is worth recording, not worth failing the run for)
    let captured = crate::postgres::subxact::run_isolated(|| {
        crate::postgres::spi_read::one::<JsonB>(
        "SELECT pg_catalog.jsonb_build_object(
             'server_version', pg_catalog.current_setting('server_version'),
             'server_version_num', pg_catalog.current_setting('server_version_num')::pg_catalog.int4,
             'pg_stress', (SELECT e.extversion FROM pg_catalog.pg_extension e
                           WHERE e.extname OPERATOR(pg_catalog.=) 'pg_stress'),
             'extensions', (SELECT pg_catalog.jsonb_object_agg(e.extname, e.extversion)
                            FROM pg_catalog.pg_extension e),
             'settings', (SELECT pg_catalog.jsonb_object_agg(s.name, pg_catalog.current_setting(s.name))
                          FROM pg_catalog.pg_settings s
                          WHERE (s.name OPERATOR(pg_catalog.=) ANY ($2)
                                 OR s.source OPERATOR(pg_catalog.<>) ALL ('{default,override}'::pg_catalog.text[]))
                            AND s.name OPERATOR(pg_catalog.<>) ALL ($3)
                            AND NOT s.name OPERATOR(pg_catalog.~*) $4
                            AND s.category OPERATOR(pg_catalog.<>) 'File Locations'),
             'database_bytes', pg_catalog.pg_database_size(pg_catalog.current_database()),
             'tables', (SELECT pg_catalog.jsonb_object_agg(
                                   pg_catalog.format('%I.%I', n.nspname, c.relname),
                                   pg_catalog.jsonb_build_object(
                                       'rows', GREATEST(c.reltuples, 0)::pg_catalog.int8,
                                       'bytes', pg_catalog.pg_total_relation_size(c.oid)))
                        FROM pg_catalog.pg_class c
                        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                        WHERE (n.nspname OPERATOR(pg_catalog.=) $1 OR c.oid OPERATOR(pg_catalog.=) ANY ($5))
                          AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,m}'::pg_catalog.\"char\"[])))",
        &[
            schema.into(),
            recorded.into(),
            left_out.into(),
            SECRET_NAMES.into(),
            relations.to_vec().into(),
        ],
    )
    });
    let mut environment = match captured {
        Ok(Ok(Some(JsonB(v)))) => v,
        Ok(Ok(None)) => Value::Object(Default::default()),
        Ok(Err(e)) => serde_json::json!({"error": e.to_string()}),
        Err(report) => serde_json::json!({"error": report.message()}),
    };
    environment["cpus"] = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
        .into();
    // SAFETY: sysconf only reads system constants.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && page_size > 0 {
        environment["memory_bytes"] = pages.saturating_mul(page_size).into();
    }
    environment
}

/// One thing that differs between the environments of two runs (None: the run does not have it).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub item: String,
    pub baseline: Option<String>,
    pub candidate: Option<String>,
}

/// A size changes by less than this between runs on the same data (a load run adds rows): not a
/// difference worth a line.
const SIZE_CHANGE: f64 = 0.10;

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        v => out.push((prefix.to_owned(), v.clone())),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Whether `item` is a size (the data's), compared with [`SIZE_CHANGE`].
fn is_size(item: &str) -> bool {
    item == "database_bytes" || item.starts_with("tables.")
}

/// What differs between two environments, in the order of the candidate's items (then the
/// baseline's it lacks). Sizes differ when they moved by more than 10%.
pub fn differences(baseline: &Value, candidate: &Value) -> Vec<Difference> {
    let (mut b, mut c) = (Vec::new(), Vec::new());
    flatten("", baseline, &mut b);
    flatten("", candidate, &mut c);
    let find = |items: &[(String, Value)], item: &str| {
        items
            .iter()
            .find(|(k, _)| k == item)
            .map(|(_, v)| v.clone())
    };
    let mut out = Vec::new();
    let mut items: Vec<&String> = c.iter().map(|(k, _)| k).collect();
    items.extend(
        b.iter()
            .map(|(k, _)| k)
            .filter(|k| !c.iter().any(|(ck, _)| ck == *k)),
    );
    for item in items {
        let (bv, cv) = (find(&b, item), find(&c, item));
        let differs = match (&bv, &cv) {
            (Some(x), Some(y)) if is_size(item) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (y - x).abs() > SIZE_CHANGE * x.abs().max(1.0),
                _ => x != y,
            },
            (x, y) => x != y,
        };
        if differs {
            out.push(Difference {
                item: item.clone(),
                baseline: bv.as_ref().map(text),
                candidate: cv.as_ref().map(text),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_differs_between_two_environments() {
        let a = json!({"server_version": "15.14", "cpus": 2,
                       "settings": {"shared_buffers": "128MB", "jit": "on"},
                       "tables": {"trading.orders": {"rows": 100000, "bytes": 8000000}}});
        let b = json!({"server_version": "15.14", "cpus": 2,
                       "settings": {"shared_buffers": "1GB", "jit": "on", "work_mem": "64MB"},
                       "tables": {"trading.orders": {"rows": 104000, "bytes": 9000000}}});
        let d = differences(&a, &b);
        let items: Vec<&str> = d.iter().map(|d| d.item.as_str()).collect();
        // 4% more rows is the same data; 12.5% more bytes is not
        assert_eq!(
            items,
            [
                "settings.shared_buffers",
                "settings.work_mem",
                "tables.trading.orders.bytes"
            ]
        );
        assert_eq!(d[0].baseline.as_deref(), Some("128MB"));
        assert_eq!(d[0].candidate.as_deref(), Some("1GB"));
        assert_eq!(d[1].baseline, None);
        assert!(differences(&a, &a).is_empty());
        // an item only the baseline has comes last
        let d = differences(&b, &a);
        assert_eq!(d.last().unwrap().item, "settings.work_mem");
        assert_eq!(d.last().unwrap().candidate, None);
    }

    #[test]
    fn settings_that_hold_secrets_are_never_read() {
        let secret = regex_like(SECRET_NAMES);
        for name in [
            "primary_conninfo",
            "ssl_passphrase_command",
            "app.password",
            "ssl_key_file",
        ] {
            assert!(secret(name), "{name}");
        }
        assert!(!secret("shared_buffers"));
        assert!(PERFORMANCE_SETTINGS.iter().all(|s| !secret(s)));
    }

    /// `~*` of an alternation of plain words, as PostgreSQL matches it.
    fn regex_like(pattern: &str) -> impl Fn(&str) -> bool + '_ {
        move |name| {
            let name = name.to_lowercase();
            pattern.split('|').any(|w| name.contains(w))
        }
    }
}
