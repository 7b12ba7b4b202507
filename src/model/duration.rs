//! Durations as the command line and the annotations write them.

use std::time::Duration;

use jiff::SignedDuration;

/// Parses `1500ms`, `2s`, `1m30s`, `1.5h`, `1h 30m`, `5 minutes` (jiff's "friendly" format, which
/// takes Go's and Reloader's forms), or a bare number of seconds. Negative durations are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    let signed: SignedDuration = s.parse().map_err(|_| {
        format!("{s:?} is not a duration (use ms, s, m or h: 500ms, 30s, 1m30s, 2h)")
    })?;
    Duration::try_from(signed).map_err(|_| format!("{s:?} is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_flags_and_annotations_take() {
        let secs = Duration::from_secs_f64;
        for (s, want) in [
            ("1500ms", secs(1.5)),
            ("2s", secs(2.0)),
            ("1m30s", secs(90.0)),
            ("1h30m", secs(5400.0)),
            ("1.5h", secs(5400.0)),
            ("90m", secs(5400.0)),
            ("0s", Duration::ZERO),
            (" 30 ", secs(30.0)),
            ("2.5", secs(2.5)),
            ("1h 30m", secs(5400.0)),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for s in ["", "soon", "-5s", "5 parsecs", "-1"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("use ms, s, m or h")
        );
    }
}
