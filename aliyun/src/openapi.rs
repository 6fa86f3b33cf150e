//! Alibaba Cloud RPC-style OpenAPI signature, version 1.0 (HMAC-SHA1).
//!
//! Sort every parameter but `Signature` by name, percent-encode names and values (RFC 3986), join as
//! `k=v&…`, sign `METHOD&%2F&percentEncode(joined)` with the key `AccessKeySecret + "&"`.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

use crate::{Error, amqp::SignMethod, hmac_sign};

/// The IoT Platform's OpenAPI version.
pub const IOT_API_VERSION: &str = "2018-01-20";

const TIMESTAMP_FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// RFC 3986: everything but `A-Z a-z 0-9 - _ . ~` is encoded (so space is `%20`, `*` is `%2A`).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Query parameters, sorted by name as the signature needs them.
pub type Params = BTreeMap<String, String>;

pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// `YYYY-MM-DDThh:mm:ssZ` in UTC.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(TIMESTAMP_FORMAT).expect("a UTC date formats")
}

pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(text, TIMESTAMP_FORMAT).ok().map(time::PrimitiveDateTime::assume_utc)
}

/// The common parameters of an RPC call; add the action's own parameters, then [`sign`].
pub fn common_params(action: &str, access_key_id: &str, region_id: &str, nonce: &str, at: OffsetDateTime) -> Params {
    [
        ("Action", action),
        ("Format", "JSON"),
        ("Version", IOT_API_VERSION),
        ("AccessKeyId", access_key_id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", &format_timestamp(at)),
        ("RegionId", region_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `k=v&…` of every parameter but `Signature`, names and values percent-encoded, sorted by name.
pub fn canonical_query(params: &Params) -> String {
    params
        .iter()
        .filter(|(name, _)| name.as_str() != "Signature")
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn string_to_sign(http_method: &str, params: &Params) -> String {
    format!("{http_method}&%2F&{}", percent_encode(&canonical_query(params)))
}

pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    hmac_sign::sign_base64(SignMethod::HmacSha1, format!("{access_key_secret}&").as_bytes(), string_to_sign.as_bytes())
}

/// The full query string of a GET request, `Signature` included.
pub fn signed_query(params: &Params, access_key_secret: &str) -> String {
    let sig = signature(access_key_secret, &string_to_sign("GET", params));
    format!("{}&Signature={}", canonical_query(params), percent_encode(&sig))
}

/// Checks a received request's signature (constant time) and its signature parameters.
pub fn verify(http_method: &str, params: &Params, access_key_secret: &str) -> Result<(), Error> {
    let given = params.get("Signature").ok_or(Error::MissingParameter("Signature"))?;
    expect_param(params, "SignatureMethod", "HMAC-SHA1")?;
    expect_param(params, "SignatureVersion", "1.0")?;
    let ok = hmac_sign::verify_base64(
        SignMethod::HmacSha1,
        format!("{access_key_secret}&").as_bytes(),
        string_to_sign(http_method, params).as_bytes(),
        given,
    );
    if ok { Ok(()) } else { Err(Error::SignatureMismatch) }
}

fn expect_param(params: &Params, name: &'static str, expected: &'static str) -> Result<(), Error> {
    match params.get(name) {
        None => Err(Error::MissingParameter(name)),
        Some(value) if value == expected => Ok(()),
        Some(value) => Err(Error::UnsupportedParameter { name, value: value.clone(), expected }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer from Alibaba Cloud's signature documentation (PLATFORM.md).
    fn documented_params() -> Params {
        [
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn documented_string_to_sign_and_signature() {
        let params = documented_params();
        let sts = string_to_sign("GET", &params);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(signature("testsecret", &sts), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    #[test]
    fn percent_encoding_follows_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
    }

    #[test]
    fn signed_query_verifies_and_tampering_does_not() {
        let mut params = common_params("QueryConsumerGroupStatus", "ak", "cn-shanghai", "n-1", OffsetDateTime::UNIX_EPOCH);
        params.insert("GroupId".into(), "DEFAULT GROUP*".into());
        let query = signed_query(&params, "sk");
        let received: Params = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
                (decode(k), decode(v))
            })
            .collect();
        verify("GET", &received, "sk").unwrap();
        assert_eq!(verify("GET", &received, "other"), Err(Error::SignatureMismatch));
        let mut tampered = received.clone();
        tampered.insert("GroupId".into(), "OTHER".into());
        assert_eq!(verify("GET", &tampered, "sk"), Err(Error::SignatureMismatch));
        let mut unsigned = received;
        unsigned.remove("Signature");
        assert_eq!(verify("GET", &unsigned, "sk"), Err(Error::MissingParameter("Signature")));
    }

    #[test]
    fn timestamps_round_trip() {
        let at = parse_timestamp("2016-02-23T12:46:24Z").unwrap();
        assert_eq!(format_timestamp(at), "2016-02-23T12:46:24Z");
        assert!(parse_timestamp("2016-02-23 12:46:24").is_none());
    }
}
