//! What one worker measured for one task (an operation, a transaction, a query): the one type both
//! paths of a run's results use — kept in `stress.load_worker_results` on a primary, carried in
//! shared memory and over dblink (as JSON, histograms in base64) for a run on a hot standby.

use super::histogram::Latency;
use serde::{Deserialize, Serialize};

/// Most calls one task's figures may claim (a run of a year at a million a second is less).
pub const MAX_CALLS: i64 = 1 << 45;

#[derive(Default, Clone, Serialize, Deserialize)]
pub struct TaskStats {
    pub calls: i64,
    pub successes: i64,
    pub failures: i64,
    pub retries: i64,
    pub deadlocks: i64,
    pub serialization_failures: i64,
    #[serde(with = "base64_histogram")]
    pub latency: Latency,
    /// schedule lag of the open model: intended start to actual start
    #[serde(with = "base64_histogram")]
    pub lag: Latency,
    /// time spent in the task's transactions (for the connection efficiency)
    pub busy_us: i64,
    pub first_error: Option<String>,
}

impl TaskStats {
    /// Add another worker's (or task's) figures to these.
    pub fn add(&mut self, other: &TaskStats) {
        self.calls += other.calls;
        self.successes += other.successes;
        self.failures += other.failures;
        self.retries += other.retries;
        self.deadlocks += other.deadlocks;
        self.serialization_failures += other.serialization_failures;
        self.busy_us += other.busy_us;
        self.latency.merge(&other.latency);
        self.lag.merge(&other.lag);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Add each of `others` (a worker's other clients' figures, task by task as `into`) into
    /// `into`.
    pub fn add_each(into: &mut [TaskStats], others: &[Vec<TaskStats>]) {
        for other in others {
            for (s, o) in into.iter_mut().zip(other) {
                s.add(o);
            }
        }
    }

    /// Whether these figures could be a worker's: every count in range, no more successes and
    /// failures than calls, histograms of no more than [`MAX_CALLS`]. (What a run reads back, from
    /// its table or from a standby's batch, is checked before it is merged.)
    pub fn check(&self) -> Result<(), String> {
        let counts = [
            self.calls,
            self.successes,
            self.failures,
            self.retries,
            self.deadlocks,
            self.serialization_failures,
            self.busy_us,
        ];
        if counts.iter().any(|&n| !(0..=MAX_CALLS).contains(&n)) {
            return Err("a count out of range".into());
        }
        if self.successes + self.failures > self.calls {
            return Err("more successes and failures than calls".into());
        }
        if self.latency.count() > MAX_CALLS as u64 || self.lag.count() > MAX_CALLS as u64 {
            return Err("a histogram counts too many calls".into());
        }
        Ok(())
    }
}

/// A histogram in JSON: base64 of HdrHistogram's V2 format.
mod base64_histogram {
    use super::Latency;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(latency: &Latency, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(latency.serialize()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Latency, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| serde::de::Error::custom(format!("a histogram is not base64: {e}")))?;
        Latency::deserialize(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn figures_travel_as_json_and_are_checked() {
        let mut stats = TaskStats {
            calls: 3,
            successes: 2,
            failures: 1,
            ..TaskStats::default()
        };
        for us in [100, 200, 300] {
            stats.latency.record_us(us);
        }
        let json = serde_json::to_string(&stats).unwrap();
        let back: TaskStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back.latency.count(), 3);
        assert_eq!(back.successes, 2);
        assert!(back.check().is_ok());
        let too_many = TaskStats {
            successes: 4,
            ..back.clone()
        };
        assert!(too_many.check().is_err());
        let negative = TaskStats {
            retries: -1,
            ..back
        };
        assert!(negative.check().is_err());
        assert!(
            serde_json::from_str::<TaskStats>(&json.replace("\"latency\":\"", "\"latency\":\"!"))
                .is_err()
        );
    }
}
