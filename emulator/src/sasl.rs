//! SASL PLAIN as the platform does it: the signed username and password, checked against the
//! emulator's accounts; the outcome is left for the connection task, which logs refusals.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use fe2o3_amqp::acceptor::{SaslAcceptor, sasl_acceptor::SaslServerFrame};
use fe2o3_amqp_types::{
    primitives::{Array, Symbol},
    sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse},
};
use iotsub_aliyun::amqp::Username;

use crate::platform::{Login, Platform};

/// What the SASL exchange decided, read by the connection task once the exchange is over.
#[derive(Debug, Clone)]
pub enum SaslDecision {
    Accepted(Login),
    Refused { username: Option<Username>, reason: String },
}

#[derive(Clone)]
pub struct PlatformSasl {
    platform: Arc<Platform>,
    pub decision: Arc<OnceLock<SaslDecision>>,
    remote: SocketAddr,
}

impl PlatformSasl {
    pub fn new(platform: Arc<Platform>, remote: SocketAddr) -> Self {
        PlatformSasl { platform, decision: Arc::new(OnceLock::new()), remote }
    }

    fn decide(&self, init: &SaslInit) -> SaslDecision {
        if init.mechanism.as_str() != "PLAIN" {
            return SaslDecision::Refused {
                username: None,
                reason: format!("SASL mechanism {} is not supported; use PLAIN", init.mechanism.as_str()),
            };
        }
        let Some(response) = init.initial_response.as_ref() else {
            return SaslDecision::Refused { username: None, reason: "SASL PLAIN without an initial response".into() };
        };
        // authzid NUL authcid NUL passwd
        let mut parts = response.split(|b| *b == 0);
        let (Some(_authzid), Some(user), Some(pass), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return SaslDecision::Refused { username: None, reason: "SASL PLAIN response is not authzid\\0authcid\\0passwd".into() };
        };
        let (Ok(user), Ok(pass)) = (std::str::from_utf8(user), std::str::from_utf8(pass)) else {
            return SaslDecision::Refused { username: None, reason: "SASL PLAIN username or password is not UTF-8".into() };
        };
        match self.platform.authenticate(user, pass) {
            Ok(login) => SaslDecision::Accepted(login),
            Err(refused) => SaslDecision::Refused { username: refused.username.map(|u| *u), reason: refused.reason },
        }
    }
}

impl SaslAcceptor for PlatformSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from("PLAIN")])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        tracing::trace!(remote = %self.remote, "SASL init");
        let decision = self.decide(&init);
        let code = match decision {
            SaslDecision::Accepted(_) => SaslCode::Ok,
            SaslDecision::Refused { .. } => SaslCode::Auth,
        };
        let _ = self.decision.set(decision);
        SaslServerFrame::Outcome(SaslOutcome { code, additional_data: None })
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // PLAIN has no challenge round; a response is a protocol error.
        SaslServerFrame::Outcome(SaslOutcome { code: SaslCode::SysPerm, additional_data: None })
    }
}
