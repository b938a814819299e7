//! The open model's arrival schedule: one worker's share of a Poisson process, kept in integer
//! nanoseconds so that it always advances. (A schedule in floating-point microseconds since 2000
//! stopped advancing once the gap between arrivals fell below half its resolution — about 0.06 µs
//! — and a worker then waited for an arrival time that never came.) Plain Rust, no pgrx.

use rand::RngExt;
use rand_distr::{Distribution, Exp, Poisson};

/// The fastest arrival rate one worker can be asked for: an operation per microsecond. The fastest
/// operation through SPI takes about 15 µs, so a worker at this rate is far behind its schedule
/// already; past it the schedule's nanosecond steps would start to round.
pub const MAX_RATE_PER_WORKER: f64 = 1_000_000.0;

/// The fastest arrival rate of a whole run (a hundred times what a 2-core server sustains).
pub const MAX_RATE: f64 = 10_000_000.0;

/// How busy hour `hour` of a simulated trading day is: peak hours (bit h of `peaks` set) ×4, night
/// (0–5) ×¼, others ×1.
pub fn day_weight(peaks: u32, hour: u32) -> f64 {
    if peaks & (1 << hour.min(23)) != 0 {
        4.0
    } else if hour < 6 {
        0.25
    } else {
        1.0
    }
}

/// One worker's arrivals from a start to a deadline, all times in nanoseconds.
pub struct Arrivals {
    gaps: Exp<f64>,
    /// arrivals per nanosecond
    rate: f64,
    /// the latest arrival's intended time
    at: i64,
    /// the fraction of a nanosecond the rounded gaps have not yet added
    carry: f64,
    run_start: i64,
    deadline: i64,
    /// simulate_trading_day: the rate follows the day's weights ([`day_weight`]), `rate` being
    /// the peak's
    day_peaks: Option<u32>,
    /// arrivals due before the deadline so far (what was offered)
    pub count: u64,
}

impl Arrivals {
    /// `rate` arrivals per second (at most [`MAX_RATE_PER_WORKER`]), from `from` on, in a run
    /// from `run_start` to `deadline`.
    pub fn new(
        rate: f64,
        from: i64,
        run_start: i64,
        deadline: i64,
        day_peaks: Option<u32>,
    ) -> Self {
        let rate = rate.clamp(f64::MIN_POSITIVE, MAX_RATE_PER_WORKER) / 1e9;
        Arrivals {
            gaps: Exp::new(rate).expect("a positive rate"),
            rate,
            at: from,
            carry: 0.0,
            run_start,
            deadline,
            day_peaks,
            count: 0,
        }
    }

    /// The latest arrival's intended time.
    pub fn at(&self) -> i64 {
        self.at
    }

    /// The next arrival's intended time, or None when no more are due before the deadline.
    pub fn next(&mut self, rng: &mut impl rand::Rng) -> Option<i64> {
        loop {
            let gap = self.gaps.sample(rng) + self.carry;
            let whole = gap.floor();
            self.carry = gap - whole;
            self.at = self.at.saturating_add(whole.min(i64::MAX as f64) as i64);
            if self.at >= self.deadline {
                self.at = self.deadline;
                return None;
            }
            // A day's profile: arrivals come at the peak rate and each is kept with probability
            // (this hour's weight / the peak weight), a Poisson process of the varying rate.
            if let Some(peaks) = self.day_peaks
                && rng.random::<f64>() * 4.0 >= day_weight(peaks, self.hour_of(self.at))
            {
                continue;
            }
            self.count += 1;
            return Some(self.at);
        }
    }

    /// Count the arrivals still due before the deadline without scheduling them one by one (the
    /// worker was too far behind to start them): a Poisson count of the rest of the schedule.
    pub fn count_rest(&mut self, rng: &mut impl rand::Rng) {
        let mean = self.rate * self.weighted_ns(self.at, self.deadline);
        if let Ok(p) = Poisson::new(mean) {
            self.count += p.sample(rng) as u64;
        }
        self.at = self.deadline;
    }

