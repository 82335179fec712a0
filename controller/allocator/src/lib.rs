//! The address allocator: pools and requests in, allocations or typed errors out. Pure and
//! synchronous: it knows nothing of Kubernetes, async runtimes or the clock, and Cargo.toml keeps it
//! that way. Its implementation arrives with the controller issue.
