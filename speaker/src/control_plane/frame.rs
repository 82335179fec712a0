//! Frames between control-plane speakers: length-limited and authenticated with HMAC-SHA256
//! (pre-shared key) **before** anything in them is decoded.
//!
//! raft-rs decodes its messages with protobuf 2.x, whose parser has a known unbounded-recursion
//! problem on hostile input; so a frame's payload reaches the protobuf decoder only after its tag
//! verified (in constant time, `ring::hmac::verify`), its recipient is this node and its counter
//! is newer than every frame accepted from that sender (replay of a recorded frame is refused).
//!
//! ```text
//! u32 BE  length of everything below (at most MAX_FRAME)
//! u8      version (1)
//! u8      kind: 1 Raft message, 2 health report
//! u64 BE  sender id
//! u64 BE  recipient id
//! u64 BE  counter: strictly increasing per sender; starts at the sender's start time in
//!         microseconds since the Unix epoch, so it also increases across restarts
//! ...     payload (protobuf-encoded raft Message, or one health byte)
//! 32 B    HMAC-SHA256 over the length, the header and the payload
//! ```

use ring::hmac;

/// Longest frame accepted (after the length field). A Raft message of this group carries at most
/// a few empty entries; 1 MiB is generous and bounds what a peer can make a node buffer.
pub const MAX_FRAME: usize = 1 << 20;
const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 8 + 8;
const TAG: usize = 32;
/// Length of the key file's key, in bytes.
pub const KEY_LEN: usize = 32;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Raft,
    Health,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Raft => 1,
            Kind::Health => 2,
        }
    }
}

/// An authenticated frame; its payload is not decoded yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub from: u64,
    pub to: u64,
    pub counter: u64,
    pub payload: Vec<u8>,
}

/// Why a frame was refused. Every one closes the connection it came on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes is larger than the limit of {MAX_FRAME}")]
    TooLong { len: usize },
    #[error("frame of {len} bytes is shorter than its header and tag")]
    TooShort { len: usize },
    #[error(
        "frame authentication failed: the peer uses another key (every control-plane speaker \
         needs the same --key-file) or the frame was altered"
    )]
    BadTag,
    #[error("frame version {0} is not understood (a newer speaker?)")]
    Version(u8),
    #[error("frame kind {0} is not understood")]
    UnknownKind(u8),
    #[error("frame for node {to} reached node {me} (peer list mismatch?)")]
    WrongRecipient { to: u64, me: u64 },
}

/// Seals and opens frames with the group's key.
#[derive(Debug)]
pub struct Codec {
    key: hmac::Key,
    me: u64,
}

impl Codec {
    pub fn new(key: &[u8; KEY_LEN], me: u64) -> Codec {
        Codec {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            me,
        }
    }

    /// Builds the frame for `to`. `None` when the payload is larger than [`MAX_FRAME`] allows.
    pub fn seal(&self, kind: Kind, to: u64, counter: u64, payload: &[u8]) -> Option<Vec<u8>> {
        let len = HEADER + payload.len() + TAG;
        if len > MAX_FRAME {
            return None;
        }
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
        out.push(VERSION);
        out.push(kind.byte());
        out.extend_from_slice(&self.me.to_be_bytes());
        out.extend_from_slice(&to.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(payload);
        let tag = hmac::sign(&self.key, &out);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// Takes one frame off the front of `buf`: `Ok(None)` when more bytes are needed, otherwise
    /// the frame and the bytes it used. The tag is checked before any field is interpreted beyond
    /// the length.
    pub fn open(&self, buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(len_bytes) = buf.get(..4) else {
            return Ok(None);
        };
        let mut l = [0u8; 4];
        l.copy_from_slice(len_bytes);
        let len = u32::from_be_bytes(l) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLong { len });
        }
        if len < HEADER + TAG {
            return Err(FrameError::TooShort { len });
        }
        let Some(whole) = buf.get(..4 + len) else {
            return Ok(None);
        };
        let (signed, tag) = whole.split_at(4 + len - TAG);
        hmac::verify(&self.key, signed, tag).map_err(|_| FrameError::BadTag)?;
        let h = &signed[4..];
        let version = h[0];
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = match h[1] {
            1 => Kind::Raft,
            2 => Kind::Health,
            k => return Err(FrameError::UnknownKind(k)),
        };
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[at..at + 8]);
            u64::from_be_bytes(w)
        };
        let (from, to, counter) = (word(2), word(10), word(18));
        if to != self.me {
            return Err(FrameError::WrongRecipient { to, me: self.me });
        }
        let frame = Frame {
            kind,
            from,
            to,
            counter,
            payload: h[HEADER..].to_vec(),
        };
        Ok(Some((frame, 4 + len)))
    }
}

