//! `stress.explain(query, analyze)`: the plan as jsonb, plus findings with concrete suggestions — a
//! sequential scan filtering a large table, a join key without an index, a sort spilling to disk,
//! estimates far from the actual rows.

use crate::error::{OrRaise, StressError};
use crate::postgres::quote::{qualified, quote_ident};
use crate::postgres::subxact::{Ending, run_isolated_ending};
use pgrx::JsonB;
use pgrx::prelude::*;
use serde_json::{Value, json};

/// A table at least this big (estimated rows) is worth an index for a filtered scan.
const LARGE_TABLE_ROWS: f64 = 10_000.0;

/// Column names a plan's condition text compares, e.g. `(status = 'OPEN'::text)` → status,
/// `((o.account_id = a.id) AND (x > 5))` → account_id, id, x.
pub fn compared_columns(condition: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ops = [" = ", " < ", " > ", " <= ", " >= ", " <> ", " ~~ ", " ~~* "];
    for part in condition.split(" AND ") {
        for op in ops {
            if let Some((left, right)) = part.split_once(op) {
                for side in [left, right] {
                    let side = side.trim_matches(|c: char| c == '(' || c == ')' || c == ' ');
                    // a column reference: name or alias.name, not a literal or a cast constant
                    if side.starts_with('\'')
                        || side
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_digit() || c == '$')
                    {
                        continue;
                    }
                    let name = side.rsplit('.').next().unwrap_or(side);
                    let name = name.split("::").next().unwrap_or(name).trim_matches('"');
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                        && !out.iter().any(|n: &String| n == name)
                    {
                        out.push(name.to_owned());
                    }
                }
                break;
            }
        }
    }
    out
}

