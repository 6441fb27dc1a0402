//! Enrollment end to end (RFC 6940 §11, XEP-0415 trust model), over real HTTPS, a
//! real DNS server and real TLS overlay links on loopback.

use std::time::Duration;

use bytes::Bytes;
use xor_enrollment::ca::make_csr;
use xor_enrollment::cli::{EnrollOptions, enroll_cli};
use xor_enrollment::client::{ClientError, ClientSettings, Refusal, enroll, fetch_config};
use xor_enrollment::server::ServerSettings;
use xor_overlay::id::overlay_hash;
use xor_overlay::identity::{Credentials, KeyPair};
use xor_overlay::runtime::Overlay;
use xor_overlay::wire::*;
use xor_tests::operator::{Operator, USER_NODE_KIND, node_config};
use xor_tests::start;

const OVERLAY: &str = "chat.test";

fn enroll_opts(
    op: &Operator,
    user: &str,
    password: &str,
    profile: &std::path::Path,
) -> EnrollOptions {
    EnrollOptions {
        overlay: OVERLAY.into(),
        config_url: None,
        username: user.into(),
        password: password.into(),
        node_ids: 1,
        profile: profile.to_owned(),
        client: op.client(),
    }
}

/// A node running with enrolled credentials and the fetched configuration.
async fn node(
    creds: Credentials,
    document: &Bytes,
    bootstrap: Option<std::net::SocketAddr>,
    seed: u64,
) -> Overlay {
    start(node_config(creds, document, bootstrap, seed))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_round_trip_with_dns_discovery_rfc6940_11() {
    let op = Operator::start(
        OVERLAY,
        &["capulet.test", "montague.test"],
        ServerSettings::default(),
    )
    .await;
    op.accounts
        .set_password("juliet@capulet.test", "balcony")
        .unwrap();
    op.accounts
        .set_password("romeo@montague.test", "wherefore")
        .unwrap();
    let home = tempfile::tempdir().unwrap();

    // SRV → HTTPS configuration → CSR → certificate → profile on disk.
    let juliet = enroll_cli(&enroll_opts(
        &op,
        "juliet@capulet.test",
        "balcony",
        &home.path().join("juliet"),
    ))
    .await
    .unwrap();
    let romeo = enroll_cli(&enroll_opts(
        &op,
        "romeo@montague.test",
        "wherefore",
        &home.path().join("romeo"),
    ))
    .await
    .unwrap();
    assert_eq!(juliet.document, op.document);
    assert_eq!(juliet.config.sequence, 1);
    let jid = juliet.credentials.identity();
    assert_eq!(jid.user.as_deref(), Some("juliet@capulet.test"));
    assert_eq!(jid.xmpp_addrs, vec!["juliet@capulet.test".to_owned()]);
    // Enrolling again is another device (XEP-0415: every device is a peer): it gets
    // a Node-ID of its own, distinct from every Node-ID the server handed out.
    let again = enroll_cli(&enroll_opts(
        &op,
        "juliet@capulet.test",
        "balcony",
        &home.path().join("juliet2"),
    ))
    .await
    .unwrap();
    assert_ne!(again.credentials.node_id(), juliet.credentials.node_id());
    assert_ne!(again.credentials.node_id(), romeo.credentials.node_id());
    assert_ne!(romeo.credentials.node_id(), juliet.credentials.node_id());

    // The certificates work: the nodes' TLS verifiers accept each other and the
    // USER-NODE-MATCH Kind accepts Juliet's store at H(her user name).
    let a = node(juliet.credentials.clone(), &juliet.document, None, 1).await;
    let b = node(
        romeo.credentials.clone(),
        &romeo.document,
        Some(a.local_addr()),
        2,
    )
    .await;
    assert!(a.joined(Duration::from_secs(10)).await);
    assert!(b.joined(Duration::from_secs(10)).await);
    let resource = overlay_hash(b"juliet@capulet.test");
    let key = Bytes::copy_from_slice(&a.node_id().to_be_bytes());
    let value = StoredDataValue::Dictionary {
        key: key.clone(),
        value: DataValue::new(Bytes::from_static(b"here")),
    };
    a.store(
        resource,
        vec![(USER_NODE_KIND, vec![value.clone()])],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let spec = StoredDataSpecifier {
        kind: USER_NODE_KIND,
        generation: 0,
        model_specifier: ModelSpecifier::Dictionary(vec![key]),
    };
    let ans = b.fetch(resource, vec![spec]).await.unwrap();
    let values = ans.kind_responses[0].values.parsed();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].value, value);
    // Romeo may not write under Juliet's name.
    let forged = StoredDataValue::Dictionary {
        key: Bytes::copy_from_slice(&b.node_id().to_be_bytes()),
        value: DataValue::new(Bytes::from_static(b"impostor")),
    };
    let err = b
        .store(
            resource,
            vec![(USER_NODE_KIND, vec![forged])],
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Forbidden"), "{err}");
}

/// A raw enrollment POST, for requests the client library would not make.
async fn raw_post(
    op: &Operator,
    user: &str,
    password: &str,
    nodeids: Option<&str>,
    csr: Vec<u8>,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(op.ca.root_der().to_vec().into()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let mut form = reqwest::multipart::Form::new()
        .text("username", user.to_owned())
        .text("password", password.to_owned())
        .part(
            "csr",
            reqwest::multipart::Part::bytes(csr)
                .mime_str("application/pkcs10")
                .unwrap(),
        );
    if let Some(n) = nodeids {
        form = form.text("nodeids", n.to_owned());
    }
    let resp = client
        .post(op.enroll_url())
        .header("Accept", "application/pkix-cert")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_code_of_rfc6940_11_3() {
    let settings = ServerSettings::default();
    let op = Operator::start(OVERLAY, &["capulet.test", "montague.test"], settings).await;
    op.accounts
        .set_password("juliet@capulet.test", "balcony")
        .unwrap();
    op.accounts.set_password("eve@nowhere.test", "x").unwrap();
    let fetched = fetch_config(OVERLAY, None, None, &op.client())
        .await
        .unwrap();
    let config = fetched.verified.config;
    let c = op.client();
    let refused = |r: Result<_, ClientError>| match r {
        Err(ClientError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(enroll(&config, "juliet@capulet.test", "wrong", 1, &c).await),
        Refusal::FailedAuthentication
    );
    assert_eq!(
        refused(enroll(&config, "nobody@capulet.test", "balcony", 1, &c).await),
        Refusal::FailedAuthentication
    );
    // An account whose domain has no CA here.
    assert_eq!(
        refused(enroll(&config, "eve@nowhere.test", "x", 1, &c).await),
        Refusal::UsernameNotAvailable
    );
    assert_eq!(
        refused(enroll(&config, "juliet@capulet.test", "balcony", 99, &c).await),
        Refusal::NodeIdsNotAvailable
    );
    // Raw requests: a CSR that is not one, and one asking for another domain's JID.
    let (status, body) = raw_post(
        &op,
        "juliet@capulet.test",
        "balcony",
        None,
        b"garbage".to_vec(),
    )
    .await;
    assert_eq!((status, body.as_str()), (403, "bad_CSR"));
    let key = KeyPair::generate(&mut xor_enrollment::files::os_rng());
    let romeo_csr = make_csr(&key, "romeo@montague.test").unwrap();
    let (status, body) = raw_post(&op, "juliet@capulet.test", "balcony", None, romeo_csr).await;
    assert_eq!((status, body.as_str()), (403, "username_not_available"));
    let csr = make_csr(&key, "juliet@capulet.test").unwrap();
    let (status, body) = raw_post(
        &op,
        "juliet@capulet.test",
        "balcony",
        Some("lots"),
        csr.clone(),
    )
    .await;
    assert_eq!((status, body.as_str()), (403, "Node-IDs_not_available"));
    // Two Node-IDs when asked for two.
    let two = enroll(&config, "juliet@capulet.test", "balcony", 2, &c)
        .await
        .unwrap();
    assert_eq!(two.node_ids.len(), 2);
}

/// A client of the operator's server whose requests leave from `source`.
fn client_from(op: &Operator, source: [u8; 4]) -> ClientSettings {
    ClientSettings {
        local_address: Some(source.into()),
        ..op.client()
    }
}

/// Guessing used to spend the account's own budget, so anyone could lock a user out of
/// enrolling (hardening issue, defect 7). Now failures count per (account, address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_locks_out_the_guesser_not_the_user() {
    let op = Operator::start(OVERLAY, &["capulet.test"], ServerSettings::default()).await;
    op.accounts
        .set_password("juliet@capulet.test", "balcony")
        .unwrap();
    let config = fetch_config(OVERLAY, None, None, &op.client())
        .await
        .unwrap()
        .verified
        .config;
    let mallory = client_from(&op, [127, 0, 0, 66]);
    let mut refused = 0;
    let mut limited = None;
    for _ in 0..8 {
        match enroll(&config, "juliet@capulet.test", "guess", 1, &mallory).await {
            Err(ClientError::Refused(Refusal::FailedAuthentication)) => refused += 1,
            Err(ClientError::RateLimited(wait)) => limited = Some(wait),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 5, "five guesses checked, then the guesser waits");
    assert!(
        limited.is_some_and(|w| w >= Duration::from_secs(60)),
        "{limited:?}"
    );
    // Even the right password from the guesser's address waits...
    assert!(matches!(
        enroll(&config, "juliet@capulet.test", "balcony", 1, &mallory).await,
        Err(ClientError::RateLimited(_))
    ));
    // ...but the user, from her own address, enrolls.
    let juliet = client_from(&op, [127, 0, 0, 1]);
    let got = enroll(&config, "juliet@capulet.test", "balcony", 1, &juliet)
        .await
        .expect("the user is not locked out");
    assert_eq!(got.node_ids.len(), 1);
}

/// An account holds a bounded number of Node-IDs (each enrollment is a device with
/// its own); revoking a device frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_per_account_are_capped_and_revocation_frees_a_slot() {
    let settings = ServerSettings {
        max_account_node_ids: 3,
        ..ServerSettings::default()
    };
    let op = Operator::start(OVERLAY, &["capulet.test"], settings).await;
    op.accounts
        .set_password("juliet@capulet.test", "balcony")
        .unwrap();
    let c = op.client();
    let config = fetch_config(OVERLAY, None, None, &c)
        .await
        .unwrap()
        .verified
        .config;
    let first = enroll(&config, "juliet@capulet.test", "balcony", 1, &c)
        .await
        .unwrap();
    enroll(&config, "juliet@capulet.test", "balcony", 2, &c)
        .await
        .unwrap();
    match enroll(&config, "juliet@capulet.test", "balcony", 1, &c).await {
        Err(ClientError::Refused(Refusal::NodeIdsNotAvailable)) => {}
        other => panic!("a fourth Node-ID: {other:?}"),
    }
    use xor_enrollment::accounts::AccountStore;
    assert_eq!(
        op.accounts
            .remove_node_ids("juliet@capulet.test", &first.node_ids),
        Ok(1)
    );
    op.ca.revoke_nodes(&first.node_ids).unwrap();
    assert_eq!(
        op.ca.bad_nodes(),
        first.node_ids,
        "listed for the next configuration"
    );
    enroll(&config, "juliet@capulet.test", "balcony", 1, &c)
        .await
        .expect("the revoked device's slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_configuration_is_rejected_rfc6940_11_1() {
    let op = Operator::start(OVERLAY, &["capulet.test"], ServerSettings::default()).await;
    let mut bytes = op.document.to_vec();
    let at = String::from_utf8_lossy(&bytes)
        .find("<max-message-size>")
        .unwrap()
        + "<max-message-size>".len();
    bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    op.server.set_document(Bytes::from(bytes));
    let err = fetch_config(OVERLAY, None, None, &op.client())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Config(xor_enrollment::config::ConfigError::Signature(_))
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_falls_back_to_the_configured_url_rfc6940_11_2() {
    let op = Operator::start(OVERLAY, &["capulet.test"], ServerSettings::default()).await;
    // Another overlay name has no SRV record at this DNS server.
    let mut c = op.client();
    let err = fetch_config("other.test", None, None, &c)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Discovery { .. }), "{err}");
    assert!(
        err.to_string().contains("_reload-config._tcp.other.test"),
        "{err}"
    );
    // With a configured URL the document is fetched there; its instance name must
    // still be the overlay asked for.
    let url = format!(
        "https://127.0.0.1:{}/.well-known/reload-config",
        op.server.local_addr().port()
    );
    let err = fetch_config("other.test", Some(&url), None, &c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no configuration for overlay other.test"),
        "{err}"
    );
    c.dns_server = Some("127.0.0.1:9".parse().unwrap());
    c.timeout = Duration::from_millis(300);
    let fetched = fetch_config(OVERLAY, Some(&url), None, &c).await.unwrap();
    assert_eq!(fetched.document, op.document);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_functions_run_an_operator_and_a_user() {
    use xor_enrollment::cli::{EnrollServerOptions, ca_domain, ca_init, ca_publish, enroll_server};
    let ca_dir = tempfile::tempdir().unwrap();
    // A port for the server, known before the configuration that names it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = ca_init(ca_dir.path(), OVERLAY, 30, &["127.0.0.1".into()]).unwrap();
    assert!(report.contains("configuration signer"), "{report}");
    ca_domain(ca_dir.path(), "capulet.test", 30).unwrap();
    assert!(
        ca_domain(ca_dir.path(), "capulet.test", 30).is_err(),
        "no silent overwrite"
    );
    let url = format!("https://127.0.0.1:{port}/enroll");
    let report = ca_publish(ca_dir.path(), &xor_tests::operator::template(OVERLAY, &url)).unwrap();
    assert!(report.contains("sequence 1"), "{report}");
    let accounts = ca_dir.path().join("accounts");
    xor_enrollment::accounts::FileAccounts::open_with(&accounts, 1000)
        .unwrap()
        .set_password("nurse@capulet.test", "secret")
        .unwrap();
    let settings = ServerSettings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ..ServerSettings::default()
    };
    let server = enroll_server(&EnrollServerOptions {
        ca_dir: ca_dir.path().to_owned(),
        accounts,
        settings,
    })
    .await
    .unwrap();
    let root = std::fs::read(ca_dir.path().join("root.pem")).unwrap();
    let root = xor_enrollment::files::pem_der(&root).unwrap();
    let home = tempfile::tempdir().unwrap();
    // A DNS server that records queries and never answers: with --config-url, no
    // query may reach it (hardening issue, defect 9).
    let dns = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let profile = enroll_cli(&EnrollOptions {
        overlay: OVERLAY.into(),
        config_url: Some(format!(
            "https://127.0.0.1:{port}/.well-known/reload-config"
        )),
        username: "nurse@capulet.test".into(),
        password: "secret".into(),
        node_ids: 1,
        profile: home.path().join("nurse"),
        client: xor_enrollment::client::ClientSettings {
            http_roots: vec![root],
            dns_server: Some(dns.local_addr().unwrap()),
            timeout: Duration::from_millis(500),
            discover: true,
            local_address: None,
        },
    })
    .await
    .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        dns.try_recv_from(&mut buf).is_err(),
        "the given configuration URL is used without a DNS SRV lookup"
    );
    assert_eq!(
        profile.credentials.identity().user.as_deref(),
        Some("nurse@capulet.test")
    );
    server.shutdown();
}