    /// The hour of the simulated day that instant `t` falls in.
    fn hour_of(&self, t: i64) -> u32 {
        let share = (t - self.run_start) as f64 / (self.deadline - self.run_start).max(1) as f64;
        (share * 24.0).clamp(0.0, 23.0) as u32
    }

    /// Nanoseconds from `from` to `to`, each weighted by its hour's share of the peak rate.
    fn weighted_ns(&self, from: i64, to: i64) -> f64 {
        let Some(peaks) = self.day_peaks else {
            return (to - from).max(0) as f64;
        };
        let span = (self.deadline - self.run_start).max(1) as f64;
        (0..24u32)
            .map(|h| {
                let start = self.run_start as f64 + span * h as f64 / 24.0;
                let end = self.run_start as f64 + span * (h + 1) as f64 / 24.0;
                let overlap = end.min(to as f64) - start.max(from as f64);
                overlap.max(0.0) * day_weight(peaks, h) / 4.0
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    /// 2026-12-01 in nanoseconds since 2000: where a worker's schedule starts.
    const T0: i64 = 849_398_400_000_000_000;

    fn all(rate: f64, seconds: f64, peaks: Option<u32>) -> (u64, i64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let deadline = T0 + (seconds * 1e9) as i64;
        let mut a = Arrivals::new(rate, T0, T0, deadline, peaks);
        let mut last = T0;
        while let Some(t) = a.next(&mut rng) {
            assert!(t >= last && t < deadline);
            last = t;
        }
        (a.count, a.at())
    }

    #[test]
    fn the_fastest_schedule_advances_to_its_deadline() {
        // (the old f64-µs schedule never got past the first arrival at this rate)
        let (count, at) = all(MAX_RATE_PER_WORKER, 0.5, None);
        assert!(
            (count as f64 - 500_000.0).abs() < 5.0 * 500_000f64.sqrt(),
            "{count}"
        );
        assert_eq!(at, T0 + 500_000_000);
    }

    #[test]
    fn rates_past_the_bound_are_clamped_not_stalled() {
        let (count, _) = all(1e300, 0.01, None);
        assert!(count < 20_000, "{count}");
    }

    #[test]
    fn slow_rates_count_as_poisson() {
        let (count, _) = all(100.0, 100.0, None);
        assert!((count as f64 - 10_000.0).abs() < 500.0, "{count}");
    }

    #[test]
    fn the_rest_of_a_schedule_is_counted_at_once() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let deadline = T0 + 3_600 * 1_000_000_000;
        let mut a = Arrivals::new(MAX_RATE_PER_WORKER, T0, T0, deadline, None);
        a.next(&mut rng);
        a.count_rest(&mut rng);
        let expected = 3.6e9;
        assert!(
            (a.count as f64 - expected).abs() < 5.0 * expected.sqrt(),
            "{}",
            a.count
        );
        assert_eq!(a.next(&mut rng), None);
    }

    #[test]
    fn a_day_profile_thins_the_same_way_counted_or_scheduled() {
        let peaks = (1 << 9) | (1 << 15);
        let (scheduled, _) = all(10_000.0, 24.0, Some(peaks));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let deadline = T0 + 24_000_000_000;
        let mut a = Arrivals::new(10_000.0, T0, T0, deadline, Some(peaks));
        a.count_rest(&mut rng);
        // per peak-rate hour-second: 2 × 1 + 6 × ¼/4 … = (2·4 + 6·0.25 + 16·1) / 4 = 6.375 s
        let expected = 10_000.0 * 6.375;
        for n in [scheduled, a.count] {
            assert!(
                (n as f64 - expected).abs() < 5.0 * expected.sqrt(),
                "{n} vs {expected}"
            );
        }
    }

    #[test]
    fn day_weights() {
        assert_eq!(day_weight(1 << 9, 9), 4.0);
        assert_eq!(day_weight(1 << 9, 3), 0.25);
        assert_eq!(day_weight(1 << 9, 12), 1.0);
    }
}
