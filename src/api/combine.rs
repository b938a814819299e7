//! Several drivers, one target: `stress.combine_runs` (`stress.export_run` is SQL, in
//! sql/compare.sql).

use pgrx::JsonB;
use pgrx::prelude::*;

/// The load runs that several servers drove at one target at once, as one run of the caller's
/// here: `runs`, what `stress.export_run(run_id)` returned on each driver (this server's own
/// included). Counts add up, histograms merge exactly; returns the new run's id, for
/// `stress.report`, `stress.compare_runs` and `stress.report_html`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn combine_runs(runs: Vec<Option<JsonB>>) -> i64 {
    crate::combine::record::combine_runs(runs.into_iter().map(|r| r.map(|j| j.0)).collect())
}

extension_sql!(
    r#"
COMMENT ON FUNCTION stress.combine_runs(jsonb[]) IS
    'Load runs several servers drove at one target at once (each stress.export_run there), as one run here: counts added, histograms merged.';
"#,
    name = "combine_comments",
    requires = [combine_runs]
);
