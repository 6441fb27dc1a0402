//! The `xor-node` program as a user runs it: the demo, `run` with a configuration
//! file next to other devices, `status` and `resolve` through the control socket,
//! SIGTERM removing the location record, and a clear message for every start-up
//! failure.

#![allow(clippy::unwrap_used)] // a test fails on any error

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use xor_node::daemon::{ClientPort, Device, StartupError};
use xor_node::devnet::{DOMAIN, DevNet};
use xor_xmpp::Jid;

const BIN: &str = env!("CARGO_BIN_EXE_xor-node");

fn xor_node(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_text(profile: &Path, may_start: bool, bootstrap: &[SocketAddr]) -> String {
    let boot: Vec<String> = bootstrap.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"profile = "{}"
resource = "laptop"
[overlay]
listen = "127.0.0.1:0"
stream_listen = "127.0.0.1:0"
may_start = {may_start}
bootstrap = [{}]
join_timeout = 10
[client]
listen = "127.0.0.1:0"
password = "secret"
"#,
        profile.display(),
        boot.join(", ")
    )
}

#[test]
fn the_demo_runs_and_every_message_arrives() {
    // With SSLKEYLOGFILE set, TLS secrets are logged for Wireshark.
    let dir = tempfile::tempdir().unwrap();
    let keylog = dir.path().join("keys.log");
    let out = Command::new(BIN)
        .arg("demo")
        .env("SSLKEYLOGFILE", &keylog)
        .output()
        .unwrap();
    let (ok, out, err) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(ok, "demo failed:\n{out}\n{err}");
    let keys = std::fs::read_to_string(&keylog).unwrap_or_default();
    assert!(
        keys.contains("CLIENT_TRAFFIC_SECRET_0"),
        "no TLS secrets logged"
    );
    assert!(out.contains("12 deliveries, 0 missing"), "{out}");
    assert!(
        out.contains("got a carbon of what it sent (XEP-0280)"),
        "{out}"
    );
    assert!(out.contains("`xor-node status` of bob/phone"), "{out}");
}

#[test]
fn config_example_documents_every_option_and_parses() {
    let (ok, out, _) = xor_node(&["config-example"]);
    assert!(ok);
    for key in [
        "profile",
        "resource",
        "[overlay]",
        "[client]",
        "[fallback]",
        "[log]",
    ] {
        assert!(out.contains(key), "{key} missing from the example");
    }
    let with_password = out.replace("password = \"\"", "password = \"x\"");
    xor_node::config::NodeFile::parse(&with_password).unwrap();
}

