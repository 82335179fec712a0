//! Allocation timings: `cargo run --release -p ferrolb-allocator --example bench`.
//!
//! Fills an IPv4 /24 and an IPv6 /112 (65,536 addresses) completely, then allocates and releases
//! 100,000 addresses of an IPv6 /64, and finally reallocates into a /64 fragmented by releasing
//! every other address. Requests are built before the clock starts, so the figures are the
//! allocator's own cost. Only documentation prefixes (RFC 5737, RFC 3849) are used.

use std::error::Error;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_allocator::{
    Allocator, Family, FamilyPolicy, IpRange, PoolChoice, PoolName, PoolSpec, Request, ServiceKey,
};

fn requests(prefix: &str, count: usize, family: Family) -> Vec<Request> {
    (0..count)
        .map(|i| Request {
            service: ServiceKey::new("bench", &format!("{prefix}-{i}")),
            policy: FamilyPolicy::SingleStack(family),
            requested: vec![],
            pool: PoolChoice::Auto { eligible: None },
            sharing: None,
        })
        .collect()
}

fn pool(name: &str, base: &str, prefix_len: u8) -> Result<PoolSpec, Box<dyn Error>> {
    let range = IpRange::cidr(base.parse::<IpAddr>()?, prefix_len)?;
    Ok(PoolSpec::new(PoolName::new(name), vec![range])?)
}

fn per_op(elapsed: Duration, ops: usize) -> u128 {
    elapsed.as_nanos() / ops.max(1) as u128
}

/// Assigns every request, returning the time per allocation overall, for the first 1,000 and for
/// the last 1,000.
fn fill(a: &mut Allocator, reqs: &[Request]) -> Result<(u128, u128, u128), Box<dyn Error>> {
    let mut first = Duration::ZERO;
    let mut last = Duration::ZERO;
    let start = Instant::now();
    for (i, req) in reqs.iter().enumerate() {
        let t = Instant::now();
        a.assign(req)?;
        let took = t.elapsed();
        if i < 1000 {
            first += took;
        }
        if i >= reqs.len().saturating_sub(1000) {
            last += took;
        }
    }
    let total = start.elapsed();
    let window = reqs.len().min(1000);
    Ok((
        per_op(total, reqs.len()),
        per_op(first, window),
        per_op(last, window),
    ))
}

fn main() -> Result<(), Box<dyn Error>> {
    // IPv4 /24, filled completely.
    let mut a = Allocator::new();
    a.set_pools(vec![pool("v4", "192.0.2.0", 24)?]);
    let reqs = requests("v4", 256, Family::V4);
    let (ns, _, _) = fill(&mut a, &reqs)?;
    let full = requests("v4-extra", 1, Family::V4);
    let refused = full
        .first()
        .and_then(|req| a.assign(req).err())
        .map_or_else(|| "not refused!".to_owned(), |e| e.to_string());
    println!("192.0.2.0/24: 256 allocations, {ns} ns/allocation; the 257th: {refused}");

    // IPv6 /112: 65,536 addresses, filled completely.
    let mut a = Allocator::new();
    a.set_pools(vec![pool("v6-112", "2001:db8::", 112)?]);
    let reqs = requests("v6-112", 65_536, Family::V6);
    let (ns, first, last) = fill(&mut a, &reqs)?;
    let stats = a
        .pool_stats(&PoolName::new("v6-112"))
        .ok_or("pool missing")?;
    println!(
        "2001:db8::/112: 65536 allocations, {ns} ns/allocation (first 1000: {first} ns, last 1000: {last} ns); assigned {}, available {}",
        stats.v6.assigned, stats.v6.available
    );

    // IPv6 /64: 100,000 allocations, then 100,000 releases.
    let mut a = Allocator::new();
    a.set_pools(vec![pool("v6-64", "2001:db8:1::", 64)?]);
    let reqs = requests("v6-64", 100_000, Family::V6);
    let (ns, first, last) = fill(&mut a, &reqs)?;
    let stats = a
        .pool_stats(&PoolName::new("v6-64"))
        .ok_or("pool missing")?;
    println!(
        "2001:db8:1::/64: 100000 allocations, {ns} ns/allocation (first 1000: {first} ns, last 1000: {last} ns); assigned {}, available {}",
        stats.v6.assigned, stats.v6.available
    );
    let start = Instant::now();
    for req in &reqs {
        a.release(&req.service);
    }
    let released = per_op(start.elapsed(), reqs.len());
    let stats = a
        .pool_stats(&PoolName::new("v6-64"))
        .ok_or("pool missing")?;
    println!(
        "2001:db8:1::/64: 100000 releases, {released} ns/release; assigned {}, available {}",
        stats.v6.assigned, stats.v6.available
    );

    // Fragmented /64: 100,000 allocated, every other one released (50,000 free runs), then
    // 50,000 allocations fill the holes.
    fill(&mut a, &reqs)?;
    let start = Instant::now();
    for req in reqs.iter().step_by(2) {
        a.release(&req.service);
    }
    let released = per_op(start.elapsed(), reqs.len() / 2);
    let refill = requests("refill", 50_000, Family::V6);
    let (ns, first, last) = fill(&mut a, &refill)?;
    println!(
        "2001:db8:1::/64 fragmented: 50000 releases {released} ns/release, then 50000 allocations into the holes {ns} ns/allocation (first 1000: {first} ns, last 1000: {last} ns)"
    );
    Ok(())
}
