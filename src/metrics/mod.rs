//! What is measured: latency histograms, live buckets, block counts, a task's figures. (Writing
//! them into the `stress.*` tables is `crate::records`'.)

pub mod blocks;
pub mod buckets;
pub mod histogram;
pub mod task;

/// Add `extra`'s keys to the JSON object `into` (for a result's `details`).
pub fn merge_json(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (serde_json::Value::Object(extra), Some(into)) = (extra, into.as_object_mut()) {
        into.extend(extra);
    }
}
