//! Wall-clock text for the services, formatted at most once per second.
//!
//! The loop's own timing uses the monotonic `Instant`; what the services send is local civil
//! time. Formatting it means a time-zone lookup, and with thousands of sessions ticking in the
//! same second every one of them would repeat that work, so [`WallClock`] keeps the text of the
//! current second and redoes it only when the second changes. The formatting itself is a plain
//! function, tested on fixed instants.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, TimeZone};

/// The time-stream line format (docs/PROTOCOLS.md §2): `2026-11-25 19:21:36`.
pub const TICK_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The daytime line format (RFC 867 leaves it open; this is `ctime(3)`'s, as inetd sends).
pub const DAYTIME_FORMAT: &str = "%a %b %e %H:%M:%S %Y";

/// Formats an instant the way the time stream sends it.
pub fn tick_text<Tz: TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    at.format(TICK_FORMAT).to_string()
}

/// Formats an instant as a daytime line, `\r\n` included.
pub fn daytime_text<Tz: TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    format!("{}\r\n", at.format(DAYTIME_FORMAT))
}

/// The current local time as text, cached per second.
#[derive(Default)]
pub struct WallClock {
    /// Unix second the cached texts belong to.
    second: Option<u64>,
    tick: String,
    daytime: String,
}

impl WallClock {
    /// The current local time in [`TICK_FORMAT`].
    pub fn tick_text(&mut self) -> &str {
        self.refresh();
        &self.tick
    }

    /// The current local time as a daytime line ([`DAYTIME_FORMAT`] and `\r\n`).
    pub fn daytime_text(&mut self) -> &str {
        self.refresh();
        &self.daytime
    }

    fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.second != Some(second) {
            let local = DateTime::<Local>::from(now);
            self.second = Some(second);
            self.tick = tick_text(&local);
            self.daytime = daytime_text(&local);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};

    #[test]
    fn tick_text_is_date_space_time() {
        let at = NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .map(|naive| Utc.from_utc_datetime(&naive))
            .unwrap();
        assert_eq!(tick_text(&at), "2026-01-02 03:04:05");
        assert_eq!(daytime_text(&at), "Fri Jan  2 03:04:05 2026\r\n");
    }

    #[test]
    fn wall_clock_matches_chrono_local_now() {
        let mut clock = WallClock::default();
        let text = clock.tick_text().to_owned();
        let parsed = chrono::NaiveDateTime::parse_from_str(&text, TICK_FORMAT).unwrap();
        let drift = Local::now().naive_local() - parsed;
        assert!(drift.num_seconds().abs() <= 1, "{text} is not now");
    }
}
