//! The swarm simulator (`tfttp sim`, docs/SIMULATOR.md): real sans-IO nodes, one per host,
//! over a fluid model of the network, in virtual time. The same scenario and seed give the
//! same output, byte for byte.

mod agenda;
mod engine;
mod network;
mod report;
pub mod scenario;

pub use engine::{ClientOutcome, Outcome, Sample, Sim};
pub use report::Report;
pub use scenario::Scenario;
