//! A complete development overlay on loopback: an operator (root CA, a domain CA for
//! example.org, the HTTPS enrollment server with a signed configuration) and devices
//! enrolled through it, each a full [`Device`] with its local client port. The demo
//! runs on it; so do the end-to-end tests and anyone who wants a private overlay in a
//! test of their own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use xor_enrollment::accounts::FileAccounts;
use xor_enrollment::ca::CaDir;
use xor_enrollment::cli::{EnrollOptions, enroll_cli};
use xor_enrollment::client::ClientSettings;
use xor_enrollment::config::{Configuration, KindBlock, KindName, KindSpec};
use xor_enrollment::server::{EnrollmentServer, ServerSettings};

use crate::daemon::{ClientPort, Device, DeviceOptions, StartupError};

/// The development overlay's name.
pub const OVERLAY: &str = "demo.xor";
/// The users' domain.
pub const DOMAIN: &str = "example.org";
/// The password of every account and client port.
pub const PASSWORD: &str = "demo";

/// A configuration for an XMPP overlay: the XEP-0415 XMPP-LOCATION Kind (dictionary,
/// USER-NODE-MATCH, up to 16 devices of 1 KiB), enrollment at `enroll_url`.
pub fn xmpp_template(overlay: &str, enroll_url: &str, bootstrap: &[SocketAddr]) -> Configuration {
    let mut c = Configuration::new(overlay);
    c.enrollment_servers = vec![enroll_url.to_owned()];
    c.max_message_size = 64 * 1024;
    c.bootstrap_nodes = bootstrap
        .iter()
        .map(|a| xor_enrollment::config::BootstrapNode {
            address: a.ip(),
            port: a.port(),
        })
        .collect();
    c.required_kinds = vec![
        KindBlock::unsigned(KindSpec::user_node_dictionary(
            KindName::Name("XMPP-LOCATION".into()),
            16,
            1024,
        )),
        // Where public peers serve STUN and TURN to the others (RFC 6940 §9).
        KindBlock::unsigned(KindSpec::turn_service()),
    ];
    c
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Why the development overlay or one of its devices could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DevNetError {
    /// Setting up the operator (CA, accounts, enrollment server) failed.
    #[error("setting up the operator: {0}")]
    Operator(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Enrolling a device failed.
    #[error("enrolling {device}: {source}")]
    Enroll {
        /// `user/resource`.
        device: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Starting a device failed.
    #[error("starting {device}: {source}")]
    Start {
        /// The device's profile.
        device: String,
        /// Why.
        source: StartupError,
    },
}

fn step(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DevNetError {
    DevNetError::Operator(e.into())
}

/// The operator and the devices' bootstrap node.
#[derive(Debug)]
pub struct DevNet {
    dir: tempfile::TempDir,
    server: EnrollmentServer,
    enroll_url: String,
    config_url: String,
    client: ClientSettings,
    bootstrap: Vec<SocketAddr>,
    ca_root: Vec<u8>,
}

impl DevNet {
    /// Starts the operator with an account `<user>@example.org` (password
    /// [`PASSWORD`]) for each of `users`.
    pub async fn start(users: &[&str]) -> Result<DevNet, DevNetError> {
        let dir = tempfile::tempdir().map_err(step)?;
        let ca = CaDir::init(&dir.path().join("ca"), OVERLAY, 30, now()).map_err(step)?;
        let domain = ca.create_domain(DOMAIN, 30, now()).map_err(step)?;
        let (key, chain) = ca
            .issue_web_cert(&[OVERLAY.to_owned(), "127.0.0.1".into()], 30, now())
            .map_err(step)?;
        // Fewer PBKDF2 rounds than a real server: accounts are made on every run.
        let accounts =
            Arc::new(FileAccounts::open_with(&dir.path().join("accounts"), 10_000).map_err(step)?);
        for user in users {
            accounts
                .set_password(&format!("{user}@{DOMAIN}"), PASSWORD)
                .map_err(step)?;
        }
        let settings = ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Every device of the development overlay enrolls from 127.0.0.1.
            per_address: xor_enrollment::ratelimit::Rate {
                burst: 1000,
                interval: Duration::from_millis(10),
            },
            ..ServerSettings::default()
        };
        let server = EnrollmentServer::start(
            settings.clone(),
            &key,
            &chain,
            Bytes::new(),
            vec![domain],
            accounts,
        )
        .await
        .map_err(step)?;
        let base = format!("https://127.0.0.1:{}", server.local_addr().port());
        let enroll_url = format!("{base}{}", settings.enroll_path);
        let document = ca
            .publish(&xmpp_template(OVERLAY, &enroll_url, &[]))
            .map_err(step)?;
        server.set_document(Bytes::from(document));
        Ok(DevNet {
            config_url: format!("{base}{}", xor_enrollment::server::CONFIG_PATH),
            enroll_url,
            client: ClientSettings {
                http_roots: vec![ca.root_der().to_vec()],
                dns_server: None,
                timeout: Duration::from_secs(10),
                discover: false,
                local_address: None,
            },
            bootstrap: Vec::new(),
            ca_root: ca.root_der().to_vec(),
            server,
            dir,
        })
    }

    /// The enrollment URL.
    pub fn enroll_url(&self) -> &str {
        &self.enroll_url
    }

    /// The configuration document's URL.
    pub fn config_url(&self) -> &str {
        &self.config_url
    }

    /// How clients reach the operator (its root as the HTTPS trust anchor).
    pub fn client_settings(&self) -> ClientSettings {
        self.client.clone()
    }

    /// The directory holding the CA and the profiles.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The overlay's root certificate (DER).
    pub fn root(&self) -> &[u8] {
        &self.ca_root
    }

    /// The overlay's root certificate as PEM (what an embedding trusts for HTTPS).
    pub fn root_pem(&self) -> String {
        xor_enrollment::files::pem("CERTIFICATE", &self.ca_root)
    }

    /// A builder for an embedded device of `user` (enrolled over HTTPS with
    /// [`PASSWORD`] when started, overlay listener on loopback); the caller adds a
    /// bootstrap node or lets it start the overlay.
    pub fn embed(&self, user: &str) -> crate::embed::Builder {
        crate::embed::Builder::new(OVERLAY)
            .config_url(self.config_url.clone())
            .http_roots_pem(self.root_pem().as_bytes())
            .enroll(format!("{user}@{DOMAIN}"), PASSWORD)
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Enrolls a device of `user` over HTTPS and returns the options to start it with:
    /// loopback ports, the first device's address as bootstrap (the first device
    /// starts the overlay) and a client port with password [`PASSWORD`].
    pub async fn enroll(&self, user: &str, resource: &str) -> Result<DeviceOptions, DevNetError> {
        let profile = self.dir.path().join(format!("{user}-{resource}"));
        enroll_cli(&EnrollOptions {
            overlay: OVERLAY.into(),
            config_url: Some(self.config_url.clone()),
            username: format!("{user}@{DOMAIN}"),
            password: PASSWORD.into(),
            node_ids: 1,
            profile: profile.clone(),
            client: self.client.clone(),
        })
        .await
        .map_err(|e| DevNetError::Enroll {
            device: format!("{user}/{resource}"),
            source: e.into(),
        })?;
        let mut opts = DeviceOptions::new(&profile, resource);
        opts.bootstrap = self.bootstrap.clone();
        opts.may_start = self.bootstrap.is_empty();
        opts.client = Some(ClientPort {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            password: PASSWORD.into(),
            roster: None,
        });
        Ok(opts)
    }

    /// Starts a device from `opts`; the first becomes everyone's bootstrap node.
    pub async fn start_device(&mut self, opts: DeviceOptions) -> Result<Device, DevNetError> {
        let label = opts.profile.display().to_string();
        let device = Device::start(opts)
            .await
            .map_err(|source| DevNetError::Start {
                device: label,
                source,
            })?;
        if self.bootstrap.is_empty() {
            self.bootstrap = vec![device.node().overlay().local_addr()];
        }
        Ok(device)
    }

    /// Enrolls and starts a device of `user`.
    pub async fn device(&mut self, user: &str, resource: &str) -> Result<Device, DevNetError> {
        let opts = self.enroll(user, resource).await?;
        self.start_device(opts).await
    }

    /// Stops the enrollment server.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }
}
