//! Kubernetes timestamps, for the figures the scenarios print.

/// Seconds since the epoch of an RFC 3339 time in UTC (`2026-12-03T14:27:58Z`).
pub fn epoch(text: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_reads_kubernetes_times() {
        assert_eq!(epoch("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch("2026-12-03T14:27:58Z"), Some(1_796_308_078));
        assert_eq!(epoch("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(epoch("garbage"), None);
    }
}
