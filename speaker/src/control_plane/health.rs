//! The local API server's health: an HTTPS GET of its `/readyz` (any 2xx is healthy) with a
//! timeout, repeated at an interval. A refused connection, a TLS failure, a non-2xx status or a
//! timeout (a hung API server) is unhealthy.
//!
//! Built from hyper's HTTP/1 client connection over tokio-rustls (both already in the speaker's
//! dependency tree through kube): one short connection per check, so a hung server costs one
//! timed-out check and nothing lingers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::Empty;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Certificates in this PEM file (the cluster CA, `/etc/kubernetes/pki/ca.crt`).
    CaFile(std::path::PathBuf),
    /// No check at all (`--health-insecure`): the check then only proves that something answers
    /// 2xx on the port.
    Insecure,
}

/// One health checker of one URL.
#[derive(Clone)]
pub struct Checker {
    uri: Uri,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("uri", &self.uri).finish()
    }
}

impl Checker {
    pub fn new(url: &str, trust: &Trust, timeout: Duration) -> anyhow::Result<Checker> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--health-url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--health-url {url:?} must be an https:// URL (the API server's secure port)");
        }
        let host = uri
            .host()
            .with_context(|| format!("--health-url {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .with_context(|| format!("--health-url host {host:?} is not a valid name"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS configuration")?;
        let config = match trust {
            Trust::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots.add(cert).with_context(|| {
                        format!(
                            "--health-ca {}: a certificate is not usable",
                            path.display()
                        )
                    })?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
        };
        Ok(Checker {
            uri,
            host,
            port,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// One check: `Ok(())` when healthy, otherwise why not.
    pub async fn check(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(self.timeout, self.get()).await {
            Ok(r) => r,
            Err(_) => bail!("no answer within {} ms", self.timeout.as_millis()),
        }
    }

    async fn get(&self) -> anyhow::Result<()> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let driver = tokio::spawn(conn);
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, self.host.as_str())
            .body(Empty::<&'static [u8]>::new())?;
        let resp = sender.send_request(req).await;
        driver.abort();
        let status = resp?.status();
        if !status.is_success() {
            bail!("status {status}");
        }
        Ok(())
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading --health-ca {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--health-ca {} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("--health-ca {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Accepts any certificate (`--health-insecure`); signatures are still checked with the
/// provider's algorithms so that the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
