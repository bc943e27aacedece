//! A connection's payload meter in one direction: bytes in the current tick window, over the
//! connection's life, and a smoothed rate.

/// Weight of the newest tick in the rate estimate: a time constant of about 0.5 s at 100 ms
/// ticks, fast enough to size request pipelines as links ramp up.
const RATE_ALPHA: f64 = 0.2;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Meter {
    window: u64,
    total: u64,
    rate: f64,
}

impl Meter {
    pub(crate) fn record(&mut self, bytes: u64) {
        self.window += bytes;
        self.total += bytes;
    }

    /// Folds the window of `dt_secs` into the rate and opens a new window.
    pub(crate) fn roll(&mut self, dt_secs: f64) {
        let sample = self.window as f64 / dt_secs;
        self.rate += RATE_ALPHA * (sample - self.rate);
        self.window = 0;
    }

    /// Smoothed bytes per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Bytes over the connection's life.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    #[cfg(test)]
    pub(crate) fn set_rate(&mut self, rate: f64) {
        self.rate = rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_converges_to_steady_input() {
        let mut m = Meter::default();
        for _ in 0..50 {
            m.record(1000);
            m.roll(0.1);
        }
        assert!((m.rate() - 10_000.0).abs() < 100.0);
        assert_eq!(m.total(), 50_000);
    }
}
