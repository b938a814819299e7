//! `stress.compare_indexes(queries, iterations)`: each query with the current indexes of the tables it
//! reads, and without them — the indexes are dropped inside a subtransaction that is always rolled
//! back, so none is ever lost (an error or a cancel rolls it back too).

use crate::error::StressError;
use crate::postgres::subxact::{Ending, run_isolated_ending};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

/// Tables a plan reads (schema, name), from EXPLAIN (FORMAT JSON, VERBOSE).
fn tables_of(plan: &Value, out: &mut Vec<(String, String)>) {
    if let (Some(s), Some(t)) = (plan["Schema"].as_str(), plan["Relation Name"].as_str()) {
        let table = (s.to_owned(), t.to_owned());
        if !out.contains(&table) {
            out.push(table);
        }
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        tables_of(child, out);
    }
}

/// Indexes a plan scans, by name (EXPLAIN's "Index Name").
fn indexes_in(plan: &Value, out: &mut Vec<String>) {
    if let Some(index) = plan["Index Name"].as_str()
        && !out.iter().any(|i| i == index)
    {
        out.push(index.to_owned());
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        indexes_in(child, out);
    }
}

/// Indexes of those tables that DROP INDEX can remove (not those behind a constraint), as
/// regclass text.
fn droppable_indexes(tables: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (schema, table) in tables {
        let names: Vec<String> = Spi::connect(|client| {
            client
                .select(
                    "SELECT i.indexrelid::regclass::text FROM pg_index i
                     JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relname = $2
                       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
                     ORDER BY 1",
                    None,
                    &[schema.as_str().into(), table.as_str().into()],
                )
                .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
        })
        .unwrap_or_default();
        out.extend(names);
    }
    out
}

/// Whether `sql` is exactly one `CREATE INDEX` statement (not CONCURRENTLY, which cannot run in the
/// rolled-back subtransaction); an error message saying what is wrong if not.
fn check_candidate(sql: &str) -> Result<(), String> {
    let text = std::ffi::CString::new(sql).map_err(|_| "contains a NUL byte".to_owned())?;
    // SAFETY: text is NUL-terminated and lives across the closure; the parse tree is palloc'd and
    // read here only, each node's tag checked before its cast; the closure runs in a
    // subtransaction, so a parse ERROR is caught.
    let shape = crate::postgres::subxact::run_isolated(|| unsafe {
        let list = pg_sys::pg_parse_query(text.as_ptr());
        if list.is_null() || (*list).length != 1 {
            return None;
        }
        let raw = (*(*list).elements).ptr_value as *mut pg_sys::RawStmt;
        let stmt = (*raw).stmt;
        if (*stmt).type_ != pg_sys::NodeTag::T_IndexStmt {
            return None;
        }
        Some((*(stmt as *mut pg_sys::IndexStmt)).concurrent)
    })
    .map_err(|e| e.message().to_owned())?;
    match shape {
        None => Err("must be one CREATE INDEX statement".into()),
        Some(true) => Err("cannot be CREATE INDEX CONCURRENTLY (the index is built in a transaction that is rolled back)".into()),
        Some(false) => Ok(()),
    }
}

/// One row of `stress.compare_indexes`: a query with and without its indexes (and the candidates).
pub struct IndexComparison {
    pub query: String,
    /// the indexes dropped for the "without" measurement
    pub indexes: Vec<String>,
    /// the indexes the query's plan uses
    pub indexes_used: Vec<String>,
    pub with_avg_ms: f64,
    pub with_p99_ms: f64,
    pub without_avg_ms: f64,
    pub without_p99_ms: f64,
    /// avg without / avg with
    pub speedup: f64,
    pub candidate_avg_ms: Option<f64>,
    pub candidate_p99_ms: Option<f64>,
    /// avg with the current indexes / avg with the candidates too
    pub candidate_speedup: Option<f64>,
}

