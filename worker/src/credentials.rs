//! Where the AccessKey comes from, asked before every connection attempt (signing is per attempt
//! too), so new credentials reach a running pod without a restart:
//!
//! - flags or environment: fixed for the life of the process;
//! - a directory (a mounted Secret volume: files `accessKeyId`, `accessKeySecret`, and
//!   `securityToken` for `ststoken`): read again at each attempt, so the kubelet's refresh of the
//!   volume is the rotation;
//! - RRSA: the pod's projected ServiceAccount token exchanged with STS `AssumeRoleWithOIDC` for
//!   credentials that expire; exchanged again (the token file read again) when none are held or
//!   they expire within 5 minutes.
//!
//! Every secret value ever read is remembered for redaction (the last few), so an error that
//! quotes an old key still shows none.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use iotsub_aliyun::{
    amqp::AccessKey,
    sts::{self, AssumeRoleWithOidc, Assumed, StsError},
};
use iotsub_common::Secret;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::error::Error;

/// STS credentials are renewed when they expire within this (PLATFORM.md: a login needs an
/// unexpired token; a connection outlives it).
const RENEW_WITHIN: time::Duration = time::Duration::minutes(5);
/// How many generations of secret values are kept for redaction.
const REMEMBERED: usize = 8;

/// The key file names of a credentials directory: the same keys as the Secret's data.
pub const ACCESS_KEY_ID_FILE: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET_FILE: &str = "accessKeySecret";
pub const SECURITY_TOKEN_FILE: &str = "securityToken";

#[derive(Debug, Clone)]
pub enum Source {
    Fixed(AccessKey),
    Directory(PathBuf),
    Rrsa(Rrsa),
}

/// RRSA: who to become, with which token file, at which STS.
#[derive(Debug, Clone)]
pub struct Rrsa {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub oidc_token_file: PathBuf,
    pub role_session_name: String,
    pub duration_seconds: u32,
    pub sts_endpoint: String,
}

pub struct Credentials {
    source: Source,
    /// For STS (RRSA): no redirects, the same extra trust roots as the AMQP endpoint.
    sts_http: Option<reqwest::Client>,
    assumed: tokio::sync::Mutex<Option<Assumed>>,
    seen: Mutex<Vec<Secret<String>>>,
}

impl Credentials {
    pub fn new(source: Source, extra_ca_pem: Option<&[u8]>) -> Result<Credentials, Error> {
        let sts_http = match &source {
            Source::Rrsa(_) => Some(sts_client(extra_ca_pem)?),
            _ => None,
        };
        let credentials = Credentials { source, sts_http, assumed: tokio::sync::Mutex::default(), seen: Mutex::default() };
        if let Source::Fixed(key) = &credentials.source {
            credentials.remember(key);
        }
        Ok(credentials)
    }

    /// The credentials for the next login.
    pub async fn current(&self) -> Result<AccessKey, Error> {
        let key = match &self.source {
            Source::Fixed(key) => key.clone(),
            Source::Directory(dir) => read_directory(dir)?,
            Source::Rrsa(rrsa) => self.assume(rrsa).await?,
        };
        self.remember(&key);
        Ok(key)
    }

    /// Every secret value read so far (the newest few): what no log or error may show.
    pub fn secrets(&self) -> Vec<String> {
        self.seen.lock().expect("credentials lock").iter().map(|s| s.expose().clone()).collect()
    }

    fn remember(&self, key: &AccessKey) {
        let mut seen = self.seen.lock().expect("credentials lock");
        for value in std::iter::once(&key.secret).chain(key.security_token.as_ref()) {
            if !seen.contains(value) {
                seen.push(value.clone());
            }
        }
        let excess = seen.len().saturating_sub(REMEMBERED * 2);
        seen.drain(..excess);
    }

    async fn assume(&self, rrsa: &Rrsa) -> Result<AccessKey, Error> {
        let mut assumed = self.assumed.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(held) = assumed.as_ref().filter(|a| !a.expires_within(now, RENEW_WITHIN)) {
            return Ok(held.access_key.clone());
        }
        let http = self.sts_http.as_ref().expect("an STS client for RRSA");
        match exchange(http, rrsa).await {
            Ok(fresh) => {
                info!(role_arn = rrsa.role_arn, expires_at = %fresh.expires_at, "STS credentials from the OIDC token (RRSA)");
                let key = fresh.access_key.clone();
                *assumed = Some(fresh);
                Ok(key)
            }
            // Still valid for a while: use them, and try again at the next attempt.
            Err(error) if assumed.as_ref().is_some_and(|a| a.expires_at > now) => {
                warn!(%error, "renewing the STS credentials failed; the current ones are still valid");
                Ok(assumed.as_ref().expect("checked").access_key.clone())
            }
            Err(error) => Err(error),
        }
    }
}

