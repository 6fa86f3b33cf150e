//! A value that must never reach a log, a status, an Event or an error message.

use std::fmt;

/// Wraps a secret so that `#[derive(Debug)]` on the struct holding it stays safe: `Debug` and
/// `Display` print `<redacted>`. Read the value with [`Secret::expose`], only where it is used.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself: call it at the point of use (signing, a request header), never to log.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[derive(Debug)]
    #[allow(dead_code)] // read only through Debug
    struct Holder {
        id: String,
        secret: Secret<String>,
        token: Option<Secret<String>>,
    }

    #[test]
    fn derived_debug_of_a_holder_shows_no_secret() {
        let h = Holder { id: "LTAI".into(), secret: Secret::new("s3cr3t".into()), token: Some("t0k3n".to_string().into()) };
        let shown = format!("{h:?} {h:#?}");
        assert!(shown.contains("LTAI"), "{shown}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0k3n"), "{shown}");
        assert_eq!(h.secret.expose(), "s3cr3t");
    }

    #[test]
    fn display_is_redacted_too() {
        assert_eq!(Secret::new(42).to_string(), "<redacted>");
    }
}
