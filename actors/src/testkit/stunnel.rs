//! TLS in front of a test broker: a throwaway certificate authority ([`TestCa`], made with
//! rcgen) and an stunnel process ([`Stunnel`], Debian's `stunnel4`) that terminates TLS on a
//! loopback port and forwards the plain bytes to the broker. tansu 0.6.0 has no working TLS
//! listener of its own; start it with
//! [`TansuBroker::start_advertising`](super::tansu::TansuBroker::start_advertising) naming the
//! stunnel port, so that every connection a client makes from the metadata goes through TLS.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority for one test: it signs broker and client certificates.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    ///
    /// # Panics
    /// If rcgen cannot make a key or certificate (not expected).
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        TestCa { certificate, key }
    }

    pub fn cert_pem(&self) -> String {
        self.certificate.pem()
    }

    /// Writes the CA certificate to `dir/ca.pem` (what a client's `ca_file` names).
    pub fn write_cert(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        fs::write(&path, self.cert_pem()).expect("write the CA certificate");
        path
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (mutual TLS) for `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("signed certificate");
        Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Issued {
    /// Writes `dir/{stem}.pem` and `dir/{stem}.key`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        fs::write(&cert, &self.cert_pem).expect("write the certificate");
        fs::write(&key, &self.key_pem).expect("write the key");
        (cert, key)
    }
}

/// The stunnel binary: `$KONSUMER_STUNNEL`, else `stunnel4` or `stunnel` on the PATH.
///
/// # Panics
/// If none is found: `scripts/test.sh` installs Debian's `stunnel4`.
pub fn find_stunnel() -> PathBuf {
    if let Ok(path) = std::env::var("KONSUMER_STUNNEL") {
        return PathBuf::from(path);
    }
    for name in ["stunnel4", "stunnel"] {
        if let Ok(output) = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
        {
            let found = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if output.status.success() && !found.is_empty() {
                return PathBuf::from(found);
            }
        }
    }
    panic!("stunnel not found: install Debian's stunnel4 (scripts/test.sh does) or set KONSUMER_STUNNEL")
}

/// An stunnel server process: TLS on `127.0.0.1:port()`, plain TCP to the target. Killed on
/// drop.
pub struct Stunnel {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Stunnel {
    /// Terminates TLS on `port` with `server`'s certificate and forwards to `target`. With
    /// `client_ca`, clients must present a certificate signed by it (mutual TLS).
    ///
    /// # Panics
    /// If stunnel cannot be started or does not accept connections within 10 s.
    pub fn start(
        port: u16,
        target: SocketAddr,
        server: &Issued,
        client_ca: Option<&TestCa>,
    ) -> Stunnel {
        let dir = tempfile::Builder::new()
            .prefix("konsumer-stunnel-")
            .tempdir()
            .expect("temporary directory");
        let (cert, key) = server.write(dir.path(), "server");
        let mut config = format!(
            "foreground = yes\npid =\ndebug = notice\n\n[kafka]\naccept = 127.0.0.1:{port}\n\
             connect = {target}\ncert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        );
        if let Some(ca) = client_ca {
            let path = dir.path().join("client-ca.pem");
            fs::write(&path, ca.cert_pem()).expect("write the client CA");
            config.push_str(&format!("verifyChain = yes\nCAfile = {}\n", path.display()));
        }
        let config_path = dir.path().join("stunnel.conf");
        fs::File::create(&config_path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write the stunnel configuration");
        let log = fs::File::create(dir.path().join("stunnel.log")).expect("stunnel log");
        let child = Command::new(find_stunnel())
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start stunnel: {e}"));
        let mut stunnel = Stunnel { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = stunnel.child.try_wait() {
                panic!("stunnel exited ({status}): {}", stunnel.log());
            }
            if Instant::now() >= deadline {
                panic!("stunnel does not listen on {addr}: {}", stunnel.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
        stunnel
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, the address clients bootstrap from.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What stunnel logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("stunnel.log")).unwrap_or_default()
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
