//! `stress.compare_indexes(queries, iterations)`: each query with the current indexes of the tables it
//! reads, and without them — the indexes are dropped inside a subtransaction that is always rolled
//! back, so none is ever lost (an error or a cancel rolls it back too).

use crate::error::StressError;
use crate::subxact::{Ending, run_isolated_ending};
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

/// Avg and p99 (ms) of `query` with the current indexes and without the droppable ones, and the
/// speedup the indexes give (avg without / avg with).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn compare_indexes(
    queries: Vec<Option<String>>,
    iterations: default!(i32, 50),
) -> TableIterator<
    'static,
    (
        name!(query, String),
        name!(indexes, Vec<String>),
        name!(with_avg_ms, f64),
        name!(with_p99_ms, f64),
        name!(without_avg_ms, f64),
        name!(without_p99_ms, f64),
        name!(speedup, f64),
    ),
> {
    const F: &str = "compare_indexes";
    if queries.is_empty() {
        StressError::invalid(F, "queries must not be empty", "Pass an array of queries.").raise();
    }
    if !(1..=super::MAX_ITERATIONS).contains(&iterations) {
        StressError::invalid(
            F,
            format!(
                "iterations must be between 1 and {}, got {iterations}",
                super::MAX_ITERATIONS
            ),
            "Pass e.g. iterations => 50.",
        )
        .raise();
    }
    let mut rows = Vec::new();
    for (i, query) in queries.into_iter().enumerate() {
        let Some(query) = query.filter(|q| !q.trim().is_empty()) else {
            StressError::invalid(
                F,
                format!("queries[{}] is NULL or empty", i + 1),
                "Every element must be a query.",
            )
            .raise();
        };
        let explained = run_isolated_ending(Ending::RollBack, || {
            Spi::get_one::<pgrx::Json>(&format!("EXPLAIN (FORMAT JSON, VERBOSE) {query}"))
                .expect("EXPLAIN gives one row")
        });
        let plan = match explained {
            Ok(Some(pgrx::Json(plan))) => plan,
            _ => {
                StressError::invalid(
                    F,
                    format!("queries[{}] cannot be planned: \"{query}\"", i + 1),
                    "Check it with stress.explain(query).",
                )
                .raise();
            }
        };
        let mut tables = Vec::new();
        tables_of(&plan[0]["Plan"], &mut tables);
        let indexes = droppable_indexes(&tables);
        let with = super::measure(&query, iterations, 2, true, true);
        // Without the indexes: dropped in a subtransaction that is always rolled back.
        let without = run_isolated_ending(Ending::RollBack, || {
            for index in &indexes {
                Spi::run(&format!("DROP INDEX {index}"))
                    .expect("dropping an index for the comparison");
            }
            super::measure(&query, iterations, 2, true, true)
        });
        let without = match without {
            Ok(o) => o,
            Err(report) => {
                StressError::invalid(F, format!("measuring \"{query}\" without its indexes failed: {}", report.message()), "You must own the tables to drop their indexes, even for a rolled-back comparison.").raise();
            }
        };
        if let Some(e) = with.error.as_ref().or(without.error.as_ref()) {
            StressError::invalid(
                F,
                format!("\"{query}\" failed: {e}"),
                "Check it with stress.benchmark(ARRAY[query]).",
            )
            .raise();
        }
        let speedup = if with.latency.avg_ms > 0.0 {
            without.latency.avg_ms / with.latency.avg_ms
        } else {
            0.0
        };
        rows.push((
            query,
            indexes,
            with.latency.avg_ms,
            with.latency.p99_ms,
            without.latency.avg_ms,
            without.latency.p99_ms,
            speedup,
        ));
    }
    TableIterator::new(rows)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::testing::one;
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
        let (indexes, speedup) = Spi::get_two::<Vec<String>, f64>(
            "SELECT indexes, speedup FROM stress.compare_indexes(ARRAY['SELECT count(*) FROM t_cmp WHERE k = 7'], 20)",
        )
        .unwrap();
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
}
