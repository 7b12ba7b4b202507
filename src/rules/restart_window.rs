//! Restart windows: when a workload may start a rollout. A workload annotated
//! `kube-reloader.io/restart-window` (or Reloader's `reloader.stakater.com/restart-window`, the
//! form of its pull request #1214) rolls a config change only while one of its windows is open; a
//! change seen outside them waits, and is rolled once when the next window opens, with whatever
//! the configs hold then.
//!
//! Nothing about a waiting change is kept apart from the cluster: the workload's recorded baseline
//! differs from its configs until it rolls, so a restarted controller finds it waiting again.
//!
//! Two forms, in either annotation:
//! - `Europe/Berlin 0 2 * * * 1h`: an IANA time zone, a five-field cron expression (minute, hour,
//!   day of month, month, day of week) and a duration; several windows separated by `;`.
//! - Reloader's JSON, `{"timezone":"UTC","windows":[{"cron":"0 0 * * *","duration":"1h"}]}`.
//!
//! A window opens at each time its cron expression matches, in its time zone's wall-clock time,
//! and stays open for its duration of elapsed time (so a daylight-saving change shortens or
//! lengthens nothing): `[start, start + duration)`. It governs when a rollout starts, not when it
//! ends.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::Deserialize;

use crate::model::annotations::{ours, reloader};
use crate::model::duration::parse_duration;
use crate::rules::optin::{Annotations, InvalidAnnotation};

/// The longest window: a week (a weekend's window is 48 h).
pub const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most windows one annotation may list.
pub const MOST: usize = 16;

/// A workload's restart windows, as its annotation gives them.
#[derive(Debug, Clone)]
pub struct RestartWindow {
    spans: Vec<Span>,
}

/// One window: opened by a cron expression in a time zone, open for a duration.
#[derive(Debug, Clone)]
struct Span {
    zone: String,
    tz: TimeZone,
    cron: Cron,
    length: Duration,
}

/// Whether a rollout may start at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A window is open, until `closes`.
    Open { closes: Timestamp },
    /// No window is open; the next opens at `opens`.
    Closed { opens: Timestamp },
}

/// Reloader's JSON form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    timezone: String,
    windows: Vec<PolicyWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyWindow {
    cron: String,
    duration: String,
}

impl FromStr for RestartWindow {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let windows: Vec<(String, String, String)> = if value.starts_with('{') {
            let policy: Policy = serde_json::from_str(value).map_err(|e| e.to_string())?;
            policy
                .windows
                .into_iter()
                .map(|w| (policy.timezone.clone(), w.cron, w.duration))
                .collect()
        } else {
            value
                .split(';')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(short_form)
                .collect::<Result<_, _>>()?
        };
        if windows.is_empty() || windows.len() > MOST {
            return Err(format!("give 1 to {MOST} windows"));
        }
        let spans = windows
            .into_iter()
            .map(|(zone, cron, length)| Span::new(zone, &cron, &length))
            .collect::<Result<_, _>>()?;
        Ok(RestartWindow { spans })
    }
}

/// `<time zone> <five cron fields> <duration>`, split in its three parts.
fn short_form(window: &str) -> Result<(String, String, String), String> {
    let fields: Vec<&str> = window.split_whitespace().collect();
    let [zone, cron @ .., length] = fields.as_slice() else {
        return Err(format!(
            "{window:?} is not a time zone, a cron expression and a duration"
        ));
    };
    if cron.len() != 5 {
        return Err(format!(
            "{window:?}: the cron expression has {} fields, not 5 (minute hour day-of-month month day-of-week)",
            cron.len()
        ));
    }
    Ok((zone.to_string(), cron.join(" "), length.to_string()))
}

