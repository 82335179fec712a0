//! The gossip encryption key: from a file, or from a Secret that the first speaker creates.

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

/// Reads a key file of 64 hexadecimal digits.
pub fn from_file(path: &Path) -> anyhow::Result<[u8; LEN]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --gossip-key-file {}", path.display()))?;
    parse_hex(text.trim()).with_context(|| format!("--gossip-key-file {}", path.display()))
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

fn from_secret(s: &Secret) -> anyhow::Result<[u8; LEN]> {
    let bytes = s
        .data
        .as_ref()
        .and_then(|d| d.get(FIELD))
        .with_context(|| format!("Secret {} has no data.{FIELD}", s.name_any()))?;
    <[u8; LEN]>::try_from(bytes.0.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "Secret {} data.{FIELD} is {} bytes; the gossip key must be exactly {LEN}",
            s.name_any(),
            bytes.0.len()
        )
    })
}

/// Reads the key from the Secret, creating it with a random key when it does not exist (if two
/// speakers race, the second one's create fails and it reads the first one's key).
pub async fn from_cluster(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<[u8; LEN]> {
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
}