#[test]
fn bad_configuration_files_are_named_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (ok, _, err) = xor_node(&["run", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("does not exist") && err.contains("config-example"),
        "{err}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "profile = \"/p\"\n[client]\npasword = \"x\"\n").unwrap();
    let (ok, _, err) = xor_node(&["run", "--config", typo.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("pasword"), "{err}");

    let no_profile = dir.path().join("np.toml");
    xor_node::config::write_private(
        &no_profile,
        &config_text(&dir.path().join("absent"), true, &[]),
    )
    .unwrap();
    let (ok, _, err) = xor_node(&["run", "--config", no_profile.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("xor-node enroll"), "{err}");

    let (ok, _, err) = xor_node(&["status", "--config", no_profile.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("no xor-node is running"), "{err}");
}

/// A configuration holding a password used to be created readable by everyone, and
/// was read without a word (hardening issue, defect 8).
#[test]
fn secrets_other_users_can_read_are_refused_and_written_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open.toml");
    std::fs::write(&open, config_text(&dir.path().join("absent"), true, &[])).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = xor_node(&["run", "--config", open.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("chmod 600") && err.contains("passwords"),
        "{err}"
    );

    let written = dir.path().join("xor").join("node.toml");
    let (ok, out, err) = xor_node(&[
        "config-example",
        "--write",
        "--config",
        written.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("readable by you only"), "{out}");
    let mode = std::fs::metadata(&written).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        xor_node::config::EXAMPLE
    );
    let (ok, _, err) = xor_node(&[
        "config-example",
        "--write",
        "--config",
        written.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("exists already"),
        "never overwritten: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_status_and_resolve_and_sigterm_removes_the_location_record() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let alice_opts = net.enroll("alice", "laptop").await.unwrap();
    let config = net.dir().join("alice.toml");
    xor_node::config::write_private(&config, &config_text(&alice_opts.profile, true, &[])).unwrap();
    let cfg = config.to_str().unwrap().to_owned();

    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config", &cfg, "--log", "warn"])
        .env(
            "RUST_LOG",
            std::env::var("XOR_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the banner in time")
        .unwrap()
        .unwrap();
    assert!(
        banner.contains("alice@example.org/laptop is online"),
        "{banner}"
    );
    let overlay: SocketAddr = banner
        .split("overlay port ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no overlay address in {banner:?}"));

    // Bob's device joins through alice's daemon and finds her.
    let mut bob_opts = net.enroll("bob", "phone").await.unwrap();
    bob_opts.bootstrap = vec![overlay];
    bob_opts.may_start = false;
    let bob = Device::start(bob_opts).await.unwrap();
    let alice = Jid::parse(&format!("alice@{DOMAIN}")).unwrap();
    // (A node answers for its range from the moment it joins; the records its
    // admitting peer hands over arrive a few milliseconds later, §10.5.)
    let mut found = Vec::new();
    for _ in 0..50 {
        if let Ok(routes) = bob.node().resolve(&alice).await {
            found = routes;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "bob finds alice's one device");

    let cfg2 = cfg.clone();
    let status = tokio::task::spawn_blocking(move || xor_node(&["status", "--config", &cfg2]))
        .await
        .unwrap();
    assert!(status.0, "{status:?}");
    assert!(
        status.1.contains("device      alice@example.org/laptop"),
        "{}",
        status.1
    );
    assert!(status.1.contains("state       Joined"), "{}", status.1);
    let cfg3 = cfg.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        xor_node(&["resolve", "bob@example.org", "--config", &cfg3])
    })
    .await
    .unwrap();
    assert!(resolved.0, "{resolved:?}");
    assert!(
        resolved.1.contains("bob@example.org has 1 device(s)"),
        "{}",
        resolved.1
    );
    let cfg4 = cfg.clone();
    let unknown = tokio::task::spawn_blocking(move || {
        xor_node(&["resolve", "nobody@example.org", "--config", &cfg4])
    })
    .await
    .unwrap();
    assert!(!unknown.0);
    assert!(unknown.1.contains("not registered"), "{}", unknown.1);

    // A second daemon on the same profile is refused.
    let cfg5 = cfg.clone();
    let second = tokio::task::spawn_blocking(move || xor_node(&["run", "--config", &cfg5]))
        .await
        .unwrap();
    assert!(!second.0);
    assert!(
        second.2.contains("another xor-node is running"),
        "{}",
        second.2
    );

    // SIGTERM: the daemon removes its location record and leaves.
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let gone = bob.node().resolve(&alice).await;
    assert!(gone.is_err(), "alice's record is gone: {gone:?}");
    assert!(!alice_opts.profile.join("control.sock").exists());
    bob.shutdown().await;
    net.shutdown();
}

fn expect_err(r: Result<Device, StartupError>) -> StartupError {
    match r {
        Ok(d) => panic!("{:?} started", d.jid()),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_failures_say_what_to_do() {
    let mut net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let first = net.device("alice", "laptop").await.unwrap();

    // The client port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut opts = net.enroll("bob", "one").await.unwrap();
    opts.client = Some(ClientPort {
        listen: taken.local_addr().unwrap(),
        password: "x".into(),
        roster: None,
    });
    let e = expect_err(Device::start(opts).await);
    assert!(matches!(e, StartupError::PortTaken { .. }), "{e}");
    assert!(e.to_string().contains("is another xor-node running"), "{e}");

    // The overlay port is taken.
    let mut opts = net.enroll("bob", "two").await.unwrap();
    opts.overlay_listen = taken.local_addr().unwrap();
    let e = expect_err(Device::start(opts).await);
    assert!(e.to_string().contains("overlay links"), "{e}");

    // Nothing answers at the bootstrap address.
    let mut opts = net.enroll("bob", "three").await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    opts.bootstrap = vec![closed];
    opts.join_timeout = Duration::from_secs(2);
    let e = expect_err(Device::start(opts).await);
    assert!(matches!(e, StartupError::NoBootstrap(_)), "{e}");
    assert!(e.to_string().contains("no bootstrap node"), "{e}");

    // An expired certificate: issued by the same domain CA, valid only in the past.
    let opts = net.enroll("bob", "four").await.unwrap();
    let ca = xor_enrollment::ca::CaDir::open(&net.dir().join("ca")).unwrap();
    let domain = ca.domain(DOMAIN).unwrap();
    let key = xor_overlay::identity::KeyPair::generate(&mut xor_enrollment::files::os_rng());
    let csr = xor_enrollment::ca::make_csr(&key, "bob@example.org").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let validity = xor_overlay::identity::issue::Validity {
        not_before: now - 10 * 86_400,
        not_after: now - 86_400,
    };
    let cert = domain
        .issue_csr(
            &csr,
            "bob@example.org",
            &[xor_overlay::id::NodeId(77)],
            validity,
        )
        .unwrap();
    xor_enrollment::files::write_atomic(
        &opts.profile.join("key.pem"),
        xor_enrollment::files::key_pem(&key).as_bytes(),
        true,
    )
    .unwrap();
    std::fs::write(
        opts.profile.join("cert.pem"),
        xor_enrollment::files::certs_pem([cert.as_ref(), domain.der()]),
    )
    .unwrap();
    let e = expect_err(Device::start(opts).await);
    assert!(matches!(e, StartupError::Certificate { .. }), "{e}");
    assert!(
        e.to_string().contains("expired on") && e.to_string().contains("xor-node enroll` again"),
        "{e}"
    );
    first.shutdown().await;
    net.shutdown();
}