/// Parses a key file's text: 64 hexadecimal digits.
pub fn parse_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    let text = text.trim();
    if text.len() != 2 * KEY_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the key must be {} hexadecimal digits (32 random bytes, e.g. from `openssl rand -hex 32`)",
            2 * KEY_LEN
        ));
    }
    let mut out = [0u8; KEY_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codecs() -> (Codec, Codec) {
        (Codec::new(&[7; KEY_LEN], 1), Codec::new(&[7; KEY_LEN], 2))
    }

    #[test]
    fn a_sealed_frame_opens_on_its_recipient() {
        let (a, b) = codecs();
        let f = a.seal(Kind::Raft, 2, 99, b"hello").unwrap();
        let mut stream = f.clone();
        stream.extend_from_slice(&f[..10]); // the start of the next frame
        let (frame, used) = b.open(&stream).unwrap().unwrap();
        assert_eq!(used, f.len());
        assert_eq!(
            frame,
            Frame {
                kind: Kind::Raft,
                from: 1,
                to: 2,
                counter: 99,
                payload: b"hello".to_vec()
            }
        );
        assert_eq!(b.open(&stream[used..]).unwrap(), None);
        // Node 1 is not the recipient.
        assert_eq!(
            a.open(&f).unwrap_err(),
            FrameError::WrongRecipient { to: 2, me: 1 }
        );
    }

    #[test]
    fn a_wrong_key_is_refused_before_anything_is_decoded() {
        let (a, _) = codecs();
        let other = Codec::new(&[8; KEY_LEN], 2);
        // The payload is a protobuf bomb (nested groups); it must never reach the decoder, and
        // `open` returns no payload at all on a bad tag.
        let bomb = vec![0x0b; 4096];
        let f = a.seal(Kind::Raft, 2, 1, &bomb).unwrap();
        assert_eq!(other.open(&f).unwrap_err(), FrameError::BadTag);
        // One flipped bit anywhere, header included, is refused the same way.
        for i in [4, 5, 12, 30, f.len() - 1] {
            let mut g = f.clone();
            g[i] ^= 1;
            assert_eq!(
                Codec::new(&[7; KEY_LEN], 2).open(&g).unwrap_err(),
                FrameError::BadTag
            );
        }
    }

    #[test]
    fn truncated_and_oversized_frames_are_dropped() {
        let (a, b) = codecs();
        let f = a.seal(Kind::Health, 2, 1, &[1]).unwrap();
        for cut in 0..f.len() {
            assert_eq!(b.open(&f[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut huge = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 64]);
        assert_eq!(
            b.open(&huge).unwrap_err(),
            FrameError::TooLong { len: MAX_FRAME + 1 }
        );
        assert_eq!(
            b.open(&[0, 0, 0, 3, 1, 2, 3]).unwrap_err(),
            FrameError::TooShort { len: 3 }
        );
        assert!(a.seal(Kind::Raft, 2, 1, &vec![0; MAX_FRAME]).is_none());
    }

    #[test]
    fn key_files_are_64_hex_digits() {
        assert_eq!(
            parse_key(&format!("{}\n", "0a".repeat(32))).unwrap(),
            [10; 32]
        );
        assert!(parse_key("abcd").unwrap_err().contains("64 hexadecimal"));
        assert!(parse_key(&"zz".repeat(32)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Random bytes never panic the decoder and never authenticate.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (_, b) = codecs();
            match b.open(&bytes) {
                Ok(None) | Err(_) => {}
                Ok(Some(f)) => prop_assert!(false, "forged frame accepted: {f:?}"),
            }
        }

        /// A valid frame with random bytes after its length field rewritten still never panics.
        #[test]
        fn mangled_frames_never_panic(len in 0u32..200, tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (_, b) = codecs();
            let mut buf = len.to_be_bytes().to_vec();
            buf.extend_from_slice(&tail);
            let _ = b.open(&buf);
        }
    }
}