/// Avg and p99 (ms) of `query` with the current indexes and without the droppable ones, and the
/// speedup the indexes give (avg without / avg with). With `candidates` (CREATE INDEX statements),
/// also with those indexes: they are built for real, measured, and rolled back — a true timing of
/// an index that does not exist yet (hypopg would only estimate its cost).
pub fn compare_indexes(
    queries: Vec<Option<String>>,
    iterations: i32,
    candidates: Option<Vec<Option<String>>>,
) -> Vec<IndexComparison> {
    const F: &str = "compare_indexes";
    let queries = super::query_list(F, queries);
    super::check_iterations(F, iterations);
    let candidates: Vec<String> = candidates
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let c = c.unwrap_or_default();
            check_candidate(&c).map(|()| c).map_err(|e| {
                StressError::invalid(
                    F,
                    format!("candidates[{}] {e}", i + 1),
                    "Pass statements such as 'CREATE INDEX ON orders (status)'.",
                )
            })
        })
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| e.raise());
    let failed = |query: &str, e: &str| -> ! {
        StressError::invalid(
            F,
            format!("\"{query}\" failed: {e}"),
            "Check it with stress.benchmark(ARRAY[query]).",
        )
        .raise()
    };
    let mut rows = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        let Some(plan) = super::plan_of(query) else {
            StressError::invalid(
                F,
                format!("queries[{}] cannot be planned: \"{query}\"", i + 1),
                "Check it with stress.explain(query).",
            )
            .raise();
        };
        let mut tables = Vec::new();
        tables_of(&plan[0]["Plan"], &mut tables);
        let indexes = droppable_indexes(&tables);
        // (A speedup near 1 with no index used is noise, not an index that slows the query.)
        let mut used = Vec::new();
        indexes_in(&plan[0]["Plan"], &mut used);
        let with = super::measure(query, iterations, 2, true, true);
        // Without the indexes: dropped in a subtransaction that is always rolled back.
        let without = run_isolated_ending(Ending::RollBack, || {
            for index in &indexes {
                Spi::run(&format!("DROP INDEX {index}"))
                    .expect("dropping an index for the comparison");
            }
            super::measure(query, iterations, 2, true, true)
        });
        let without = match without {
            Ok(o) => o,
            Err(report) => {
                StressError::invalid(F, format!("measuring \"{query}\" without its indexes failed: {}", report.message()), "You must own the tables to drop their indexes, even for a rolled-back comparison.").raise();
            }
        };
        if let Some(e) = with.error.as_ref().or(without.error.as_ref()) {
            failed(query, e);
        }
        let speedup = ratio(without.latency.avg_ms, with.latency.avg_ms);
        rows.push(IndexComparison {
            query: query.clone(),
            indexes,
            indexes_used: used,
            with_avg_ms: with.latency.avg_ms,
            with_p99_ms: with.latency.p99_ms,
            without_avg_ms: without.latency.avg_ms,
            without_p99_ms: without.latency.p99_ms,
            speedup,
            candidate_avg_ms: None,
            candidate_p99_ms: None,
            candidate_speedup: None,
        });
    }
    if !candidates.is_empty() {
        // The candidates are built once, every query measured with them, then all rolled back.
        let measured = run_isolated_ending(Ending::RollBack, || {
            for sql in &candidates {
                Spi::run(sql).expect("building a candidate index");
            }
            queries
                .iter()
                .map(|q| super::measure(q, iterations, 2, true, true))
                .collect::<Vec<_>>()
        });
        let measured = match measured {
            Ok(m) => m,
            Err(report) => StressError::invalid(
                F,
                format!(
                    "building the candidate indexes failed: {}",
                    report.message()
                ),
                "Check the CREATE INDEX statements; you must own the tables.",
            )
            .raise(),
        };
        for (row, m) in rows.iter_mut().zip(measured) {
            if let Some(e) = &m.error {
                failed(&row.query, e);
            }
            row.candidate_avg_ms = Some(m.latency.avg_ms);
            row.candidate_p99_ms = Some(m.latency.p99_ms);
            row.candidate_speedup = Some(ratio(row.with_avg_ms, m.latency.avg_ms));
        }
    }
    rows
}

/// `slower / faster`, 0 when `faster` is 0.
fn ratio(slower: f64, faster: f64) -> f64 {
    if faster > 0.0 { slower / faster } else { 0.0 }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::tests::one;
    use pgrx::prelude::*;

    #[pg_test]
    fn indexes_are_compared_and_never_lost() {
        Spi::run(
            "CREATE TABLE t_cmp AS SELECT g AS id, g % 1000 AS k FROM generate_series(1, 100000) g;
             ALTER TABLE t_cmp ADD PRIMARY KEY (id); CREATE INDEX t_cmp_k ON t_cmp (k); ANALYZE t_cmp",
        )
        .unwrap();
        let before = one::<String>(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 't_cmp'",
        );
        let (indexes, speedup, used) = Spi::get_three::<Vec<String>, f64, Vec<String>>(
            "SELECT indexes, speedup, indexes_used FROM stress.compare_indexes(ARRAY['SELECT count(*) FROM t_cmp WHERE k = 7'], 20)",
        )
        .unwrap();
        assert_eq!(used.unwrap(), ["t_cmp_k"]);
        assert_eq!(
            indexes.unwrap(),
            ["t_cmp_k"],
            "the primary key is a constraint: kept"
        );
        let speedup = speedup.unwrap();
        assert!(
            speedup > 3.0,
            "an index lookup against a 100k-row scan: {speedup}x"
        );
        let after = one::<String>(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 't_cmp'",
        );
        assert_eq!(after, before);
        assert!(one::<bool>(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_cmp_k'::regclass"
        ));
    }

    #[pg_test]
    fn a_candidate_index_is_measured_for_real_and_rolled_back() {
        Spi::run(
            "CREATE TABLE t_cand AS SELECT g AS id, g % 1000 AS k FROM generate_series(1, 100000) g;
             ANALYZE t_cand",
        )
        .unwrap();
        let (without, with) = Spi::get_two::<f64, f64>(
            "SELECT with_avg_ms, candidate_avg_ms FROM stress.compare_indexes(
                 ARRAY['SELECT count(*) FROM t_cand WHERE k = 7'], 10,
                 candidates => ARRAY['CREATE INDEX t_cand_k ON t_cand (k)'])",
        )
        .unwrap();
        let (without, with) = (without.unwrap(), with.unwrap());
        assert!(
            without > 3.0 * with,
            "a seq scan {without} ms vs the candidate index {with} ms"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_indexes WHERE tablename = 't_cand'"),
            0
        );
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        for bad in [
            "ARRAY['SELECT 1']",
            "ARRAY['CREATE INDEX CONCURRENTLY ON t_cand (k)']",
            "ARRAY['CREATE INDEX ON t_cand (k); DROP TABLE t_cand']",
            "ARRAY[NULL]::text[]",
        ] {
            let sql = format!(
                "SELECT * FROM stress.compare_indexes(ARRAY['SELECT 1'], candidates => {bad})"
            );
            assert_eq!(crate::tests::sqlstate_of(&sql), invalid, "{sql}");
        }
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_class WHERE relname = 't_cand'"),
            1
        );
    }
}
