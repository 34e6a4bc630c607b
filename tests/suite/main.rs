//! The integration tests, one binary (each file of `tests/` would be its own binary, linked
//! against the whole crate: one binary links once). Every module but `common` (the harness)
//! is a group of tests; their names start with the module's (`daemon::…`), which is how
//! scripts/test.sh picks the daemon's tests for the PostgreSQL pass.

mod common;

mod after_promotion;
mod analysis;
mod approval;
mod churn;
mod ci_output;
mod cli_docs;
mod commands;
mod compat_mlflow2;
mod config_errors;
mod config_files;
mod daemon;
mod databricks;
mod dataset;
mod deploy;
mod docs;
mod evaluate;
mod faults;
mod fuzz_smoke;
mod hardening;
mod holdouts;
mod host;
mod objects;
mod operations;
mod postgres_cluster;
mod races;
mod reload;
mod replicas;
mod served;
mod status_page;
mod store_contract;
