//! The dataplane seam of the speaker: sending and receiving ARP and NDP frames on raw sockets, and
//! adding or removing addresses through netlink. The only crate where `unsafe` is allowed. Its
//! implementation arrives with the speaker issue.
