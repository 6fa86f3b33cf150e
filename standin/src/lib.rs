//! A business-server stand-in for the worker's HTTP sink: a fast HTTP/1.1 server that answers each
//! event POST after a service time, with a limit on how many it serves at once, answers an injected
//! error status for a while on request, and records the CloudEvent ids it took.

pub mod config;
pub mod delay;
pub mod fault;
pub mod ids;
pub mod server;

pub use config::Config;
pub use server::{Standin, Stats};
