//! stagegate: a daemon that guards the MLflow Model Registry. See ARCHITECTURE.md.

pub mod actions;
pub mod analysis;
pub mod backoff;
pub mod config;
pub mod daemon;
pub mod decision;
pub mod engine;
pub mod evaluation;
pub mod gates;
pub mod inputs;
pub mod location;
pub mod mlflow;
pub mod model_files;
pub mod model_state;
pub mod objects;
pub mod process;
pub mod report;
pub mod secret;
pub mod serving;
pub mod store;
pub mod tags;
pub mod verdict;
pub mod webhook;
