//! Bounded, deterministic fuzzing of `frame::parse` (a cargo-fuzz harness needs a nightly
//! toolchain; this runs on stable in every `cargo test`).
//!
//! 1 000 000 inputs by default, at most 60 s: a quarter random bytes, the rest one to four stacked
//! mutations of valid frames (half of them with the ICMPv6 checksum repaired, so mutations reach
//! the checks behind it). Every input must parse without panicking, and every accepted request
//! must get a well-formed answer that is not itself a request (see `common::mutate::check`).
//! `FERROLB_FUZZ_INPUTS`, `FERROLB_FUZZ_SECONDS` and `FERROLB_FUZZ_SEED` change the run; the
//! `fuzz-parse` example runs the same engine for a given time.

mod common;

use std::time::{Duration, Instant};

use common::mutate::{Rng, Tally, check, corpus, next_input};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every `ParseError` variant.
const EVERY_REJECTION: [&str; 17] = [
    "Truncated",
    "ArpLengths",
    "ArpMulticastSender",
    "ArpBadSenderIp",
    "Ipv6Version",
    "NsMulticastSourceMac",
    "NsHopLimit",
    "NsCode",
    "NsTooShort",
    "NsChecksum",
    "NsMulticastTarget",
    "NsMulticastSource",
    "NsZeroLengthOption",
    "NsOptionOverrun",
    "NsMulticastSourceLl",
    "NsDadDestination",
    "NsDadWithSourceLl",
];

#[test]
fn fuzz_parse() {
    let inputs = env_u64("FERROLB_FUZZ_INPUTS", 1_000_000);
    let limit = Duration::from_secs(env_u64("FERROLB_FUZZ_SECONDS", 60));
    let seed = env_u64("FERROLB_FUZZ_SEED", 0x0fe2_201b);
    let corpus = corpus();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let start = Instant::now();
    let mut run = 0u64;
    while run < inputs && start.elapsed() < limit {
        let input = next_input(&mut rng, &corpus);
        let result = std::panic::catch_unwind(|| check(&input));
        match result {
            Ok(outcome) => tally.add(outcome),
            Err(_) => panic!("input #{run} (seed {seed:#x}) failed: {:02x?}", input),
        }
        run += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz_parse: {run} inputs in {secs:.2} s ({:.0} inputs/s), seed {seed:#x}",
        run as f64 / secs.max(1e-9)
    );
    println!("fuzz_parse outcomes: {}", tally.summary());
    // The run must be long enough and must have reached every part of the parser.
    assert!(
        run >= inputs.min(10_000),
        "only {run} inputs within {limit:?}"
    );
    for must in [
        "Ok(Arp)",
        "Ok(Ns)",
        "Ok(None)",
        "Err(Truncated)",
        "Err(NsChecksum)",
    ] {
        assert!(
            tally.count(must) > 0,
            "never reached {must}: {}",
            tally.summary()
        );
    }
    if run >= 500_000 {
        // Every rule of the parser rejected something (the seed is fixed, so this is stable).
        for rule in EVERY_REJECTION {
            let key = format!("Err({rule})");
            assert!(
                tally.count(&key) > 0,
                "never reached {key}: {}",
                tally.summary()
            );
        }
    }
}
