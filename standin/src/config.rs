//! The stand-in's settings: flags, each also an `IOTSUB_STANDIN_*` environment variable (a pod's
//! manifest sets those).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "iotsub-standin", version, about = "A business-server stand-in for the worker's HTTP sink")]
pub struct Config {
    /// Where to listen (HTTP/1.1, keep-alive). Port 0 picks a free one (see --addr-file).
    #[arg(long, env = "IOTSUB_STANDIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// How long each event request is held before its answer, in milliseconds (fractions allowed:
    /// 0.5 is 500 µs, not rounded up to a millisecond; 0 answers at once).
    #[arg(long, env = "IOTSUB_STANDIN_SERVICE_TIME_MS", default_value_t = 0.0, value_parser = parse_millis, allow_hyphen_values = true)]
    pub service_time_ms: f64,
    /// How many event requests are served at once; more wait in line, first come first served, as
    /// at a server's worker pool. 0: no limit.
    #[arg(long, env = "IOTSUB_STANDIN_CONCURRENCY", default_value_t = 0)]
    pub concurrency: usize,
    /// Appends each CloudEvent id taken to this file, one a line (written in batches).
    #[arg(long, env = "IOTSUB_STANDIN_IDS_FILE")]
    pub ids_file: Option<PathBuf>,
    /// Writes each id of the ids file as `<id>\t<Unix milliseconds it was taken at>`.
    #[arg(long, env = "IOTSUB_STANDIN_IDS_TIMES", default_value_t = false)]
    pub ids_times: bool,
    /// Writes the bound address (host:port) to this file once listening.
    #[arg(long, env = "IOTSUB_STANDIN_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
}

impl Config {
    pub fn service_time(&self) -> Duration {
        Duration::from_secs_f64(self.service_time_ms / 1000.0)
    }
}

fn parse_millis(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("service time {text:?} is not a number of milliseconds"))?;
    if !value.is_finite() || !(0.0..=3_600_000.0).contains(&value) {
        return Err(format!("service time {text:?} must be between 0 and 3600000 ms"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_time_may_be_a_fraction_of_a_millisecond() {
        let config = Config::try_parse_from(["iotsub-standin", "--service-time-ms", "0.5"]).unwrap();
        assert_eq!(config.service_time(), Duration::from_micros(500));
    }

    #[test]
    fn a_negative_or_non_numeric_service_time_is_refused_by_name() {
        for bad in ["-1", "soon", "NaN"] {
            let error = Config::try_parse_from(["iotsub-standin", "--service-time-ms", bad]).unwrap_err().to_string();
            assert!(error.contains("service time"), "{bad}: {error}");
        }
    }
}