async fn exchange(http: &reqwest::Client, rrsa: &Rrsa) -> Result<Assumed, Error> {
    let token = std::fs::read_to_string(&rrsa.oidc_token_file)
        .map_err(|e| StsError::TokenFile { path: rrsa.oidc_token_file.display().to_string(), detail: e.to_string() })?;
    let request = AssumeRoleWithOidc {
        role_arn: rrsa.role_arn.clone(),
        oidc_provider_arn: rrsa.oidc_provider_arn.clone(),
        oidc_token: Secret::new(token.trim().to_owned()),
        role_session_name: rrsa.role_session_name.clone(),
        duration_seconds: rrsa.duration_seconds,
    };
    Ok(sts::assume_role_with_oidc(http, &rrsa.sts_endpoint, &request).await?)
}

fn sts_client(extra_ca_pem: Option<&[u8]>) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .timeout(std::time::Duration::from_secs(10))
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(pem) = extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Config(format!("the CA for STS: {e}")))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| Error::Config(format!("the STS client: {e}")))
}

/// Reads a mounted Secret volume. The kubelet swaps the whole directory at once (`..data`), so a
/// read that saw a swap in the middle is read again.
pub fn read_directory(dir: &Path) -> Result<AccessKey, Error> {
    let generation = || std::fs::read_link(dir.join("..data")).ok();
    for _ in 0..3 {
        let before = generation();
        let key = read_files(dir)?;
        if generation() == before {
            return Ok(key);
        }
    }
    read_files(dir)
}

fn read_files(dir: &Path) -> Result<AccessKey, Error> {
    let read = |name: &str| -> Result<Option<String>, Error> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Credentials(format!("reading {}: {e}", dir.join(name).display()))),
        }
    };
    let missing = |name: &str| Error::Credentials(format!("{} has no {name} (an empty or missing key of the Secret)", dir.display()));
    Ok(AccessKey {
        id: read(ACCESS_KEY_ID_FILE)?.ok_or_else(|| missing(ACCESS_KEY_ID_FILE))?,
        secret: read(ACCESS_KEY_SECRET_FILE)?.ok_or_else(|| missing(ACCESS_KEY_SECRET_FILE))?.into(),
        security_token: read(SECURITY_TOKEN_FILE)?.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the files the way the kubelet does: a new timestamped directory, then `..data` and
    /// the key links swapped to it.
    fn kubelet_write(dir: &Path, generation: &str, files: &[(&str, &str)]) {
        let data = dir.join(format!("..{generation}"));
        std::fs::create_dir_all(&data).unwrap();
        for (name, value) in files {
            std::fs::write(data.join(name), value).unwrap();
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = dir.join(name);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_directory_is_read_again_at_every_attempt() {
        let dir = tempfile::tempdir().unwrap();
        kubelet_write(dir.path(), "1", &[("accessKeyId", "demo\n"), ("accessKeySecret", "demo-secret")]);
        let credentials = Credentials::new(Source::Directory(dir.path().into()), None).unwrap();
        let first = credentials.current().await.unwrap();
        assert_eq!((first.id.as_str(), first.secret.expose().as_str(), first.security_token), ("demo", "demo-secret", None));

        kubelet_write(dir.path(), "2", &[("accessKeyId", "rotated"), ("accessKeySecret", "rotated-secret")]);
        let second = credentials.current().await.unwrap();
        assert_eq!((second.id.as_str(), second.secret.expose().as_str()), ("rotated", "rotated-secret"));
        assert_eq!(credentials.secrets(), vec!["demo-secret".to_owned(), "rotated-secret".to_owned()], "both generations are redacted");
    }

    #[tokio::test]
    async fn a_missing_key_is_named_without_any_value() {
        let dir = tempfile::tempdir().unwrap();
        kubelet_write(dir.path(), "1", &[("accessKeyId", "demo"), ("accessKeySecret", "")]);
        let error = Credentials::new(Source::Directory(dir.path().into()), None).unwrap().current().await.unwrap_err().to_string();
        assert!(error.contains("accessKeySecret") && error.contains(&dir.path().display().to_string()), "{error}");
        assert!(!error.contains("demo"), "{error}");
    }
}