impl Span {
    fn new(zone: String, cron: &str, length: &str) -> Result<Self, String> {
        if zone.is_empty() || zone.eq_ignore_ascii_case("local") {
            return Err("name a time zone, like UTC or Europe/Berlin".into());
        }
        let tz = TimeZone::get(&zone).map_err(|_| format!("unknown time zone {zone:?}"))?;
        if cron.split_whitespace().count() != 5 {
            return Err(format!("cron expression {cron:?} does not have 5 fields"));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(cron)
            .map_err(|e| format!("cron expression {cron:?}: {e}"))?;
        let length = parse_duration(length).map_err(|e| format!("duration {e}"))?;
        if length.is_zero() || length > LONGEST {
            return Err(format!(
                "duration {length:?} is not between 1s and {}h",
                LONGEST.as_secs() / 3600
            ));
        }
        Ok(Span {
            zone,
            tz,
            cron,
            length,
        })
    }

    /// The latest start at or before `now`, and the first start after it.
    fn around(&self, now: Timestamp) -> (Option<Zoned>, Option<Zoned>) {
        let now = now.to_zoned(self.tz.clone());
        (
            self.cron.find_previous_occurrence(&now, true).ok(),
            self.cron.find_next_occurrence(&now, false).ok(),
        )
    }

    fn end(&self, start: &Zoned) -> Option<Timestamp> {
        let length = SignedDuration::try_from(self.length).ok()?;
        start.timestamp().checked_add(length).ok()
    }
}

impl RestartWindow {
    /// Whether a rollout may start at `now`; `None` when no window is open and none ever opens
    /// again (a cron expression like `0 0 30 2 *`).
    pub fn at(&self, now: Timestamp) -> Option<Standing> {
        let mut closes: Option<Timestamp> = None;
        let mut opens: Option<Timestamp> = None;
        for span in &self.spans {
            let (last, next) = span.around(now);
            if let Some(end) = last.as_ref().and_then(|start| span.end(start))
                && now < end
            {
                closes = closes.max(Some(end));
            }
            if let Some(next) = next {
                let next = next.timestamp();
                opens = Some(opens.map_or(next, |o| o.min(next)));
            }
        }
        match (closes, opens) {
            (Some(closes), _) => Some(Standing::Open { closes }),
            (None, Some(opens)) => Some(Standing::Closed { opens }),
            (None, None) => None,
        }
    }

