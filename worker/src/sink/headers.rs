//! Request headers from a mounted Secret (`--sink-headers-dir`): each file is one header named after
//! the file, its value the file's content, trimmed. Kubelet updates a mounted Secret by swapping the
//! `..data` symlink, so the directory is read again when that link's target or the directory's mtime
//! changes (checked at most once a second). Values are marked sensitive and never logged.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;

const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of the directory's content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    data_link: Option<PathBuf>,
}

fn stamp(dir: &Path) -> Stamp {
    Stamp { modified: std::fs::metadata(dir).and_then(|m| m.modified()).ok(), data_link: std::fs::read_link(dir.join("..data")).ok() }
}

/// Reads every header file of `dir` (names starting with `.` are kubelet's bookkeeping).
pub fn read_dir(dir: &Path) -> Result<HeaderMap, Error> {
    let bad = |detail: String| Error::Config(format!("--sink-headers-dir {}: {detail}", dir.display()));
    let mut headers = HeaderMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
    let mut names: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if file.starts_with('.') || !path.is_file() {
            continue;
        }
        let name = HeaderName::from_bytes(file.as_bytes()).map_err(|_| bad(format!("`{file}` is not a valid HTTP header name")))?;
        let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("reading `{file}`: {e}")))?;
        // The value is never part of the message: it may be a token.
        let mut value = HeaderValue::from_str(text.trim())
            .map_err(|_| bad(format!("the value of `{file}` holds characters an HTTP header cannot carry")))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

pub struct HeaderFiles {
    dir: PathBuf,
    state: Mutex<(Stamp, Instant, HeaderMap)>,
}

impl HeaderFiles {
    /// Reads `dir` once; a bad file is a configuration error at start.
    pub fn load(dir: &Path) -> Result<HeaderFiles, Error> {
        let headers = read_dir(dir)?;
        Ok(HeaderFiles { dir: dir.to_owned(), state: Mutex::new((stamp(dir), Instant::now(), headers)) })
    }

    /// The current headers, read again when the directory changed. A directory that became
    /// unreadable keeps the last good headers (and says so once per change).
    pub fn current(&self) -> HeaderMap {
        let mut state = self.state.lock().expect("headers lock");
        if state.1.elapsed() >= CHECK_EVERY {
            state.1 = Instant::now();
            let now = stamp(&self.dir);
            if now != state.0 {
                state.0 = now;
                match read_dir(&self.dir) {
                    Ok(headers) => {
                        tracing::info!(dir = %self.dir.display(), headers = headers.len(), "sink headers read again");
                        state.2 = headers;
                    }
                    Err(e) => tracing::warn!(error = %e, "keeping the previous sink headers"),
                }
            }
        }
        state.2.clone()
    }

    #[cfg(test)]
    fn check_now(&self) {
        self.state.lock().unwrap().1 = Instant::now() - CHECK_EVERY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_is_a_header_with_its_trimmed_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Authorization"), "Bearer abc\n").unwrap();
        std::fs::write(dir.path().join("x-tenant"), "  t1 ").unwrap();
        std::fs::create_dir(dir.path().join("..2026_data")).unwrap();
        std::fs::write(dir.path().join(".hidden"), "no").unwrap();
        let headers = read_dir(dir.path()).unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers["authorization"], "Bearer abc");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["x-tenant"], "t1");
    }

    #[test]
    fn a_bad_file_is_named_without_its_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad name"), "secret-value").unwrap();
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`bad name` is not a valid HTTP header name") && !err.contains("secret-value"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x-token"), "line1\nline2-secret").unwrap();
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x-token") && !err.contains("line2-secret"), "{err}");
    }

    #[test]
    fn a_swapped_data_link_is_read_again() {
        // The layout kubelet writes: ..data → ..v1, and each key a link into ..data.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::write(d.join("..v1/Authorization"), "Bearer one").unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/Authorization", d.join("Authorization")).unwrap();
        let files = HeaderFiles::load(d).unwrap();
        assert_eq!(files.current()["authorization"], "Bearer one");

        std::fs::create_dir(d.join("..v2")).unwrap();
        std::fs::write(d.join("..v2/Authorization"), "Bearer two").unwrap();
        std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        files.check_now();
        assert_eq!(files.current()["authorization"], "Bearer two");
    }
}
