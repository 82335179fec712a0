//! Errors of the dataplane, each carrying the interface or address it is about and a sentence
//! telling the operator what to do about the kernel's errno.

use std::io;
use std::net::{IpAddr, Ipv6Addr};

/// What went wrong on an interface.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no network interface named {name:?} (this namespace has: {available})")]
    InterfaceNotFound { name: String, available: String },

    #[error(
        "interface {name} has no Ethernet MAC address (a layer-3 device such as tun, wireguard or \
         loopback?); ARP and NDP announcements need an Ethernet interface"
    )]
    NoMac { name: String },

    #[error("{hint} ({source})")]
    Socket {
        iface: String,
        hint: String,
        #[source]
        source: io::Error,
    },

    #[error("sending {what} on {iface} failed: {hint} ({source})")]
    Send {
        iface: String,
        what: &'static str,
        hint: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "refusing to announce {ip} on {iface}: this node does not answer for it; add it to the \
         owned set first, so that the traffic the announcement attracts gets answered"
    )]
    NotOwned { ip: IpAddr, iface: String },

    #[error("joining multicast group {group} on interface index {index} failed: {hint} ({source})")]
    Multicast {
        group: Ipv6Addr,
        index: u32,
        hint: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "the responder thread of {iface} did not stop within {waited_ms} ms; it is left to finish \
         on its own"
    )]
    StopTimeout { iface: String, waited_ms: u128 },

    #[error("the responder thread of {iface} panicked; its frames went unanswered since")]
    ThreadPanicked { iface: String },
}

/// Turns the errno of opening or binding a packet socket into what the operator should do; the
/// sentence names the interface, so it is the whole error message.
pub(crate) fn socket_hint(iface: &str, err: &io::Error) -> String {
    let fix = match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            return format!(
                "opening a raw socket on {iface} needs CAP_NET_RAW; run the speaker as root or \
                 grant it that capability (securityContext.capabilities.add: [NET_RAW])"
            );
        }
        Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "the interface does not exist (any more) in this network namespace".into()
        }
        Some(libc::ENETDOWN) => {
            format!("the interface is down; bring it up (`ip link set {iface} up`)")
        }
        Some(libc::EAFNOSUPPORT) => "this kernel has no AF_PACKET support (CONFIG_PACKET)".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            "out of file descriptors; raise the speaker's open-files limit".into()
        }
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => {
            "the kernel is out of memory for socket buffers".into()
        }
        _ => "the kernel refused it".into(),
    };
    format!("opening a raw socket on {iface} failed: {fix}")
}

/// Turns the errno of sending a frame into what the operator should do.
pub(crate) fn send_hint(iface: &str, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENETDOWN) => {
            format!("interface {iface} is down; the frame is lost until it comes back up")
        }
        Some(libc::ENXIO) | Some(libc::ENODEV) => {
            format!("interface {iface} disappeared; restart the speaker once it is back")
        }
        Some(libc::ENOBUFS) | Some(libc::EAGAIN) => format!(
            "the transmit queue of {iface} is full; the frame will be resent with the next \
             announcement"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "sending on {iface} was refused; a firewall (nftables netdev/bridge egress) or an LSM \
             may be dropping the speaker's frames"
        ),
        Some(libc::EMSGSIZE) => format!("the frame is larger than the MTU of {iface}"),
        _ if err.kind() == io::ErrorKind::TimedOut => format!(
            "the socket of {iface} stayed unwritable for the write timeout; the link may be \
             congested or paused"
        ),
        _ => "the kernel refused it".into(),
    }
}

/// Turns the errno of joining a multicast group into what the operator should do.
pub(crate) fn multicast_hint(index: u32, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => {
            "IPv6 is disabled in this kernel or network namespace (ipv6.disable=1)".into()
        }
        Some(libc::ENODEV) => {
            format!("no interface with index {index} in this network namespace (did it vanish?)")
        }
        Some(libc::EINVAL) => format!(
            "interface {index} has no IPv6 (net.ipv6.conf.<iface>.disable_ipv6=1?); enable IPv6 \
             on it to answer Neighbor Solicitations"
        ),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
            "the kernel refused another multicast membership; raise net.core.optmem_max".into()
        }
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            "out of file descriptors (one socket per joined group); raise the open-files limit"
                .into()
        }
        _ => "the kernel refused it".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_becomes_a_sentence() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        assert!(socket_hint("eth0", &e).contains("opening a raw socket on eth0 needs CAP_NET_RAW"));
        let e = io::Error::from_raw_os_error(libc::ENETDOWN);
        assert!(send_hint("eth0", &e).contains("eth0 is down"));
        let e = io::Error::from_raw_os_error(libc::ENODEV);
        assert!(multicast_hint(7, &e).contains("no interface with index 7"));
        let err = NetError::Socket {
            iface: "eth0".into(),
            hint: socket_hint("eth0", &io::Error::from_raw_os_error(libc::EPERM)),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("opening a raw socket on eth0 needs CAP_NET_RAW"),
            "{text}"
        );
    }
}
