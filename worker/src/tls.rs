//! The TLS client configuration: the system's trust roots (the OS store, and the Mozilla roots built
//! in for images without one) plus an optional extra CA. There is deliberately no way to skip
//! verification. An extra CA given as a file (a mounted Secret) is read again before each
//! connection attempt, like the credentials.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use crate::error::Error;

/// The trust roots of the next connection attempt.
pub struct Trust {
    file: Option<PathBuf>,
    current: Mutex<(Option<Vec<u8>>, TlsConnector)>,
}

impl Trust {
    pub fn new(file: Option<PathBuf>, extra_ca_pem: Option<Vec<u8>>) -> Result<Trust, Error> {
        let connector = TlsConnector::from(client_config(extra_ca_pem.as_deref())?);
        Ok(Trust { file, current: Mutex::new((extra_ca_pem, connector)) })
    }

    /// The connector, rebuilt first when the CA file changed (a broken new file keeps the old roots).
    pub fn connector(&self) -> TlsConnector {
        let mut current = self.current.lock().expect("trust lock");
        if let Some(file) = &self.file {
            match std::fs::read(file) {
                Ok(pem) if current.0.as_ref() != Some(&pem) => match client_config(Some(&pem)) {
                    Ok(config) => {
                        info!(ca_file = %file.display(), "the CA file changed: new trust roots");
                        *current = (Some(pem), TlsConnector::from(config));
                    }
                    Err(error) => {
                        warn!(ca_file = %file.display(), %error, "the CA file changed but is not usable; keeping the previous roots");
                    }
                },
                Ok(_) => {}
                Err(error) => warn!(ca_file = %file.display(), %error, "the CA file cannot be read; keeping the previous roots"),
            }
        }
        current.1.clone()
    }
}

pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A broken or missing OS store is not fatal: the built-in roots stand in.
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_ca_pem {
        let mut count = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| Error::TrustRoots(format!("the extra CA is not valid PEM: {e}")))?;
            roots.add(cert).map_err(|e| Error::TrustRoots(format!("the extra CA is not a usable certificate: {e}")))?;
            count += 1;
        }
        if count == 0 {
            return Err(Error::TrustRoots("the extra CA holds no CERTIFICATE block".into()));
        }
    }
    // The provider is chosen explicitly: several are compiled into the workspace.
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TrustRoots(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_roots_alone_work() {
        client_config(None).unwrap();
    }

    #[test]
    fn extra_ca_without_a_certificate_is_refused() {
        let err = client_config(Some(b"not a pem")).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
