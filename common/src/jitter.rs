//! Randomness for backoff: one source, so every retry loop in iotsub spreads clients the same way.

use std::time::Duration;

/// A uniform random number in [0, 1), for pure backoff code that takes its randomness as a parameter.
pub fn unit() -> f64 {
    rand::random::<f64>()
}

/// "Equal jitter": between half and the whole of `delay`, picked by `unit` ∈ [0, 1). Clients that
/// failed together retry apart, and none retries sooner than half the delay.
pub fn equal(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

/// [`equal`] with a fresh random number.
pub fn equal_random(delay: Duration) -> Duration {
    equal(delay, unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_jitter_stays_between_half_and_whole() {
        let d = Duration::from_secs(10);
        assert_eq!(equal(d, 0.0), Duration::from_secs(5));
        assert_eq!(equal(d, 1.0), d);
        assert_eq!(equal(d, 7.0), d, "out-of-range input is clamped");
        for _ in 0..1000 {
            let j = equal_random(d);
            assert!(j >= Duration::from_secs(5) && j <= d, "{j:?}");
        }
    }
}
