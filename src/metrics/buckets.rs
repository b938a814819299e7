//! A fixed-size latency histogram that fits in shared memory: log-linear buckets (16 per power of
//! two, so a value is known to within 1/16 ≈ 6%), plain counters all workers of a run add into.
//! It serves the live figures (per-second samples, the progress view); a run's final percentiles
//! come from the exact HdrHistograms (see [`super::histogram`]).

const SUB_BUCKETS: usize = 16;
const SUB_BITS: u32 = 4;
/// Values up to 2^40 µs (12 days) have a bucket of their own.
const POWERS: usize = 41;
pub const BUCKETS: usize = POWERS * SUB_BUCKETS;

pub type Buckets = [u64; BUCKETS];

/// The bucket of a latency in µs.
pub fn index(us: u64) -> usize {
    let us = us.max(1);
    let power = 63 - us.leading_zeros(); // floor(log2)
    if power < SUB_BITS {
        return us as usize; // 1..15 µs: exact
    }
    let sub = ((us >> (power - SUB_BITS)) as usize) & (SUB_BUCKETS - 1);
    ((power - SUB_BITS + 1) as usize * SUB_BUCKETS + sub).min(BUCKETS - 1)
}

/// The middle of a bucket's range, in µs.
pub fn value(index: usize) -> f64 {
    if index < SUB_BUCKETS {
        return index as f64;
    }
    let power = (index / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    let sub = (index % SUB_BUCKETS) as u64;
    let low = (1u64 << power) + (sub << (power - SUB_BITS));
    low as f64 + (1u64 << (power - SUB_BITS)) as f64 / 2.0
}

pub fn count(buckets: &Buckets) -> u64 {
    buckets.iter().sum()
}

/// The value at quantile `q` (0..=1), in ms; None when empty.
pub fn quantile_ms(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = count(buckets);
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    buckets
        .iter()
        .position(|&n| {
            seen += n;
            seen >= rank
        })
        .map(|i| value(i) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_lands_in_a_bucket_within_six_percent() {
        for us in [
            1u64,
            7,
            15,
            16,
            17,
            100,
            999,
            1000,
            12_345,
            1 << 20,
            3_600_000_000,
        ] {
            let v = value(index(us));
            assert!(
                (v - us as f64).abs() / us as f64 <= 1.0 / 16.0,
                "{us} -> {v}"
            );
        }
        assert!(index(u64::MAX) < BUCKETS);
        let mut last = 0;
        for us in 1..100_000u64 {
            assert!(index(us) >= last, "buckets grow with the value");
            last = index(us);
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut b = [0u64; BUCKETS];
        for us in 1..=10_000u64 {
            b[index(us * 100)] += 1;
        }
        assert!((quantile_ms(&b, 0.5).unwrap() - 500.0).abs() / 500.0 < 0.07);
        assert!((quantile_ms(&b, 0.99).unwrap() - 990.0).abs() / 990.0 < 0.07);
        // no latency at all: no percentile, rather than a 0 that reads as "fast"
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.99), None);
    }
}
