//! `service logs --since`: a timestamp or a duration ago, as docker takes it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::output::parse_duration;

/// RFC 3339 (`2013-01-02T13:23:37Z`), a date, a Unix time, or a relative
/// duration (`42m`): the instant, in RFC 3339, for the API.
pub fn parse(text: &str, now: DateTime<Utc>) -> anyhow::Result<String> {
    let at = if let Ok(t) = text.parse::<DateTime<Utc>>() {
        t
    } else if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        t.and_utc()
    } else if let Some(t) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        t.and_utc()
    } else if let Ok(secs) = text.parse::<f64>() {
        DateTime::from_timestamp(secs as i64, 0)
            .ok_or_else(|| anyhow::anyhow!("invalid value for \"since\": {text:?}"))?
    } else {
        let ago = parse_duration(text).map_err(|_| {
            anyhow::anyhow!(
                "invalid value for \"since\": {text:?}: use a timestamp like 2013-01-02T13:23:37Z or a duration like 42m"
            )
        })?;
        now - chrono::Duration::nanoseconds(ago.min(i64::MAX as u64) as i64)
    };
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

#[cfg(test)]
mod tests {
    use crate::commands::since::parse;

    #[test]
    fn timestamps_and_durations() {
        let now = "2025-01-01T01:00:00Z".parse().expect("time");
        assert_eq!(
            parse("2013-01-02T13:23:37Z", now).expect("ts"),
            "2013-01-02T13:23:37.000000000Z"
        );
        assert_eq!(
            parse("42m", now).expect("rel"),
            "2025-01-01T00:18:00.000000000Z"
        );
        assert!(parse("soon", now).is_err());
    }
}
