//! The gossip encryption keys: from a file, or from a Secret that the first speaker creates.
//!
//! A primary key (`data.key`), which encrypts, and an optional secondary key
//! (`data.secondaryKey`), which only decrypts: with both, the Secret can be rotated without a
//! partition. Put the new key in `secondaryKey` and restart the speakers; swap the two and restart;
//! drop `secondaryKey` and restart. At every step any two speakers share a key one encrypts with
//! and the other decrypts with (docs/security.md).

use std::path::Path;

use anyhow::Context;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::info;

/// Key length: AES-256.
pub const LEN: usize = 32;
const FIELD: &str = "key";
const SECONDARY: &str = "secondaryKey";

/// The keys a speaker gossips with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Encrypts what this speaker sends, and decrypts.
    pub primary: [u8; LEN],
    /// Only decrypts: the key being rotated in or out.
    pub secondary: Option<[u8; LEN]>,
}

/// Reads a key file: the primary key as 64 hexadecimal digits on the first line, optionally the
/// secondary key on the second.
pub fn from_file(path: &Path) -> anyhow::Result<Keys> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --gossip-key-file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("--gossip-key-file {}", path.display()))
}

fn parse_file(text: &str) -> anyhow::Result<Keys> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [primary] => Ok(Keys {
            primary: parse_hex(primary)?,
            secondary: None,
        }),
        [primary, secondary] => Ok(Keys {
            primary: parse_hex(primary).context("line 1 (the primary key)")?,
            secondary: Some(parse_hex(secondary).context("line 2 (the secondary key)")?),
        }),
        _ => anyhow::bail!(
            "expected the primary key on one line and optionally the secondary key on a second, \
             found {} non-empty lines",
            lines.len()
        ),
    }
}

fn parse_hex(text: &str) -> anyhow::Result<[u8; LEN]> {
    if text.len() != 2 * LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!(
            "the key must be {} hexadecimal digits (32 bytes, AES-256)",
            2 * LEN
        );
    }
    let mut out = [0u8; LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

fn random() -> anyhow::Result<[u8; LEN]> {
    use std::io::Read;
    let mut out = [0u8; LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .context("reading /dev/urandom for a new gossip key")?;
    Ok(out)
}

fn from_secret(s: &Secret) -> anyhow::Result<Keys> {
    let field = |name: &str| -> anyhow::Result<Option<[u8; LEN]>> {
        let Some(bytes) = s.data.as_ref().and_then(|d| d.get(name)) else {
            return Ok(None);
        };
        <[u8; LEN]>::try_from(bytes.0.as_slice())
            .map(Some)
            .map_err(|_| {
                anyhow::anyhow!(
                    "Secret {} data.{name} is {} bytes; a gossip key must be exactly {LEN}",
                    s.name_any(),
                    bytes.0.len()
                )
            })
    };
    let primary =
        field(FIELD)?.with_context(|| format!("Secret {} has no data.{FIELD}", s.name_any()))?;
    Ok(Keys {
        primary,
        secondary: field(SECONDARY)?,
    })
}

/// Reads the key from the Secret, creating it with a random key when it does not exist (if two
/// speakers race, the second one's create fails and it reads the first one's key).
pub async fn from_cluster(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Keys> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_opt(name).await? {
        return from_secret(&s);
    }
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some([(FIELD.to_string(), ByteString(random()?.to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(s) => {
            info!(secret = %format!("{namespace}/{name}"), "created the gossip key Secret");
            from_secret(&s)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => from_secret(&api.get(name).await?),
        Err(e) => Err(e).with_context(|| format!("creating Secret {namespace}/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys() {
        let k = parse_hex(&"0f".repeat(32)).unwrap();
        assert_eq!(k, [0x0f; 32]);
        assert!(
            parse_hex("abc")
                .unwrap_err()
                .to_string()
                .contains("64 hexadecimal")
        );
        assert!(parse_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_key_file_holds_the_primary_and_optionally_the_secondary() {
        let one = parse_file(&format!("{}\n", "0f".repeat(32))).unwrap();
        assert_eq!(
            one,
            Keys {
                primary: [0x0f; 32],
                secondary: None
            }
        );
        let two = parse_file(&format!("{}\n\n{}\n", "0f".repeat(32), "a0".repeat(32))).unwrap();
        assert_eq!(two.secondary, Some([0xa0; 32]));
        let e = format!(
            "{:#}",
            parse_file(&format!("{}\nnope", "0f".repeat(32))).unwrap_err()
        );
        assert!(e.contains("line 2 (the secondary key)"), "{e}");
        assert!(parse_file("").is_err());
    }

    #[test]
    fn a_secret_holds_the_primary_and_optionally_the_secondary() {
        let secret = |fields: &[(&str, Vec<u8>)]| Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("ferrolb-memberlist".into()),
                ..Default::default()
            },
            data: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.clone())))
                    .collect(),
            ),
            ..Default::default()
        };
        let k = from_secret(&secret(&[
            ("key", vec![1; 32]),
            ("secondaryKey", vec![2; 32]),
        ]))
        .unwrap();
        assert_eq!(
            k,
            Keys {
                primary: [1; 32],
                secondary: Some([2; 32])
            }
        );
        let e = from_secret(&secret(&[
            ("key", vec![1; 32]),
            ("secondaryKey", vec![2; 5]),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.secondaryKey is 5 bytes"), "{e}");
        let e = from_secret(&secret(&[("secondaryKey", vec![2; 32])]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no data.key"), "{e}");
    }
}
