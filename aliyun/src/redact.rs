//! Hides an AccessKey's secret and security token in text meant for people (a status message, an
//! Event, a log line), in every form a request or an echo of it may carry them: raw,
//! percent-encoded once (a query) or twice (a string to sign), and base64.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};

use crate::{amqp::AccessKey, openapi::percent_encode};

/// What a hidden value becomes.
pub const REDACTED: &str = "<redacted>";

/// The forms of an AccessKey's secret values to hide, longest first.
#[derive(Clone, PartialEq, Eq)]
pub struct Redactor {
    forms: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// The secret and, with `ststoken`, the token of `key`.
    pub fn for_key(key: &AccessKey) -> Redactor {
        let values = std::iter::once(key.secret.expose()).chain(key.security_token.as_ref().map(iotsub_common::Secret::expose));
        Redactor::for_values(values.map(String::as_str))
    }

    pub fn for_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut forms = Vec::new();
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            let once = percent_encode(value);
            let twice = percent_encode(&once);
            forms.extend([value.to_owned(), once, twice]);
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                forms.push(engine.encode(value));
            }
        }
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        forms.dedup();
        Redactor { forms }
    }

    /// `text` with every form replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for form in &self.forms {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
        text
    }

    /// Whether `text` holds any form (for tests and checks).
    pub fn finds_any(&self, text: &str) -> bool {
        self.forms.iter().any(|form| text.contains(form.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccessKey {
        AccessKey { id: "STS.demo".into(), secret: "demo-secret".to_owned().into(), security_token: Some("CAIS+tok/en=".to_owned().into()) }
    }

    #[test]
    fn the_secret_and_token_are_hidden_raw_percent_encoded_and_base64() {
        let redactor = Redactor::for_key(&key());
        let token = "CAIS+tok/en=";
        let forms = [
            token.to_owned(),
            "CAIS%2Btok%2Fen%3D".to_owned(),
            "CAIS%252Btok%252Fen%253D".to_owned(),
            STANDARD.encode(token),
            URL_SAFE_NO_PAD.encode(token),
            "demo-secret".to_owned(),
            STANDARD.encode("demo-secret"),
        ];
        for form in forms {
            let text = format!("before {form} after");
            assert_eq!(redactor.redact(&text), "before <redacted> after", "{form}");
            assert!(redactor.finds_any(&text));
        }
        assert_eq!(redactor.redact("nothing secret: STS.demo"), "nothing secret: STS.demo", "the AccessKey id is not secret");
        assert!(!format!("{redactor:?}").contains("demo-secret"));
    }

    #[test]
    fn an_aksign_key_has_only_its_secret_hidden() {
        let key = AccessKey { security_token: None, ..key() };
        assert_eq!(Redactor::for_key(&key).redact("demo-secret CAIS+tok/en="), "<redacted> CAIS+tok/en=");
    }
}