    /// The windows, said to people: `0 2 * * * (Europe/Berlin) for 1h`, joined by `; `.
    pub fn describe(&self) -> String {
        let spans: Vec<String> = self
            .spans
            .iter()
            .map(|s| {
                let length = SignedDuration::try_from(s.length).unwrap_or_default();
                format!("{} ({}) for {length:#}", s.cron.pattern, s.zone)
            })
            .collect();
        spans.join("; ")
    }
}

/// The annotation that gives a workload's restart windows: ours, or Reloader's when Reloader's
/// annotations are honoured (`reloader`) and ours is not set.
pub fn annotation(metadata: &Annotations, reloader: bool) -> Option<(&'static str, &String)> {
    if let Some(value) = metadata.get(ours::RESTART_WINDOW) {
        return Some((ours::RESTART_WINDOW, value));
    }
    let value = metadata
        .get(reloader::RESTART_WINDOW)
        .filter(|_| reloader)?;
    Some((reloader::RESTART_WINDOW, value))
}

/// A workload's restart windows and where they stand at `now`: `Ok(None)` without any. An
/// invalid annotation is an error, and the workload rolls as if it had none.
pub fn read(
    metadata: &Annotations,
    reloader: bool,
    now: Timestamp,
) -> Result<Option<(RestartWindow, Standing)>, InvalidAnnotation> {
    let Some((key, value)) = annotation(metadata, reloader) else {
        return Ok(None);
    };
    let invalid = |why: String| InvalidAnnotation {
        annotation: key.to_string(),
        value: value.clone(),
        expected: format!(
            "{why}; use a time zone, a five-field cron expression and a duration, like \"Europe/Berlin 0 2 * * * 1h\" (several separated by ';'), or Reloader's JSON {{\"timezone\":\"UTC\",\"windows\":[{{\"cron\":\"0 2 * * *\",\"duration\":\"1h\"}}]}}"
        ),
    };
    let window: RestartWindow = value.parse().map_err(invalid)?;
    let standing = window
        .at(now)
        .ok_or_else(|| invalid("no window ever opens".into()))?;
    Ok(Some((window, standing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(s: &str) -> RestartWindow {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn open(closes: &str) -> Option<Standing> {
        Some(Standing::Open { closes: at(closes) })
    }

    fn closed(opens: &str) -> Option<Standing> {
        Some(Standing::Closed { opens: at(opens) })
    }

    #[test]
    fn a_daily_window_is_open_from_its_start_to_its_end() {
        let w = window("UTC 0 2 * * * 1h");
        assert_eq!(
            w.at(at("2026-12-07T01:59:59Z")),
            closed("2026-12-07T02:00:00Z")
        );
        assert_eq!(
            w.at(at("2026-12-07T02:00:00Z")),
            open("2026-12-07T03:00:00Z")
        );
        assert_eq!(
            w.at(at("2026-12-07T02:30:15.5Z")),
            open("2026-12-07T03:00:00Z")
        );
        // Half open: at its end it is closed, until the next day's start.
        assert_eq!(
            w.at(at("2026-12-07T03:00:00Z")),
            closed("2026-12-08T02:00:00Z")
        );
    }

    #[test]
    fn seconds_long_windows_each_minute() {
        let w = window("UTC * * * * * 5s");
        assert_eq!(
            w.at(at("2026-12-07T10:00:03Z")),
            open("2026-12-07T10:00:05Z")
        );
        assert_eq!(
            w.at(at("2026-12-07T10:00:05Z")),
            closed("2026-12-07T10:01:00Z")
        );
        assert_eq!(
            w.at(at("2026-12-07T10:00:59.9Z")),
            closed("2026-12-07T10:01:00Z")
        );
    }

    #[test]
    fn wall_clock_time_in_the_time_zone() {
        // 02:00 in Berlin is 01:00 UTC in winter, 00:00 UTC in summer.
        let w = window("Europe/Berlin 0 2 * * * 1h");
        assert_eq!(
            w.at(at("2026-12-07T01:30:00Z")),
            open("2026-12-07T02:00:00Z")
        );
        assert_eq!(
            w.at(at("2026-07-07T00:30:00Z")),
            open("2026-07-07T01:00:00Z")
        );
        assert_eq!(
            w.at(at("2026-07-07T01:30:00Z")),
            closed("2026-07-08T00:00:00Z")
        );
    }

    #[test]
    fn a_duration_is_elapsed_time_across_daylight_saving() {
        // Berlin's clocks go from 02:00 to 03:00 on 2026-03-29: a window from 01:30 for 1h
        // closes one hour later in absolute time, at 03:30 wall-clock time.
        let w = window("Europe/Berlin 30 1 * * * 1h");
        assert_eq!(
            w.at(at("2026-03-29T01:15:00Z")),
            open("2026-03-29T01:30:00Z")
        );
        assert_eq!(
            w.at(at("2026-03-29T01:30:00Z")),
            closed("2026-03-29T23:30:00Z")
        );
    }

    #[test]
    fn several_windows_the_earliest_opening_and_the_latest_close() {
        let w = window("UTC 0 22 * * 1-5 2h; UTC 0 6 * * 0,6 12h");
        // Monday 2026-12-07.
        assert_eq!(
            w.at(at("2026-12-07T12:00:00Z")),
            closed("2026-12-07T22:00:00Z")
        );
        assert_eq!(
            w.at(at("2026-12-07T23:00:00Z")),
            open("2026-12-08T00:00:00Z")
        );
        // Saturday 2026-12-12: the weekend window.
        assert_eq!(
            w.at(at("2026-12-12T12:00:00Z")),
            open("2026-12-12T18:00:00Z")
        );
        // Friday night's weekday window, then Saturday's.
        assert_eq!(
            w.at(at("2026-12-12T00:30:00Z")),
            closed("2026-12-12T06:00:00Z")
        );
    }

    #[test]
    fn names_of_days_and_compound_durations() {
        let w = window("UTC 30 1 * * MON-FRI 1h30m");
        // Saturday 2026-12-12: closed until Monday 01:30.
        assert_eq!(
            w.at(at("2026-12-12T02:00:00Z")),
            closed("2026-12-14T01:30:00Z")
        );
        assert_eq!(
            w.at(at("2026-12-14T02:59:00Z")),
            open("2026-12-14T03:00:00Z")
        );
    }

    #[test]
    fn reloaders_json_form() {
        let w = window(r#"{"timezone":"UTC","windows":[{"cron":"0 0 * * *","duration":"1h"}]}"#);
        assert_eq!(
            w.at(at("2026-12-07T00:10:00Z")),
            open("2026-12-07T01:00:00Z")
        );
        assert_eq!(w.describe(), "0 0 * * * (UTC) for 1h");
        // Day of month and day of week restricted both: either matches, as in cron.
        let w = window(r#"{"timezone":"UTC","windows":[{"cron":"0 0 1 * 1","duration":"1m"}]}"#);
        assert_eq!(
            w.at(at("2026-12-05T12:00:00Z")),
            closed("2026-12-07T00:00:00Z")
        );
    }

    #[test]
    fn invalid_windows_say_why() {
        for (value, why) in [
            ("", "give 1 to 16 windows"),
            ("0 2 * * * 1h", "not 5"),
            ("UTC 0 2 * * 1h", "not 5"),
            ("Mars/Olympus 0 2 * * * 1h", "unknown time zone"),
            ("Local 0 2 * * * 1h", "name a time zone"),
            ("UTC 0 25 * * * 1h", "cron expression"),
            ("UTC 0 0 0 2 * * 1h", "not 5"),
            ("UTC 0 2 * * * soon", "duration"),
            ("UTC 0 2 * * * 0s", "between 1s and 168h"),
            ("UTC 0 2 * * * 169h", "between 1s and 168h"),
            (r#"{"timezone":"UTC","windows":[]}"#, "give 1 to 16"),
            (
                r#"{"timezone":"UTC","windows":[{"cron":"0 0 * * *"}]}"#,
                "duration",
            ),
            (r#"{"timezone":"UTC","window":[]}"#, "unknown field"),
            (
                r#"{"windows":[{"cron":"0 0 * * *","duration":"1h"}]}"#,
                "timezone",
            ),
        ] {
            let err = value.parse::<RestartWindow>().expect_err(value);
            assert!(err.contains(why), "{value}: {err}");
        }
    }

    #[test]
    fn read_from_ours_or_reloaders_annotation() {
        let now = at("2026-12-07T12:00:00Z");
        let a = |pairs: &[(&str, &str)]| -> Annotations {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let json = r#"{"timezone":"UTC","windows":[{"cron":"0 0 * * *","duration":"1h"}]}"#;
        let theirs = a(&[(reloader::RESTART_WINDOW, json)]);
        let standing = |r: Result<Option<(RestartWindow, Standing)>, _>| r.unwrap().map(|r| r.1);
        assert_eq!(standing(read(&a(&[]), true, now)), None);
        assert_eq!(
            standing(read(&theirs, true, now)),
            closed("2026-12-08T00:00:00Z")
        );
        // Reloader's annotations not honoured: theirs is not read.
        assert_eq!(standing(read(&theirs, false, now)), None);
        // Ours first.
        let both = a(&[
            (reloader::RESTART_WINDOW, json),
            (ours::RESTART_WINDOW, "UTC 0 12 * * * 30m"),
        ]);
        assert_eq!(
            standing(read(&both, true, now)),
            open("2026-12-07T12:30:00Z")
        );
        // Invalid: named, with what to write instead.
        let bad = a(&[(ours::RESTART_WINDOW, "at night")]);
        let err = read(&bad, true, now).unwrap_err();
        assert_eq!(err.annotation, ours::RESTART_WINDOW);
        assert!(err.expected.contains("Europe/Berlin 0 2 * * * 1h"), "{err}");
        // A window that never opens is no window.
        let never = a(&[(ours::RESTART_WINDOW, "UTC 0 0 30 2 * 1h")]);
        assert!(read(&never, true, now).is_err());
    }

    #[test]
    fn the_bundled_time_zone_database_serves_the_image() {
        // The image is FROM scratch: no /usr/share/zoneinfo; the bundled copy must answer.
        let db = jiff::tz::TimeZoneDatabase::bundled();
        assert!(db.get("Europe/Berlin").is_ok());
        assert!(db.get("America/New_York").is_ok());
    }
}
