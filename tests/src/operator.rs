//! A complete overlay operator on loopback for enrollment tests: a CA directory with
//! domain CAs, a published configuration, the HTTPS enrollment server, accounts and a
//! DNS server announcing `_reload-config._tcp.<overlay>`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use xor_enrollment::accounts::FileAccounts;
use xor_enrollment::ca::CaDir;
use xor_enrollment::client::ClientSettings;
use xor_enrollment::config::{Configuration, KindBlock, KindName, KindSpec};
use xor_enrollment::server::{EnrollmentServer, ServerSettings};

use crate::dns::{DnsServer, Entry, start_dns};

/// Kind-ID of the USER-NODE-MATCH dictionary the test configuration defines.
pub const USER_NODE_KIND: u32 = 4000;

/// Everything an operator runs.
#[derive(Debug)]
pub struct Operator {
    /// The overlay name.
    pub overlay: String,
    /// Holds the CA directory.
    pub dir: tempfile::TempDir,
    /// The CA.
    pub ca: CaDir,
    /// The accounts.
    pub accounts: Arc<FileAccounts>,
    /// The HTTPS server.
    pub server: EnrollmentServer,
    /// The DNS server.
    pub dns: DnsServer,
    /// The published document.
    pub document: Bytes,
}

/// The configuration template the operator publishes.
pub fn template(overlay: &str, enroll_url: &str) -> Configuration {
    let mut c = Configuration::new(overlay);
    c.enrollment_servers = vec![enroll_url.to_owned()];
    c.max_message_size = 64 * 1024;
    c.required_kinds = vec![KindBlock::unsigned(KindSpec::user_node_dictionary(
        KindName::Id(USER_NODE_KIND),
        16,
        1024,
    ))];
    c
}

impl Operator {
    /// An operator of `overlay` with a CA for each of `domains`, enrolling with
    /// `settings` (its `listen` is replaced by a loopback port).
    pub async fn start(overlay: &str, domains: &[&str], mut settings: ServerSettings) -> Operator {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let ca = CaDir::init(dir.path(), overlay, 30, now).expect("ca init");
        for d in domains {
            ca.create_domain(d, 30, now).expect("domain CA");
        }
        let (key, chain) = ca
            .issue_web_cert(&[overlay.to_owned(), "127.0.0.1".into()], 30, now)
            .expect("web certificate");
        let accounts = Arc::new(
            FileAccounts::open_with(&dir.path().join("accounts"), 1000).expect("accounts"),
        );
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let domain_cas = domains
            .iter()
            .map(|d| ca.domain(d).expect("domain"))
            .collect();
        let server = EnrollmentServer::start(
            settings.clone(),
            &key,
            &chain,
            Bytes::new(),
            domain_cas,
            accounts.clone(),
        )
        .await
        .expect("enrollment server");
        let port = server.local_addr().port();
        let url = format!("https://127.0.0.1:{port}{}", settings.enroll_path);
        let document = Bytes::from(ca.publish(&template(overlay, &url)).expect("publish"));
        server.set_document(document.clone());
        let target = format!("config.{overlay}");
        let dns = start_dns(
            overlay,
            &[
                Entry::Srv(
                    format!("_reload-config._tcp.{overlay}"),
                    0,
                    5,
                    port,
                    target.clone(),
                ),
                Entry::A(target, Ipv4Addr::LOCALHOST),
            ],
        )
        .await;
        Operator {
            overlay: overlay.to_owned(),
            dir,
            ca,
            accounts,
            server,
            dns,
            document,
        }
    }

    /// Client settings that trust this operator's root for HTTPS and ask its DNS.
    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            http_roots: vec![self.ca.root_der().to_vec()],
            dns_server: Some(self.dns.addr),
            timeout: std::time::Duration::from_secs(5),
            discover: true,
            local_address: None,
        }
    }

    /// Publishes `config` (its sequence is set by the CA) and serves it.
    pub fn republish(&mut self, config: &Configuration) -> Bytes {
        let doc = Bytes::from(self.ca.publish(config).expect("publish"));
        self.server.set_document(doc.clone());
        self.document = doc.clone();
        doc
    }

    /// Credentials for `user` with Node-ID `id`, issued by the user's domain CA from a
    /// CSR (what the enrollment server does, without HTTP).
    pub fn credentials(
        &self,
        user: &str,
        id: xor_overlay::id::NodeId,
    ) -> xor_overlay::identity::Credentials {
        let domain = self
            .ca
            .domain(xor_enrollment::ca::user_domain(user))
            .expect("domain CA");
        let key = xor_overlay::identity::KeyPair::generate(&mut xor_enrollment::files::os_rng());
        let csr = xor_enrollment::ca::make_csr(&key, user).expect("csr");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let cert = domain
            .issue_csr(
                &csr,
                user,
                &[id],
                xor_overlay::identity::issue::Validity::days_from(now, 30),
            )
            .expect("certificate");
        xor_overlay::identity::Credentials::new(
            key,
            cert,
            vec![Bytes::copy_from_slice(domain.der())],
            &self.overlay,
        )
        .expect("credentials")
    }

    /// The enrollment URL.
    pub fn enroll_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/enroll",
            self.server.local_addr().port()
        )
    }
}

/// A loopback node configuration from a signed configuration `document`.
pub fn node_config(
    creds: xor_overlay::identity::Credentials,
    document: &Bytes,
    bootstrap: Option<SocketAddr>,
    seed: u64,
) -> xor_overlay::node::NodeConfig {
    let doc = xor_enrollment::config::Document::parse(document).expect("document");
    let overlay = doc.configurations[0].config.instance_name.clone();
    let config = doc
        .configuration(&overlay)
        .expect("configuration")
        .config
        .clone();
    let trust = xor_enrollment::config::sign::trust_of(&config).expect("trust");
    let mut cfg = xor_overlay::node::NodeConfig::new(overlay, creds, trust);
    xor_enrollment::authority::configure_node(&config, document.clone(), &mut cfg, None)
        .expect("configure");
    crate::tune(&mut cfg, bootstrap, seed);
    cfg
}
