//! HTTPS in the binary: rustls (AWS-LC), TLS 1.3 and 1.2 with rustls's
//! default suites only (ECDHE with AES-GCM or ChaCha20-Poly1305; rustls has no
//! renegotiation, no compression, no CBC, no RSA key exchange), and a
//! certificate that is read again when its files change, so a certbot renewal
//! needs no restart.
//!
//! Handshakes run in tasks of their own: a slow or silent client holds up no
//! one else's connection. The listener hands finished TLS streams to
//! `axum::serve`, which sees them like TCP connections (peer address included).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a TLS set-up could not do, said so that an admin knows which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read the TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the TLS private key {key} does not belong to the certificate {cert}")]
    Mismatch { cert: String, key: String },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's TLS configuration, with a certificate that follows its files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let resolver = ReloadingCert::new(files.clone(), provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Which version of the files a certificate was read from: a renewal writes
/// new files (new inode, size or modification time), and the next handshake
/// reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(u64, u64, Option<SystemTime>)>);

impl Stamp {
    fn of(files: &TlsFiles) -> Stamp {
        Stamp(
            [&files.cert, &files.key]
                .into_iter()
                .map(|p| match std::fs::metadata(p) {
                    Ok(m) => (inode(&m), m.len(), m.modified().ok()),
                    Err(_) => (0, 0, None),
                })
                .collect(),
        )
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The certificate in use, read again when its files change. A renewal that
/// cannot be read (half written, key and certificate not matching) leaves the
/// certificate in use as it was, and says so in the log.
#[derive(Debug)]
struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    fn new(files: TlsFiles, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<ReloadingCert, TlsError> {
        let stamp = Stamp::of(&files);
        let key = load(&files, &provider)?;
        Ok(ReloadingCert { files, provider, current: Mutex::new((stamp, key)) })
    }

    fn certified_key(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = Stamp::of(&self.files);
        if stamp != current.0 {
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    *current = (stamp, key);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate files changed but cannot be used; the previous certificate stays");
                    // Not again for every handshake: only when the files change once more.
                    current.0 = stamp;
                }
            }
        }
        current.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn load(files: &TlsFiles, provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_error = |reason: String| TlsError::Cert { path: shown(&files.cert), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key { path: shown(&files.key), reason: e.to_string() })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch { cert: shown(&files.cert), key: shown(&files.key) },
        other => TlsError::Key { path: shown(&files.key), reason: other.to_string() },
    })?;
    Ok(Arc::new(certified))
}

/// A listener of finished TLS connections, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept TCP connections on `tcp` and hand each, once its handshake is
    /// done, to whoever accepts on the returned listener.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    // The server stopped: so does accepting.
                    _ = tx.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, do not spin.
                            tracing::warn!(error = %e, "cannot accept a connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        // A failed handshake (old protocol, no shared suite, a port scan) is the client's.
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task is gone only when the listener is: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
