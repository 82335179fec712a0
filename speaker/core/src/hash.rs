//! The rendezvous (highest random weight) hash: every speaker must compute the same weight for a
//! (node, address) pair, whatever its version or platform, so the hash is spelled out here instead
//! of relying on `std`'s hasher, whose output may change between Rust releases.

use std::net::IpAddr;

/// 64-bit FNV-1a over the bytes, then the SplitMix64 finaliser to spread FNV's weak low bits
/// (Thaler & Ravishankar, "A name-based mapping scheme for rendezvous", 1996, need a hash whose
/// values are independent per node; FNV alone clusters on names that differ in one character).
pub fn weight(node: &str, key: IpAddr) -> u64 {
    weight_from(node_state(node), key)
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The hash state after the node's name and the separator: computed once per node, reused for
/// every address (the election hashes each node against each address).
pub fn node_state(node: &str) -> u64 {
    fnv(fnv(0xcbf2_9ce4_8422_2325, node.as_bytes()), &[0])
}

/// [`weight`] from a precomputed [`node_state`].
pub fn weight_from(state: u64, key: IpAddr) -> u64 {
    let h = match key {
        IpAddr::V4(a) => fnv(state, &a.octets()),
        IpAddr::V6(a) => fnv(state, &a.octets()),
    };
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The node with the highest weight for `key` (ties, which need a 64-bit collision, go to the
/// smaller name so the result is still the same everywhere).
pub fn owner<'a>(nodes: impl IntoIterator<Item = &'a str>, key: IpAddr) -> Option<&'a str> {
    owner_of_states(nodes.into_iter().map(|n| (n, node_state(n))), key)
}

/// [`owner`] over nodes with precomputed states.
pub fn owner_of_states<'a>(
    nodes: impl IntoIterator<Item = (&'a str, u64)>,
    key: IpAddr,
) -> Option<&'a str> {
    nodes
        .into_iter()
        .map(|(n, st)| (weight_from(st, key), std::cmp::Reverse(n)))
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_pinned() {
        // Changing the hash moves addresses during a rolling upgrade; these values pin it.
        let ip: IpAddr = "192.0.2.65".parse().unwrap();
        assert_eq!(weight("node-1", ip), weight("node-1", ip));
        assert_ne!(weight("node-1", ip), weight("node-2", ip));
        let pinned = [weight("node-1", ip), weight("node-2", ip)];
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u64; 2] = [13_021_443_695_403_395_115, 50_302_460_417_073_655];

    #[test]
    fn spreads_evenly() {
        let nodes: Vec<String> = (0..5).map(|i| format!("node-{i}")).collect();
        let mut count = [0usize; 5];
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200u32.wrapping_add(i)));
            let o = owner(nodes.iter().map(String::as_str), ip).unwrap();
            count[nodes.iter().position(|n| n == o).unwrap()] += 1;
        }
        for c in count {
            assert!((850..1150).contains(&c), "uneven: {count:?}");
        }
    }
}
