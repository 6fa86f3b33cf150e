//! Alibaba Cloud IoT Platform credentials, with no I/O.
//!
//! - [`amqp`]: the server-side subscription's SASL PLAIN username and password: sign, parse, verify.
//! - [`openapi`]: the RPC-style OpenAPI signature v1: sign and verify query parameters.
//! - [`consumer_group`]: the JSON of `QueryConsumerGroupStatus` and friends.
//! - [`answer`]: an OpenAPI answer as a status or a typed error.
//! - [`sts`]: STS `AssumeRoleWithOIDC` (RRSA): the request and the answer (the call with `client`).
//! - [`redact`]: hides an AccessKey's secret and token, in any encoding, in text for people.
//! - `client` (feature `client`): the HTTP client of those actions, rate-limited per AccessKey.

pub mod amqp;
pub mod answer;
#[cfg(feature = "client")]
pub mod client;
pub mod consumer_group;
pub mod error;
pub mod hmac_sign;
pub mod openapi;
pub mod redact;
pub mod sts;

pub use amqp::{AuthMode, SignMethod};
pub use error::Error;