/// Estimated rows of `schema.table`, and whether it has an index whose first column is `column`.
fn table_facts(schema: &str, table: &str, column: Option<&str>) -> (f64, bool) {
    let rows = crate::postgres::spi_read::one::<f64>(
        "SELECT greatest(c.reltuples, 0)::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2",
        &[schema.into(), table.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0.0);
    let indexed = column.is_some_and(|column| {
        crate::postgres::spi_read::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                            WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3)",
            &[schema.into(), table.into(), column.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    });
    (rows, indexed)
}

/// Walk a JSON plan and collect findings.
fn findings(node: &Value, analyzed: bool, out: &mut Vec<Value>) {
    let kind = node["Node Type"].as_str().unwrap_or("");
    let schema = node["Schema"].as_str().unwrap_or("");
    let table = node["Relation Name"].as_str().unwrap_or("");
    if let Some(filter) = node["Filter"]
        .as_str()
        .filter(|_| kind == "Seq Scan" && !table.is_empty())
    {
        {
            for column in compared_columns(filter) {
                let (rows, indexed) = table_facts(schema, table, Some(&column));
                if rows >= LARGE_TABLE_ROWS && !indexed {
                    out.push(json!({
                        "finding": "sequential scan with a filter on a large table",
                        "table": format!("{schema}.{table}"), "rows": rows, "filter": filter,
                        "suggestion": format!("CREATE INDEX ON {} ({})", qualified(schema, table), quote_ident(&column)),
                    }));
                }
            }
        }
    }
    // A hash or merge join whose input is a sequential scan: the join key there has no index.
    if kind == "Hash Join" || kind == "Merge Join" {
        let condition = node["Hash Cond"]
            .as_str()
            .or(node["Merge Cond"].as_str())
            .unwrap_or("");
        let columns = compared_columns(condition);
        for child in node["Plans"].as_array().into_iter().flatten() {
            let scan = if child["Node Type"] == "Hash" {
                &child["Plans"][0]
            } else {
                child
            };
            if scan["Node Type"] != "Seq Scan" {
                continue;
            }
            let (s, t) = (
                scan["Schema"].as_str().unwrap_or(""),
                scan["Relation Name"].as_str().unwrap_or(""),
            );
            let alias = scan["Alias"].as_str().unwrap_or(t);
            for column in &columns {
                if !condition.contains(&format!("{alias}.{column}")) {
                    continue;
                }
                let (rows, indexed) = table_facts(s, t, Some(column));
                if rows >= LARGE_TABLE_ROWS && !indexed {
                    out.push(json!({
                        "finding": "join key without an index",
                        "table": format!("{s}.{t}"), "rows": rows, "join": condition,
                        "suggestion": format!("CREATE INDEX ON {} ({})", qualified(s, t), quote_ident(column)),
                    }));
                }
            }
        }
    }
    if analyzed {
        if kind == "Sort" && node["Sort Space Type"] == "Disk" {
            out.push(json!({
                "finding": "sort spilled to disk",
                "sort_key": node["Sort Key"], "space_kb": node["Sort Space Used"],
                "suggestion": "Raise work_mem for this query (SET LOCAL work_mem = '64MB'), or add an index that returns the rows in this order.",
            }));
        }
        let (estimated, actual) = (node["Plan Rows"].as_f64(), node["Actual Rows"].as_f64());
        if let (Some(e), Some(a)) = (estimated, actual) {
            let (lo, hi) = (e.min(a).max(1.0), e.max(a));
            if hi / lo >= 10.0 && hi >= 1000.0 {
                let target = if table.is_empty() {
                    "the tables involved".to_owned()
                } else {
                    qualified(schema, table)
                };
                out.push(json!({
                    "finding": "estimate far from the actual rows",
                    "node": kind, "table": (!table.is_empty()).then(|| format!("{schema}.{table}")),
                    "estimated_rows": e, "actual_rows": a,
                    "suggestion": format!("ANALYZE {target}; if it persists, CREATE STATISTICS on the correlated columns"),
                }));
            }
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        findings(child, analyzed, out);
    }
}

/// `query`'s plan as EXPLAIN (FORMAT JSON, VERBOSE) gives it now, without running it; None for a
/// statement that has no plan (utility commands) or cannot be planned.
pub fn plan_of(query: &str) -> Option<Value> {
    let sql = format!("EXPLAIN (FORMAT JSON, VERBOSE) {query}");
    // (EXPLAIN without ANALYZE runs nothing: no transaction id, which a hot standby cannot give)
    run_isolated_ending(Ending::RollBack, || {
        crate::postgres::spi_read::one_utility::<pgrx::Json>(&sql)
    })
    .ok()
    .and_then(|r| r.ok().flatten())
    .map(|pgrx::Json(plan)| plan)
}

/// The plan of `query` (EXPLAIN, FORMAT JSON, VERBOSE; with `analyze`, executed — inside a
/// subtransaction that is rolled back, so DML changes nothing) and `findings`, each with a suggestion.
pub fn explain(query: &str, analyze: bool) -> JsonB {
    const F: &str = "explain";
    if query.trim().is_empty() {
        StressError::invalid(F, "the query is empty", "Pass one SQL statement.").raise();
    }
    let count = super::statement_count(query)
        .map_err(|e| StressError::invalid(F, e, "Pass one valid SQL statement."))
        .or_raise();
    if count != 1 {
        StressError::invalid(
            F,
            format!("the query must be one statement, got {count}"),
            "Explain one statement at a time.",
        )
        .raise();
    }
    let options = if analyze {
        "FORMAT JSON, VERBOSE, ANALYZE, BUFFERS"
    } else {
        "FORMAT JSON, VERBOSE"
    };
    let sql = format!("EXPLAIN ({options}) {query}");
    // Without ANALYZE nothing runs, and on a hot standby nothing may write: no transaction id
    // (pgrx's Spi::get_one would ask for one, which a standby cannot give).
    let read_only = !analyze || crate::postgres::backend::in_recovery();
    let plan = run_isolated_ending(Ending::RollBack, || {
        if read_only {
            crate::postgres::spi_read::one_utility::<pgrx::Json>(&sql)
        } else {
            Spi::get_one::<pgrx::Json>(&sql).map_err(|e| e.to_string())
        }
        .expect("EXPLAIN gives one row")
    });
    let plan = match plan {
        Ok(Some(pgrx::Json(plan))) => plan,
        Ok(None) => Value::Null,
        // Report the query's own error (a missing table, permission denied…) as it is.
        Err(report) => {
            let mut again = pgrx::pg_sys::panic::ErrorReport::new(
                report.sql_error_code(),
                report.message().to_owned(),
                "stress.explain",
            );
            if let Some(detail) = report.detail() {
                again = again.set_detail(detail.to_owned());
            }
            if let Some(hint) = report.hint() {
                again = again.set_hint(hint.to_owned());
            }
            again.report(pgrx::pg_sys::elog::PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    };
    let root = &plan[0]["Plan"];
    let mut found = Vec::new();
    findings(root, analyze, &mut found);
    JsonB(json!({"plan": plan, "findings": found}))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn columns_come_out_of_plan_conditions() {
        assert_eq!(compared_columns("(status = 'OPEN'::text)"), ["status"]);
        assert_eq!(
            compared_columns("((o.account_id = a.id) AND (o.price > 5))"),
            ["account_id", "id", "price"]
        );
        assert_eq!(compared_columns("(\"Weird\" = $1)"), ["Weird"]);
        assert!(compared_columns("(1 = 1)").is_empty());
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of};
    use pgrx::prelude::*;

    #[pg_test]
    fn a_planted_sequential_scan_gets_an_index_suggestion() {
        Spi::run(
            "CREATE TABLE t_explain_big AS SELECT g AS id, g % 97 AS bucket, md5(g::text) AS tag FROM generate_series(1, 50000) g;
             ANALYZE t_explain_big",
        )
        .unwrap();
        let suggestion = one::<String>(
            "SELECT f->>'suggestion' FROM jsonb_array_elements(
                 stress.explain('SELECT * FROM t_explain_big WHERE bucket = 3')->'findings') f",
        );
        assert_eq!(suggestion, "CREATE INDEX ON public.t_explain_big (bucket)");
        Spi::run("CREATE INDEX ON t_explain_big (bucket); ANALYZE t_explain_big").unwrap();
        assert_eq!(
            one::<i64>(
                "SELECT jsonb_array_length(stress.explain('SELECT * FROM t_explain_big WHERE bucket = 3')->'findings')::int8"
            ),
            0
        );
        // Analyze executes, but DML changes nothing; a sort too big for work_mem is found.
        Spi::run("SET LOCAL work_mem = '64kB'").unwrap();
        let findings = one::<String>(
            "SELECT string_agg(f->>'finding', ', ') FROM jsonb_array_elements(
                 stress.explain('SELECT * FROM t_explain_big ORDER BY tag', true)->'findings') f",
        );
        assert!(findings.contains("sort spilled to disk"), "{findings}");
        Spi::run("SELECT stress.explain('DELETE FROM t_explain_big', \"analyze\" => true)")
            .unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM t_explain_big"), 50000);
        assert_eq!(
            sqlstate_of("SELECT stress.explain('SELECT 1; SELECT 2')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        assert_eq!(
            sqlstate_of("SELECT stress.explain('SELECT * FROM t_explain_nowhere')"),
            Some(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE)
        );
    }
}
