//! What the `xor` command runs for `ca init`, `ca domain`, `ca revoke`, `ca publish`,
//! `enroll-server` and `enroll`: each step does its work and returns a one-paragraph
//! report for the terminal, or an error that says what to fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::accounts::FileAccounts;
use crate::ca::{CaDir, CaError};
use crate::client::{
    ClientError, ClientSettings, Profile, enroll, fetch_config, load_profile, save_profile,
};
use crate::config::Configuration;
use crate::server::{EnrollmentServer, ServerError, ServerSettings};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `ca init`: a root and configuration signer for `overlay` in `dir`, plus a web server
/// certificate for `web_names` (the overlay name is always included).
pub fn ca_init(
    dir: &Path,
    overlay: &str,
    days: i64,
    web_names: &[String],
) -> Result<String, CaError> {
    let ca = CaDir::init(dir, overlay, days, now())?;
    let mut names = vec![overlay.to_owned()];
    names.extend(web_names.iter().filter(|n| *n != overlay).cloned());
    ca.issue_web_cert(&names, days, now())?;
    Ok(format!(
        "created the root of overlay {overlay} in {}\nconfiguration signer: Node-ID {}\nweb certificate for: {}",
        dir.display(),
        ca.signer().node_id(),
        names.join(", ")
    ))
}

/// `ca domain`: an intermediate CA for an XMPP domain.
pub fn ca_domain(dir: &Path, domain: &str, days: i64) -> Result<String, CaError> {
    let ca = CaDir::open(dir)?;
    let d = ca.create_domain(domain, days, now())?;
    Ok(format!(
        "created the CA of {} (fingerprint {}); it may issue only for users @{}",
        d.domain(),
        hex::encode(xor_overlay::identity::trust::fingerprint(d.der())),
        d.domain()
    ))
}

/// `ca revoke`: records the revocation of a domain CA; it takes effect with the next
/// `ca publish`.
pub fn ca_revoke(dir: &Path, domain: &str) -> Result<String, CaError> {
    let ca = CaDir::open(dir)?;
    let fp = ca.revoke_domain(domain)?;
    Ok(format!(
        "revoked the CA of {domain} ({}); run `ca publish` to distribute the revocation",
        hex::encode(fp)
    ))
}

/// `ca publish`: signs `template` as the next configuration and writes `config.xml`.
pub fn ca_publish(dir: &Path, template: &Configuration) -> Result<String, CaError> {
    let ca = CaDir::open(dir)?;
    let text = ca.publish(template)?;
    let path = dir.join("config.xml");
    let doc = crate::config::Document::parse(text.as_bytes())?;
    let seq = doc.configuration(ca.overlay())?.config.sequence;
    Ok(format!(
        "published configuration sequence {seq} of {} to {}",
        ca.overlay(),
        path.display()
    ))
}

/// Where `enroll-server` finds its pieces.
#[derive(Debug, Clone)]
pub struct EnrollServerOptions {
    /// The CA directory (root, domain CAs, `config.xml`, `web/`).
    pub ca_dir: PathBuf,
    /// The account file.
    pub accounts: PathBuf,
    /// Listening address, paths, limits.
    pub settings: ServerSettings,
}

/// Why `enroll-server` could not start.
#[derive(Debug, thiserror::Error)]
pub enum EnrollServerError {
    /// The CA directory is incomplete.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The account file is unreadable.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The server failed to start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Nothing to serve.
    #[error("{0}")]
    Missing(String),
}

/// `enroll-server`: serves the published configuration and enrolls the accounts of
/// every domain in the CA directory.
pub async fn enroll_server(
    opts: &EnrollServerOptions,
) -> Result<EnrollmentServer, EnrollServerError> {
    let ca = CaDir::open(&opts.ca_dir)?;
    let document = ca.published().ok_or_else(|| {
        EnrollServerError::Missing(format!(
            "{} has no config.xml: run `ca publish` first",
            opts.ca_dir.display()
        ))
    })?;
    let domains = ca
        .domains()
        .iter()
        .map(|d| ca.domain(d))
        .collect::<Result<Vec<_>, _>>()?;
    let revoked = ca.revoked();
    let domains = domains
        .into_iter()
        .filter(|d| !revoked.contains(&xor_overlay::identity::trust::fingerprint(d.der())))
        .collect();
    let accounts = Arc::new(FileAccounts::open(&opts.accounts)?);
    let (key, chain) = ca.web_cert()?;
    Ok(EnrollmentServer::start(
        opts.settings.clone(),
        &key,
        &chain,
        Bytes::from(document),
        domains,
        accounts,
    )
    .await?)
}

/// What `enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The overlay name.
    pub overlay: String,
    /// The configuration URL; when given, it is used without a DNS SRV lookup first
    /// (private overlays and test labs must not depend on an outside resolver).
    pub config_url: Option<String>,
    /// The account (a bare JID).
    pub username: String,
    /// Its password.
    pub password: String,
    /// How many Node-IDs to ask for.
    pub node_ids: u32,
    /// Where to keep key, certificate and configuration.
    pub profile: PathBuf,
    /// HTTPS roots and DNS server.
    pub client: ClientSettings,
}

/// `enroll`: fetch and verify the configuration, enroll, save the profile, and load it
/// back as a node would.
pub async fn enroll_cli(opts: &EnrollOptions) -> Result<Profile, ClientError> {
    let mut client = opts.client.clone();
    client.discover &= opts.config_url.is_none();
    let fetched = fetch_config(&opts.overlay, opts.config_url.as_deref(), None, &client).await?;
    let enrolled = enroll(
        &fetched.verified.config,
        &opts.username,
        &opts.password,
        opts.node_ids,
        &opts.client,
    )
    .await?;
    save_profile(&opts.profile, &enrolled, &fetched.document)?;
    load_profile(&opts.profile, &opts.overlay)
}
