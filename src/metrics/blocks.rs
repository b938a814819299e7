//! Block counts of user tables and indexes — found in shared buffers (hits) or read from the kernel —
//! so a run can say how well it was served by the cache: the seed's "index hit rate > 95%".
//!
//! Two sources, because statistics reach the shared views only when a backend flushes them (at the
//! end of a transaction, at most about once a second): a benchmark measured inside the caller's own
//! transaction reads this backend's not-yet-flushed counters (`pg_stat_get_xact_blocks_*`); a run
//! done by background workers, which flush before they close it, reads `pg_statio_*`.

use pgrx::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blocks {
    pub heap_hit: i64,
    pub heap_read: i64,
    pub index_hit: i64,
    pub index_read: i64,
}

impl Blocks {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Blocks) -> Blocks {
        Blocks {
            heap_hit: self.heap_hit - earlier.heap_hit,
            heap_read: self.heap_read - earlier.heap_read,
            index_hit: self.index_hit - earlier.index_hit,
            index_read: self.index_read - earlier.index_read,
        }
    }

    /// Share of index blocks found in shared buffers (None when no index block was touched).
    pub fn index_hit_rate(&self) -> Option<f64> {
        rate(self.index_hit, self.index_read)
    }

    /// Share of all blocks (tables, TOAST and indexes) found in shared buffers.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        rate(
            self.heap_hit + self.index_hit,
            self.heap_read + self.index_read,
        )
    }

    /// The rates and the counts behind them, for a result's `details`.
    pub fn to_json(self) -> Value {
        json!({
            "index_hit_rate": self.index_hit_rate(),
            "cache_hit_rate": self.cache_hit_rate(),
            "index_blocks_hit": self.index_hit,
            "index_blocks_read": self.index_read,
            "heap_blocks_hit": self.heap_hit,
            "heap_blocks_read": self.heap_read,
        })
    }
}

fn rate(hit: i64, read: i64) -> Option<f64> {
    (hit + read > 0).then(|| hit as f64 / (hit + read) as f64)
}

fn read(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> Blocks {
    Spi::connect(|client| {
        let row = client.select(sql, None, args)?.first();
        let n = |i| row.get::<i64>(i).map(|v| v.unwrap_or(0));
        Ok::<_, pgrx::spi::SpiError>(Blocks {
            heap_hit: n(1)?,
            heap_read: n(2)?,
            index_hit: n(3)?,
            index_read: n(4)?,
        })
    })
    .expect("reading block statistics")
}

/// This backend's counts for user relations since it last flushed its statistics (they only grow
/// within a transaction, so differences over a call are exact).
pub fn this_backend() -> Blocks {
    read(
        "SELECT coalesce(sum(h) FILTER (WHERE relkind <> 'i'), 0)::int8,
                coalesce(sum(f - h) FILTER (WHERE relkind <> 'i'), 0)::int8,
                coalesce(sum(h) FILTER (WHERE relkind = 'i'), 0)::int8,
                coalesce(sum(f - h) FILTER (WHERE relkind = 'i'), 0)::int8
         FROM (SELECT c.relkind, pg_stat_get_xact_blocks_hit(c.oid) AS h,
                      pg_stat_get_xact_blocks_fetched(c.oid) AS f
               FROM pg_class c
               WHERE c.relkind IN ('r', 'm', 't', 'i')
                 AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)) b",
        &[],
    )
}

/// The server's counts for the user tables (with their TOAST and indexes) of `schema`, or of every
/// schema when None, as flushed so far.
pub fn flushed(schema: Option<&str>) -> Blocks {
    // A statistics snapshot taken earlier in this transaction would hide what happened since.
    // SAFETY: discards this transaction's cached statistics snapshot, if any; the next read takes a
    // new one.
    unsafe { pgrx::pg_sys::pgstat_clear_snapshot() };
    read(
        "SELECT coalesce(sum(heap_blks_hit) + sum(coalesce(toast_blks_hit, 0)), 0)::int8,
                coalesce(sum(heap_blks_read) + sum(coalesce(toast_blks_read, 0)), 0)::int8,
                coalesce(sum(coalesce(idx_blks_hit, 0)) + sum(coalesce(tidx_blks_hit, 0)), 0)::int8,
                coalesce(sum(coalesce(idx_blks_read, 0)) + sum(coalesce(tidx_blks_read, 0)), 0)::int8
         FROM pg_statio_user_tables WHERE $1::name IS NULL OR schemaname = $1",
        &[schema.into()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_differences() {
        let before = Blocks {
            heap_hit: 10,
            heap_read: 0,
            index_hit: 5,
            index_read: 5,
        };
        let after = Blocks {
            heap_hit: 100,
            heap_read: 10,
            index_hit: 95,
            index_read: 5,
        };
        let d = after.since(&before);
        assert_eq!(d.index_hit_rate(), Some(1.0));
        assert_eq!(d.cache_hit_rate(), Some(180.0 / 190.0));
        assert_eq!(Blocks::default().index_hit_rate(), None);
    }
}
