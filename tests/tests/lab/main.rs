//! Every scenario test of the lab, in one test binary (as raft-rs's `harness/tests/tests.rs`):
//! one link step instead of one per file, and one process whose tests share nothing but the
//! machine. Each module is a story about one part; `cargo test -p ferrolb-lab --test lab MODULE::`
//! runs one of them.
//!
//! Labs made by tests running side by side never meet: every namespace carries the run's prefix
//! (`ferrolb-<pid>-<n>-…`), and the sweep of leftovers removes only labs whose process is gone.

mod api_server;
mod bad_input;
mod cleanup;
mod cli;
mod cluster;
mod control_plane;
mod controller;
mod controller_ha;
mod faults;
mod key_rotation;
mod pool_schema;
mod segment;
mod speaker;
mod speaker_faults;
