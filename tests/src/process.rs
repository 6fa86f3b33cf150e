//! Child processes of the project's binaries, killed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// The path of a workspace binary (`make build` builds them): `$IOTSUB_BIN_DIR/<name>`, else
/// `target/<profile>/<name>` of the running executable (a test in `target/<profile>/deps/` or a
/// benchmark binary in `target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("IOTSUB_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("current executable");
            let dir = exe.parent().expect("executable's directory");
            if dir.ends_with("deps") { dir.parent().expect("target/<profile>").to_path_buf() } else { dir.to_path_buf() }
        }
    };
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `make build` (cargo build --workspace --bins) first", path.display());
    path
}

pub struct Process {
    pub name: String,
    pub child: Child,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Process> {
        command.stdin(Stdio::null());
        let child = command.spawn().map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(Process { name: name.to_owned(), child })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        nix::sys::signal::kill(self.pid(), signal)?;
        Ok(())
    }

    /// Waits for the exit without blocking the runtime's other tasks.
    pub async fn wait_exit(&mut self, deadline: std::time::Duration) -> anyhow::Result<ExitStatus> {
        let end = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= end {
                anyhow::bail!("{} did not exit within {deadline:?}", self.name);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
