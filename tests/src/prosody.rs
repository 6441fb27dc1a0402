//! A Prosody server on loopback for one test: a generated configuration in a temporary
//! directory, a certificate from a CA made on the spot, accounts registered with
//! `prosodyctl`, the server in the foreground, killed when dropped.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running Prosody.
#[derive(Debug)]
pub struct Prosody {
    child: Child,
    /// Holds configuration, certificates and data.
    pub dir: tempfile::TempDir,
    /// The c2s address.
    pub addr: SocketAddr,
    /// The CA that signed the server certificate (DER).
    pub ca: Vec<u8>,
    /// The virtual host.
    pub domain: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn certificates(domain: &str) -> (Vec<u8>, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "prosody test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec![domain.to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    (ca_cert.der().to_vec(), leaf.pem(), key.serialize_pem())
}

impl Prosody {
    /// Starts Prosody for `domain` with `users` (name, password) registered.
    pub async fn start(domain: &str, users: &[(&str, &str)]) -> Prosody {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (ca, cert, key) = certificates(domain);
        std::fs::write(d.join("cert.pem"), cert).expect("write");
        std::fs::write(d.join("key.pem"), key).expect("write");
        std::fs::create_dir_all(d.join("data")).expect("mkdir");
        let port = free_port();
        let config = format!(
            r#"run_as_root = true
data_path = "{dir}/data"
certificates = "{dir}"
pidfile = "{dir}/prosody.pid"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{dir}/prosody.log" }} }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; }}
modules_disabled = {{ "s2s"; "posix"; }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
VirtualHost "{domain}"
  ssl = {{ key = "{dir}/key.pem"; certificate = "{dir}/cert.pem"; }}
"#,
            dir = d.display()
        );
        let cfg = d.join("prosody.cfg.lua");
        std::fs::write(&cfg, config).expect("write config");
        for (user, password) in users {
            let ok = Command::new("prosodyctl")
                .arg("--config")
                .arg(&cfg)
                .args(["register", user, domain, password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .expect("prosodyctl runs")
                .success();
            assert!(ok, "prosodyctl register {user}@{domain}");
        }
        let child = Command::new("prosody")
            .arg("--config")
            .arg(&cfg)
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prosody runs");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Prosody {
            child,
            dir,
            addr,
            ca,
            domain: domain.to_owned(),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server's resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        crate::daemon::rss_kib(self.pid()?)
    }

    /// Prosody's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
