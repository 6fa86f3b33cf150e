use thiserror::Error;

/// Everything that can be wrong with a credential or a signed request.
///
/// Messages name the field at fault and never carry a secret, a password or a security token.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("username is malformed: {0}")]
    MalformedUsername(String),
    #[error("username lacks the required field `{0}`")]
    MissingField(&'static str),
    #[error("username repeats the field `{0}`")]
    DuplicateField(String),
    #[error("unknown authMode `{0}` (expected aksign or ststoken)")]
    UnknownAuthMode(String),
    #[error("unknown signMethod `{0}` (expected hmacsha1, hmacsha256 or hmacmd5)")]
    UnknownSignMethod(String),
    #[error("timestamp `{0}` is not epoch milliseconds")]
    InvalidTimestamp(String),
    #[error("clientId is {0} characters long; the platform allows at most 64")]
    ClientIdTooLong(usize),
    #[error("clientId must not be empty")]
    EmptyClientId,
    #[error("clientId must not contain `|`")]
    ClientIdHasPipe,
    #[error("field `{0}` must not contain `,`, `=` or `|`")]
    ReservedCharacter(&'static str),
    #[error("authMode=ststoken needs a securityToken")]
    SecurityTokenMissing,
    #[error("authMode=aksign must not carry a securityToken")]
    UnexpectedSecurityToken,
    #[error("signature does not match")]
    SignatureMismatch,
    #[error("request lacks the parameter `{0}`")]
    MissingParameter(&'static str),
    #[error("parameter `{name}` is `{value}`, expected {expected}")]
    UnsupportedParameter { name: &'static str, value: String, expected: &'static str },
}
