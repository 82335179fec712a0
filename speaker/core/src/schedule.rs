//! When to (re)announce each owned address.
//!
//! On gaining an address the owner announces at once, then repeats in a short burst: a frame lost
//! on a busy segment, or a switch still learning, must not leave clients pointing at the old owner
//! (RFC 5227 §2.3 sends ANNOUNCE_NUM = 2 announcements ANNOUNCE_INTERVAL = 2 s apart; failover wants
//! them sooner, so the default burst is 0, 100, 300 and 700 ms after the gain). Then it refreshes
//! every `refresh` so that a client that missed the burst, or whose neighbour entry went stale,
//! converges (kube-vip refreshes every 3 s; RFC 4861 §7.2.6 allows a few unsolicited NAs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Timing of announcements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Offsets from the gain at which to announce; the first is normally zero.
    pub burst: Vec<Duration>,
    /// Period of the refresh after the burst; zero disables it.
    pub refresh: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            burst: [0, 100, 300, 700].map(Duration::from_millis).to_vec(),
            refresh: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    gained: Instant,
    /// Index of the next burst offset; `burst.len()` once in refresh.
    step: usize,
    next: Instant,
}

/// The announcement schedule of the addresses this speaker owns: a queue ordered by due time, so
/// a wake-up costs O(log n) per address due, not a scan of every owned address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    timing: Timing,
    entries: BTreeMap<IpAddr, Entry>,
    queue: BTreeSet<(Instant, IpAddr)>,
    /// Refresh deadlines are rounded up to a multiple of [`SLOT`] after this instant, so that
    /// thousands of addresses refresh in a few batches instead of one wake-up each.
    epoch: Option<Instant>,
}

/// Granularity of refresh deadlines: one batch a second at most. Each batch is a wake-up of the
/// speaker's loop, and on the lab's VM a wake-up costs about as much as sending a few dozen
/// frames (BENCHMARKS.md, idle speaker); a refresh a second late changes nothing.
pub const SLOT: Duration = Duration::from_secs(1);

impl Schedule {
    pub fn new(timing: Timing) -> Schedule {
        Schedule {
            timing,
            entries: BTreeMap::new(),
            queue: BTreeSet::new(),
            epoch: None,
        }
    }

    /// The address was gained at `now`: start its burst (no-op when already owned).
    pub fn gain(&mut self, ip: IpAddr, now: Instant) {
        if self.entries.contains_key(&ip) {
            return;
        }
        let first = self.timing.burst.first().copied().unwrap_or_default();
        let e = Entry {
            gained: now,
            step: 0,
            next: now + first,
        };
        self.queue.insert((e.next, ip));
        self.entries.insert(ip, e);
    }

    /// Restart the burst of an address already owned (its interfaces changed, say).
    pub fn restart(&mut self, ip: IpAddr, now: Instant) {
        self.lose(ip);
        self.gain(ip, now);
    }

    /// The address was lost: no more announcements.
    pub fn lose(&mut self, ip: IpAddr) {
        if let Some(e) = self.entries.remove(&ip) {
            self.queue.remove(&(e.next, ip));
        }
    }

    fn slot(&mut self, t: Instant) -> Instant {
        let epoch = *self.epoch.get_or_insert(t);
        let since = t.saturating_duration_since(epoch).as_nanos();
        let slot = SLOT.as_nanos();
        let rounded = since.div_ceil(slot) * slot;
        epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
    }

    /// Addresses to announce now; each advances to its next slot.
    pub fn due(&mut self, now: Instant) -> Vec<IpAddr> {
        let mut out = Vec::new();
        while let Some(&(at, ip)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.pop_first();
            out.push(ip);
        }
        for ip in &out {
            let Some(e) = self.entries.get(ip).cloned() else {
                continue;
            };
            let step = e.step + 1;
            let next = match self.timing.burst.get(step) {
                Some(offset) => (e.gained + *offset).max(now),
                None if self.timing.refresh.is_zero() => now + NEVER,
                None => self.slot(now + self.timing.refresh),
            };
            self.queue.insert((next, *ip));
            self.entries.insert(*ip, Entry { step, next, ..e });
        }
        out
    }

    /// When `due` next has something to return.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first().map(|(t, _)| *t)
    }
}

/// "Never" for a schedule without refresh: a century.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_refresh() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.65".parse().unwrap();
        let mut s = Schedule::new(Timing::default());
        s.gain(ip, t0);
        let mut sent = Vec::new();
        // Step a simulated clock 10 ms at a time for 11 s.
        for i in 0..=1100 {
            let now = t0 + ms(i * 10);
            if !s.due(now).is_empty() {
                sent.push((now - t0).as_millis());
            }
        }
        // Refreshes land on 1 s slots counted from the first refresh deadline.
        assert_eq!(sent, vec![0, 100, 300, 700, 5700, 10700]);
        assert_eq!(s.next_deadline(), Some(t0 + ms(15700)));
        s.lose(ip);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn gain_twice_keeps_the_schedule_and_restart_resets_it() {
        let t0 = Instant::now();
        let ip: IpAddr = "2001:db8::1:5".parse().unwrap();
        let mut s = Schedule::new(Timing::default());
        s.gain(ip, t0);
        assert_eq!(s.due(t0), vec![ip]);
        s.gain(ip, t0 + ms(50));
        assert!(s.due(t0 + ms(50)).is_empty());
        s.restart(ip, t0 + ms(60));
        assert_eq!(s.due(t0 + ms(60)), vec![ip]);
    }

    #[test]
    fn many_addresses_refresh_in_few_batches() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing {
            burst: vec![ms(0)],
            refresh: Duration::from_secs(30),
        });
        for i in 0..1000u32 {
            // Gained spread over 10 s.
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(i),
            ));
            let at = t0 + ms(u64::from(i) * 10);
            s.gain(ip, at);
            assert_eq!(s.due(at), vec![ip]);
        }
        let mut wakeups = 0;
        let mut sent = 0;
        while let Some(t) = s.next_deadline() {
            if t > t0 + Duration::from_secs(45) {
                break;
            }
            wakeups += 1;
            sent += s.due(t).len();
        }
        assert_eq!(
            sent, 1000,
            "each address refreshed once between 30 s and 40 s"
        );
        assert!(wakeups <= 11, "{wakeups} wake-ups for 1000 refreshes");
    }

    #[test]
    fn no_refresh_when_disabled() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.66".parse().unwrap();
        let mut s = Schedule::new(Timing {
            burst: vec![ms(0)],
            refresh: Duration::ZERO,
        });
        s.gain(ip, t0);
        assert_eq!(s.due(t0).len(), 1);
        assert!(s.due(t0 + Duration::from_secs(3600)).is_empty());
    }
}
