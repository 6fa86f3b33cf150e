//! The emulator's TLS identity: given by the user, or a CA made once per state directory and a
//! server certificate for localhost signed by it. Clients trust `<state-dir>/ca.pem`.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads a PEM certificate chain and key.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(key).with_context(|| format!("reading {}", key.display()))?.as_slice())
        .with_context(|| format!("parsing {}", key.display()))?
        .with_context(|| format!("no private key in {}", key.display()))?;
    server_config(certs, key)
}

/// Makes (or reuses) `dir/ca.pem` + `dir/ca-key.pem` and a fresh server certificate for `names`.
pub fn generate(dir: &Path, names: &[String]) -> anyhow::Result<ServerConfig> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_cert_pem, ca_key) = load_or_make_ca(dir)?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_cert_pem).context("parsing ca.pem")?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, "iotsub emulator");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let certs = vec![cert.der().clone(), CertificateDer::from(pem_to_der(&ca_cert_pem)?)];
    server_config(certs, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
}

fn load_or_make_ca(dir: &Path) -> anyhow::Result<(String, KeyPair)> {
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca-key.pem");
    if let (Ok(cert), Ok(key)) = (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
        return Ok((cert, KeyPair::from_pem(&key).context("parsing ca-key.pem")?));
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "iotsub emulator CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_private(&key_path, &key.serialize_pem())?;
    // Written last: its presence tells readers the CA is complete.
    std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    Ok((cert.pem(), key))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let cert = rustls_pemfile::certs(&mut pem.as_bytes()).next().context("no certificate in ca.pem")??;
    Ok(cert.to_vec())
}

fn server_config(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}
