//! Harness for the component tests: start the project's binaries as real processes on loopback,
//! wait on conditions with deadlines, and talk to the emulator's admin API.

pub mod amqp_client;
pub mod emulator;
pub mod http_receiver;
pub mod https_server;
pub mod oidc;
pub mod process;
pub mod standin;
pub mod wait;
pub mod worker;

pub use emulator::Emulator;
pub use process::{Process, binary};
pub use wait::wait_until;
