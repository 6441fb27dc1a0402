//! Real XMPP software the tests run against: slixmpp clients (PyPI) and a Prosody
//! server (Debian package). Tests that need one skip, loudly, when it is missing —
//! unless `XOR_REQUIRE_EXTERNAL` is set (CI sets it after installing both), which
//! turns a missing program into a failure.

#![allow(clippy::print_stderr)] // the skip notice is for the person running the tests

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

fn available(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        std::env::var_os("XOR_REQUIRE_EXTERNAL").is_none(),
        "{what} is required (XOR_REQUIRE_EXTERNAL is set) but not installed"
    );
    eprintln!("SKIPPED: {what} is not installed (set XOR_REQUIRE_EXTERNAL=1 to fail instead)");
    false
}

/// Whether `program args…` runs and succeeds; otherwise SKIPPED (or a failure
/// under `XOR_REQUIRE_EXTERNAL`) naming `what` to install.
pub fn have(program: &str, args: &[&str], what: &str) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    available(ok, what)
}

/// Whether slixmpp can be imported by `python3`.
pub fn have_slixmpp() -> bool {
    have(
        "python3",
        &["-c", "import slixmpp"],
        "slixmpp (pip install slixmpp)",
    )
}

/// Whether tshark (with text2pcap and mergecap, Debian package `tshark`) is installed.
pub fn have_tshark() -> bool {
    have("tshark", &["--version"], "tshark (apt-get install tshark)")
        && have(
            "text2pcap",
            &["--version"],
            "text2pcap (apt-get install tshark)",
        )
}

/// Whether Prosody is installed.
pub fn have_prosody() -> bool {
    have(
        "prosodyctl",
        &["about"],
        "Prosody (apt-get install prosody)",
    )
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py/xmpp_client.py")
}

/// A slixmpp client process (`py/xmpp_client.py`) driven over its stdin/stdout.
#[derive(Debug)]
pub struct Slix {
    child: Child,
    stdin: ChildStdin,
    events: Lines<BufReader<ChildStdout>>,
    /// Every event seen so far.
    pub seen: Vec<Value>,
}

impl Slix {
    /// Starts a client logging in as `jid` at `port` on loopback and waits until it
    /// is online.
    pub async fn login(jid: &str, password: &str, port: u16) -> Slix {
        Slix::login_at(
            jid,
            password,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            &[],
        )
        .await
    }

    /// Starts a client logging in as `jid` at `addr`, run under `prefix` (e.g. `ip
    /// netns exec NAME`), and waits until it is online.
    pub async fn login_at(
        jid: &str,
        password: &str,
        addr: std::net::SocketAddr,
        prefix: &[&str],
    ) -> Slix {
        let mut s = Slix::spawn(jid, password, addr, prefix, None);
        let online = s
            .wait(Duration::from_secs(30), |e| e["event"] == "online")
            .await;
        assert!(online.is_some(), "{jid} did not come online: {:?}", s.seen);
        s
    }

    /// Logs in as `jid` at `port` on loopback with the SASL `mechanism` only: the
    /// client online, or what it saw when it failed.
    pub async fn login_with(
        jid: &str,
        password: &str,
        port: u16,
        mechanism: &str,
    ) -> Result<Slix, Vec<Value>> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = Slix::spawn(jid, password, addr, &[], Some(mechanism));
        let outcome = s
            .wait(Duration::from_secs(30), |e| {
                e["event"] == "online" || e["event"] == "failed"
            })
            .await;
        match outcome {
            Some(e) if e["event"] == "online" => Ok(s),
            // The client may have exited: dropping it kills what is left.
            _ => Err(s.seen.clone()),
        }
    }

    fn spawn(
        jid: &str,
        password: &str,
        addr: std::net::SocketAddr,
        prefix: &[&str],
        mechanism: Option<&str>,
    ) -> Slix {
        let (program, args) = match prefix.split_first() {
            Some((p, rest)) => (*p, [rest, &["python3"]].concat()),
            None => ("python3", Vec::new()),
        };
        let mut child = Command::new(program)
            .args(args)
            .arg(script())
            .args([
                jid,
                password,
                &addr.ip().to_string(),
                &addr.port().to_string(),
            ])
            .envs(mechanism.map(|m| ("XOR_SASL_MECH", m)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().expect("stdin");
        let events = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Slix {
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    /// Sends one command (see the script's usage).
    pub async fn command(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("client stdin");
    }

    /// Sends a chat message.
    pub async fn message(&mut self, to: &str, body: &str) {
        self.command(serde_json::json!({"message": {"to": to, "body": body}}))
            .await;
    }

    /// The first event (already seen or new) matching `pred`, within `wait`.
    pub async fn wait(&mut self, wait: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let line = tokio::time::timeout_at(deadline, self.events.next_line())
                .await
                .ok()?
                .ok()??;
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            self.seen.push(event.clone());
            if pred(&event) {
                return Some(event);
            }
        }
    }

    /// A message with `body` arrived, within `wait`.
    pub async fn got(&mut self, body: &str, wait: Duration) -> Option<Value> {
        self.wait(wait, |e| e["event"] == "message" && e["body"] == body)
            .await
    }

    /// Quits and waits for the process.
    pub async fn quit(mut self) {
        self.command(serde_json::json!({"quit": true})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
