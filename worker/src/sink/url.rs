//! A sink URL as it may be shown: without its userinfo and query (either may carry a credential).

use reqwest::Url;

pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let had_userinfo = !shown.username().is_empty() || shown.password().is_some();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_userinfo {
        text = text.replacen("://", "://<redacted>@", 1);
    }
    if had_query {
        text.push_str("?<redacted>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_are_hidden() {
        let url: Url = "https://user:p%40ss@sink.example:8443/events?token=abc&x=1#frag".parse().unwrap();
        let shown = redact(&url);
        assert_eq!(shown, "https://<redacted>@sink.example:8443/events?<redacted>");
        assert!(!shown.contains("p%40ss") && !shown.contains("abc") && !shown.contains("user"));
        let plain: Url = "http://127.0.0.1:8080/events".parse().unwrap();
        assert_eq!(redact(&plain), "http://127.0.0.1:8080/events");
    }
}
