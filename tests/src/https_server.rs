//! A real HTTPS server on loopback with its own CA, answering what a test's router says: a
//! stand-in for an endpoint that misbehaves (a redirect) or that a client must not trust.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

pub struct HttpsServer {
    pub addr: SocketAddr,
    /// The PEM of the CA that signed the server's certificate (for `127.0.0.1` and `localhost`).
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsServer {
    pub async fn start(router: Router) -> anyhow::Result<HttpsServer> {
        let (ca, ca_key) = make_ca()?;
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?.signed_by(&key, &ca, &ca_key)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(HttpsServer { addr, ca_pem: ca.pem(), task })
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// A fresh CA's certificate (PEM) that vouches for nothing a test talks to.
pub fn unrelated_ca_pem() -> anyhow::Result<String> {
    Ok(make_ca()?.0.pem())
}

fn make_ca() -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "iotsub test CA");
    let key = KeyPair::generate()?;
    let ca = params.self_signed(&key)?;
    Ok((ca, key))
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
