//! Latency histograms: HdrHistogram in nanoseconds, 3 significant digits, from 1 ns to 1 hour (a
//! microsecond unit would round a 2 µs index lookup by up to half its value). Each worker records
//! into its own; they travel serialized (V2 format) and merge exactly.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Longest latency recorded as itself (1 hour, in ns); longer ones are clamped to it.
const HIGHEST_NS: u64 = 3_600_000_000_000;

#[derive(Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            histogram: Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid bounds"),
        }
    }
}

/// The percentiles of a latency distribution that results keep (HdrHistogram's percentile plot:
/// each step a tenth of the calls left; 100 is the slowest call).
pub const DISTRIBUTION_PERCENTILES: [f64; 8] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

/// What a histogram says, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub avg_ms: f64,
    pub stddev_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// the latency at each of [`DISTRIBUTION_PERCENTILES`]
    pub distribution: [f64; DISTRIBUTION_PERCENTILES.len()],
}

impl LatencySummary {
    /// The distribution as `[[percentile, ms], …]` (None over no call), for a result's details.
    pub fn distribution_json(&self) -> Option<serde_json::Value> {
        (self.count > 0).then(|| {
            DISTRIBUTION_PERCENTILES
                .iter()
                .zip(self.distribution)
                .map(|(&p, ms)| serde_json::json!([p, ms]))
                .collect()
        })
    }
}

impl Latency {
    pub fn record_ns(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.clamp(1, HIGHEST_NS));
    }

    pub fn record_us(&mut self, us: u64) {
        self.record_ns(us.saturating_mul(1000));
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// How many recorded values are above `us` microseconds.
    pub fn count_above(&self, us: u64) -> u64 {
        let h = &self.histogram;
        let ns = us.saturating_mul(1000);
        if h.is_empty() || h.max() <= ns {
            return 0;
        }
        h.count_between(ns + 1, h.max())
    }

    /// The value at quantile `q` (0..=1) in ms; None when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| h.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1e6)
    }

    pub fn merge(&mut self, other: &Latency) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds merge");
    }

    pub fn serialize(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.histogram, &mut bytes)
            .expect("serializing into memory");
        bytes
    }

    pub fn deserialize(bytes: &[u8]) -> Result<Self, String> {
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| format!("not a serialized histogram: {e:?}"))?;
        let mut latency = Latency::default();
        latency
            .histogram
            .add(&histogram)
            .map_err(|e| format!("histogram out of range: {e:?}"))?;
        Ok(latency)
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: h.len(),
            avg_ms: h.mean() / 1e6,
            stddev_ms: h.stdev() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            distribution: DISTRIBUTION_PERCENTILES.map(|p| match p {
                100.0 => ms(h.max()),
                p => ms(h.value_at_quantile(p / 100.0)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::default();
        for us in 1..=10_000u64 {
            l.record_us(us * 100); // 0.1 ms … 1000 ms, uniformly
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.p50_ms - 500.0).abs() / 500.0 < 0.002, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() / 990.0 < 0.002, "{s:?}");
        assert!((s.avg_ms - 500.05).abs() / 500.0 < 0.002, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() / 1000.0 < 0.002, "{s:?}");
        // the distribution runs from the median to the slowest call, never down
        assert_eq!(s.distribution[0], s.p50_ms);
        assert_eq!(s.distribution[4], s.p99_ms);
        assert_eq!(s.distribution[7], s.max_ms);
        assert!(s.distribution.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
        assert!((s.distribution[6] - 999.9).abs() / 999.9 < 0.002, "{s:?}");
        let json = s.distribution_json().expect("calls were recorded");
        assert_eq!(json[6][0], 99.99);
        assert_eq!(Latency::default().summary().distribution_json(), None);
        // 1000 values are above 900 ms; at 3 significant digits the threshold's bucket is ~0.9 ms
        // wide (9 values here), and may be counted whole.
        let above = l.count_above(900_000) as i64;
        assert!((above - 1000).abs() <= 10, "{above} above 900 ms");
        assert_eq!(Latency::default().count_above(1), 0);
        assert!((l.quantile_ms(0.99).unwrap() - 990.0).abs() / 990.0 < 0.002);
        assert_eq!(Latency::default().quantile_ms(0.5), None);
        // Below a microsecond, values keep their precision.
        let mut fast = Latency::default();
        for ns in [1500, 1600, 1700] {
            fast.record_ns(ns);
        }
        assert!(
            (fast.summary().avg_ms - 0.0016).abs() < 0.000_002,
            "{:?}",
            fast.summary()
        );
    }

    #[test]
    fn serialized_halves_merge_into_the_whole() {
        let (mut a, mut b, mut whole) =
            (Latency::default(), Latency::default(), Latency::default());
        for us in 0..5000u64 {
            let v = 50 + us * us % 997 * 13;
            if us % 2 == 0 {
                a.record_us(v)
            } else {
                b.record_us(v)
            }
            whole.record_us(v);
        }
        let mut merged = Latency::deserialize(&a.serialize()).unwrap();
        merged.merge(&Latency::deserialize(&b.serialize()).unwrap());
        assert_eq!(merged.summary(), whole.summary());
        assert!(Latency::deserialize(b"nonsense").is_err());
    }
}
