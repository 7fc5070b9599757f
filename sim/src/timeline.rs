//! A quantity (bytes on a tier) over simulated time, kept as fixed-width
//! buckets of byte-milliseconds, so memory grows with the trace's duration
//! and not with its events.
//!
//! Invariant: the integral of the buckets equals the integral of the
//! quantity from time 0 to the last time it was advanced or given.

#[derive(Debug, Clone)]
pub struct Timeline {
    bucket_ms: u64,
    buckets: Vec<f64>,
    /// Forward integration: the last time and value seen by `advance`.
    at: u64,
    value: u64,
    peak: u64,
}

impl Timeline {
    pub fn new(bucket_ms: u64) -> Self {
        Self {
            bucket_ms: bucket_ms.max(1),
            buckets: Vec::new(),
            at: 0,
            value: 0,
            peak: 0,
        }
    }

    /// Adds `value` held over `[start, end)`.
    pub fn add_interval(&mut self, start: u64, end: u64, value: u64) {
        if end <= start || value == 0 {
            return;
        }
        let last = ((end - 1) / self.bucket_ms) as usize;
        if self.buckets.len() <= last {
            self.buckets.resize(last + 1, 0.0);
        }
        let mut t = start;
        while t < end {
            let b = t / self.bucket_ms;
            let b_end = ((b + 1) * self.bucket_ms).min(end);
            self.buckets[b as usize] += (b_end - t) as f64 * value as f64;
            t = b_end;
        }
    }

    /// The quantity was `self.value` until `now`, and is `value` from now on.
    pub fn set(&mut self, now: u64, value: u64) {
        if now > self.at {
            self.add_interval(self.at, now, self.value);
            self.at = now;
        }
        self.value = value;
        self.peak = self.peak.max(value);
    }

    /// The highest value given to `set`.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The integral in byte-milliseconds.
    pub fn integral(&self) -> f64 {
        self.buckets.iter().sum()
    }

    /// The highest bucket average (the peak of a quantity only known by interval).
    pub fn peak_average(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b / self.bucket_ms as f64)
            .fold(0.0, f64::max)
    }

    /// (bucket start in days, average value over the bucket) up to `end`.
    pub fn series(&self, end: u64) -> Vec<(f64, f64)> {
        let n = end.div_ceil(self.bucket_ms) as usize;
        (0..n)
            .map(|i| {
                let sum = self.buckets.get(i).copied().unwrap_or(0.0);
                let width =
                    (((i as u64 + 1) * self.bucket_ms).min(end) - i as u64 * self.bucket_ms) as f64;
                (
                    (i as u64 * self.bucket_ms) as f64 / 86_400_000.0,
                    sum / width.max(1.0),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_split_across_buckets() {
        let mut t = Timeline::new(10);
        t.add_interval(5, 25, 2);
        assert_eq!(t.integral(), 40.0);
        assert_eq!(
            t.series(30),
            vec![
                (0.0, 1.0),
                (10.0 / 86_400_000.0, 2.0),
                (20.0 / 86_400_000.0, 1.0)
            ]
        );
    }

    #[test]
    fn set_integrates_forward_and_keeps_the_peak() {
        let mut t = Timeline::new(100);
        t.set(0, 10);
        t.set(50, 30);
        t.set(100, 0);
        assert_eq!(t.integral(), 10.0 * 50.0 + 30.0 * 50.0);
        assert_eq!(t.peak(), 30);
        assert_eq!(t.peak_average(), 20.0);
    }
}
