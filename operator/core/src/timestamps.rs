//! Time as the status writes it: RFC 3339, whole seconds, UTC.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0).unwrap_or(at).format(&Rfc3339).expect("RFC 3339 formats")
}

pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The platform's epoch milliseconds (`OnlineTime`) as RFC 3339.
pub fn epoch_ms_rfc3339(ms: i64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.format(&Rfc3339).ok()
}
