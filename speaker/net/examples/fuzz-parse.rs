//! Runs the parser fuzzer of `tests/fuzz_parse.rs` for a given time and prints how many inputs
//! it ran: `cargo run --release -p ferrolb-net --example fuzz-parse -- --seconds 30 [--seed N]`.
//! Exits non-zero (with the input) on the first panic or broken invariant.

#[path = "../tests/common/mutate.rs"]
mod mutate;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mutate::{Rng, Tally, check, corpus, next_input};

fn parse_args() -> Result<(u64, u64), String> {
    let mut seconds = 10;
    let mut seed = 0x0fe2_201b;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().ok_or(format!("{a} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{a}: {value:?} is not a number"))?;
        match a.as_str() {
            "--seconds" => seconds = n,
            "--seed" => seed = n,
            _ => return Err(format!("unknown argument {a}; use --seconds N [--seed N]")),
        }
    }
    Ok((seconds, seed))
}

fn main() -> ExitCode {
    let (seconds, seed) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fuzz-parse: {e}");
            return ExitCode::from(2);
        }
    };
    let limit = Duration::from_secs(seconds);
    let corpus = corpus();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let start = Instant::now();
    let mut run = 0u64;
    // Check the clock every 4096 inputs only; it costs more than a parse.
    while !run.is_multiple_of(4096) || start.elapsed() < limit {
        let input = next_input(&mut rng, &corpus);
        match std::panic::catch_unwind(|| check(&input)) {
            Ok(outcome) => tally.add(outcome),
            Err(_) => {
                eprintln!("fuzz-parse: input #{run} (seed {seed}) failed: {input:02x?}");
                return ExitCode::FAILURE;
            }
        }
        run += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz-parse: {run} inputs in {secs:.2} s ({:.0} inputs/s), seed {seed}",
        run as f64 / secs.max(1e-9)
    );
    println!("outcomes: {}", tally.summary());
    ExitCode::SUCCESS
}
