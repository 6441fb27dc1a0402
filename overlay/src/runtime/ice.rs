//! ICE for application streams (RFC 6940 §6.5.1.5 – §6.5.1.10, §6.5.2) with
//! `webrtc-ice`: gathering host, server-reflexive (STUN) and relayed (TURN)
//! candidates, connectivity checks with the ufrag/password of the AppAttach
//! exchange, and a reliable, authenticated byte stream over the selected UDP pair.
//!
//! The stream over the pair: SCTP (`webrtc-sctp`, one ordered reliable stream) for
//! reliability and congestion control, and on top of it the same mutual TLS 1.3 with
//! Node-ID checks that every TCP link runs ([`TlsContext::connect_over`]). The
//! application (XMPP, XEP-0415) sees what it sees over TCP: "TLS immediately", then
//! its stream. The requester (controlling agent, §6.5.1.9) is the TLS server, as it is
//! on TCP, where the answerer dials the requester's listener.
//!
//! Only a pair that answered the authenticated checks (STUN with the peer's
//! ufrag/password, RFC 8445 §7.2) carries a byte of the stream: a peer cannot use its
//! candidates to make this node send application data to an arbitrary host.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use webrtc_ice::agent::Agent;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::url::Url;
use webrtc_sctp::association::{Association, Config as SctpConfig};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier;
use webrtc_sctp::stream::Stream as SctpStream;
use webrtc_util::Conn;

use crate::node::{IceOffer, RemoteIce};
use crate::wire::attach::link_type;
use crate::wire::{CandType, IceCandidate, IpAddressPort};

pub use crate::node::config::{IceSettings, TurnServer};

/// The wait before a server- or peer-reflexive pair may be nominated.
const DIRECT_ACCEPTANCE_WAIT: Duration = Duration::from_millis(200);

fn urls(settings: &IceSettings) -> Result<Vec<Url>, String> {
    let mut urls = Vec::new();
    for s in &settings.stun {
        urls.push(Url::parse_url(s).map_err(|e| format!("STUN server {s}: {e}"))?);
    }
    for t in &settings.turn {
        let mut url = Url::parse_url(&t.url).map_err(|e| format!("TURN server {}: {e}", t.url))?;
        url.username = t.username.clone();
        url.password = t.password.clone();
        urls.push(url);
    }
    Ok(urls)
}

/// How long gathering may take before the candidates found so far are sent.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the connectivity checks may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(12);
/// Traffic on the selected pair at least this often, so NAT bindings survive an idle
/// stream (§6.5.2: "Applications will often send traffic every 25 seconds").
pub const KEEPALIVE: Duration = Duration::from_secs(20);
/// Bytes the SCTP stream may hold unsent before the writer waits.
const MAX_BUFFERED: usize = 256 * 1024;
/// Largest SCTP message written (the stream is a byte stream cut in pieces).
const CHUNK: usize = 16 * 1024;

/// An agent whose candidates have been gathered, and what to send of them.
pub struct Gathered {
    agent: Arc<Agent>,
    /// Credentials and candidates for the AppAttach.
    pub offer: IceOffer,
}

impl std::fmt::Debug for Gathered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathered")
            .field("offer", &self.offer)
            .finish()
    }
}

/// Gathers candidates for one AppAttach (§6.5.1.5). `controlling`: this node sends
/// the request (§6.5.1.9).
pub async fn gather(settings: &IceSettings, controlling: bool) -> Result<Gathered, String> {
    let include_loopback = settings.include_loopback;
    let agent = Agent::new(AgentConfig {
        urls: urls(settings)?,
        network_types: vec![NetworkType::Udp4, NetworkType::Udp6],
        candidate_types: vec![
            CandidateType::Host,
            CandidateType::ServerReflexive,
            CandidateType::Relay,
        ],
        multicast_dns_mode: MulticastDnsMode::Disabled,
        is_controlling: controlling,
        include_loopback,
        // Link-local IPv6 addresses need a scope the agent cannot bind with.
        ip_filter: Arc::new(Some(Box::new(move |ip: IpAddr| {
            let link_local = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
            (include_loopback || !ip.is_loopback()) && !link_local
        }))),
        keepalive_interval: Some(KEEPALIVE),
        disconnected_timeout: Some(KEEPALIVE * 2),
        failed_timeout: Some(KEEPALIVE * 3),
        check_interval: Duration::from_millis(100),
        // How long the controlling agent lets better pairs answer before it
        // nominates a pair of each kind. webrtc-ice waits 0.5 s for
        // server-reflexive and 1 s for peer-reflexive pairs, which was most of the
        // first message's 1.2 s through NATs (BENCHMARKS.md); a host pair on a LAN
        // answers in milliseconds, so 200 ms leaves it ample time. Relayed pairs keep
        // webrtc-ice's 2 s: a direct pair must win where one exists.
        srflx_acceptance_min_wait: Some(DIRECT_ACCEPTANCE_WAIT),
        prflx_acceptance_min_wait: Some(DIRECT_ACCEPTANCE_WAIT),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("ICE agent: {e}"))?;
    let agent = Arc::new(agent);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    agent.on_candidate(Box::new(
        move |c: Option<Arc<dyn Candidate + Send + Sync>>| {
            if c.is_none() {
                let _ = done_tx.try_send(());
            }
            Box::pin(async {})
        },
    ));
    if let Err(e) = agent.gather_candidates() {
        let _ = agent.close().await;
        return Err(format!("gathering: {e}"));
    }
    let _ = tokio::time::timeout(GATHER_TIMEOUT, done_rx.recv()).await;
    let local = agent.get_local_candidates().await.unwrap_or_default();
    let candidates: Vec<IceCandidate> = local.iter().filter_map(|c| to_wire(c.as_ref())).collect();
    if candidates.is_empty() {
        let _ = agent.close().await;
        return Err("no ICE candidate was gathered".into());
    }
    let (ufrag, password) = agent.get_local_user_credentials().await;
    Ok(Gathered {
        agent,
        offer: IceOffer {
            ufrag,
            password,
            candidates,
        },
    })
}

impl Gathered {
    /// Closes the agent unused (its sockets and TURN allocations).
    pub async fn close(self) {
        let _ = self.agent.close().await;
    }

    /// Runs the connectivity checks against `remote` and opens the reliable stream
    /// over the selected pair. Returns the stream (TLS still to be run on it) and
    /// the peer's address on the pair. A message on `cancel`, or its sender dropped,
    /// ends the checks (another path connected first); the agent is then closed,
    /// its sockets and TURN allocations with it.
    pub async fn connect(
        self,
        remote: RemoteIce,
        controlling: bool,
        cancel: mpsc::Receiver<()>,
    ) -> Result<(DuplexStream, SocketAddr), String> {
        let agent = self.agent.clone();
        let checks = self.establish(remote, controlling, cancel);
        let result = tokio::time::timeout(CHECK_TIMEOUT, checks)
            .await
            .unwrap_or_else(|_| Err("the ICE checks did not finish in time".into()));
        if result.is_err() {
            let _ = agent.close().await;
        }
        result
    }

    async fn establish(
        self,
        remote: RemoteIce,
        controlling: bool,
        cancel_rx: mpsc::Receiver<()>,
    ) -> Result<(DuplexStream, SocketAddr), String> {
        for c in &remote.candidates {
            let Some(line) = sdp_line(c) else { continue };
            let Ok(parsed) = unmarshal_candidate(&line) else {
                continue;
            };
            let c: Arc<dyn Candidate + Send + Sync> = Arc::new(parsed);
            let _ = self.agent.add_remote_candidate(&c);
        }
        let conn: Arc<dyn Conn + Send + Sync> = if controlling {
            self.agent
                .dial(cancel_rx, remote.ufrag, remote.password)
                .await
                .map_err(|e| format!("ICE checks: {e}"))?
        } else {
            self.agent
                .accept(cancel_rx, remote.ufrag, remote.password)
                .await
                .map_err(|e| format!("ICE checks: {e}"))?
        };
        let peer = conn
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let config = SctpConfig {
            net_conn: conn,
            max_receive_buffer_size: 0,
            max_message_size: 0,
            mtu: 0,
            name: "xor-app".into(),
            remote_port: 5000,
            local_port: 5000,
        };
        // The answerer writes first (the TLS ClientHello), so it opens the stream.
        let (association, stream) = if controlling {
            let a = Association::server(config)
                .await
                .map_err(|e| format!("SCTP: {e}"))?;
            let s = a
                .accept_stream()
                .await
                .ok_or_else(|| "SCTP: no stream came".to_string())?;
            (a, s)
        } else {
            let a = Association::client(config)
                .await
                .map_err(|e| format!("SCTP: {e}"))?;
            let s = a
                .open_stream(1, PayloadProtocolIdentifier::Binary)
                .await
                .map_err(|e| format!("SCTP stream: {e}"))?;
            (a, s)
        };
        Ok((bridge(stream, Arc::new(association), self.agent), peer))
    }
}

/// A byte stream over the SCTP stream: two pump tasks between it and one end of an
/// in-memory pipe. When either side ends, the association and the agent close.
fn bridge(
    stream: Arc<SctpStream>,
    association: Arc<Association>,
    agent: Arc<Agent>,
) -> DuplexStream {
    let (app, ours) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let out = stream.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while out.buffered_amount() > MAX_BUFFERED {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if out.write(&Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                break;
            }
        }
        let _ = out.shutdown(std::net::Shutdown::Both).await;
    });
    tokio::spawn(async move {
        // Larger than any message the peer may send (SCTP's default maximum).
        let mut buf = vec![0u8; 65536];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if wr.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = wr.shutdown().await;
        let _ = association.close().await;
        let _ = agent.close().await;
    });
    app
}

/// A gathered candidate as §6.5.1.1 encodes it (link type DTLS-UDP-SR: the only ICE
/// link type the registry has; see README Decisions). Peer-reflexive candidates are
/// learned during checks and never sent.
fn to_wire(c: &(dyn Candidate + Send + Sync)) -> Option<IceCandidate> {
    let ip: IpAddr = c.address().parse().ok()?;
    let addr = SocketAddr::new(ip, c.port());
    let related = || {
        let r = c.related_address();
        let a = r
            .and_then(|r| Some(SocketAddr::new(r.address.parse().ok()?, r.port)))
            .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
        IpAddressPort::Addr(a)
    };
    let cand_type = match c.candidate_type() {
        CandidateType::Host => CandType::Host,
        CandidateType::ServerReflexive => CandType::Srflx(related()),
        CandidateType::Relay => CandType::Relay(related()),
        _ => return None,
    };
    Some(IceCandidate {
        addr_port: IpAddressPort::Addr(addr),
        overlay_link: link_type::DTLS_UDP_SR,
        foundation: Bytes::from(c.foundation()),
        priority: c.priority(),
        cand_type,
        extensions: Vec::new(),
    })
}

/// A peer's candidate as the SDP `candidate` attribute value `webrtc-ice` reads
/// (RFC 8839 §5.1); `None` for what it cannot express.
fn sdp_line(c: &IceCandidate) -> Option<String> {
    let addr = c.socket_addr()?;
    // Foundations are 1 – 32 ice-chars; anything else is replaced by a hex digest.
    let foundation = match std::str::from_utf8(&c.foundation) {
        Ok(f)
            if !f.is_empty()
                && f.len() <= 32
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') =>
        {
            f.to_owned()
        }
        _ => hex::encode(&c.foundation[..c.foundation.len().min(16)]),
    };
    let foundation = if foundation.is_empty() {
        "0".to_owned()
    } else {
        foundation
    };
    let (typ, related) = match &c.cand_type {
        CandType::Host => ("host", None),
        CandType::Srflx(r) => ("srflx", Some(r)),
        CandType::Relay(r) => ("relay", Some(r)),
    };
    let mut line = format!(
        "{foundation} 1 udp {} {} {} typ {typ}",
        c.priority,
        addr.ip(),
        addr.port()
    );
    if let Some(IpAddressPort::Addr(r)) = related {
        line.push_str(&format!(" raddr {} rport {}", r.ip(), r.port()));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> IceSettings {
        IceSettings {
            stun: Vec::new(),
            turn: Vec::new(),
            include_loopback: true,
            serve: None,
        }
    }

    fn remote(g: &Gathered) -> RemoteIce {
        RemoteIce {
            ufrag: g.offer.ufrag.clone(),
            password: g.offer.password.clone(),
            candidates: g.offer.candidates.clone(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_agents_connect_over_loopback_and_the_stream_carries_bytes_both_ways() {
        let (a, b) = (
            gather(&loopback(), true).await,
            gather(&loopback(), false).await,
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let (ra, rb) = (remote(&b), remote(&a));
        let (_keep_a, checks_a) = mpsc::channel(1);
        let (_keep_b, checks_b) = mpsc::channel(1);
        // The controlling side's SCTP stream appears when the other side first writes.
        let controlling = tokio::spawn(a.connect(ra, true, checks_a));
        let (mut y, _) = b.connect(rb, false, checks_b).await.unwrap();
        y.write_all(b"from the answerer").await.unwrap();
        let (mut x, peer) = controlling.await.unwrap().unwrap();
        assert!(
            peer.ip().is_loopback() || !peer.ip().is_unspecified(),
            "{peer}"
        );
        let mut buf = [0u8; 17];
        x.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"from the answerer");
        x.write_all(b"and back").await.unwrap();
        let mut buf = [0u8; 8];
        y.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"and back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_ends_the_checks_before_their_deadline() {
        let (a, b) = (
            gather(&loopback(), true).await,
            gather(&loopback(), false).await,
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        // Another path connected: the checks stop (the peer never answers them).
        let (cancel, checks) = mpsc::channel(1);
        cancel.send(()).await.unwrap();
        let err = a.connect(remote(&b), true, checks).await.unwrap_err();
        assert!(!err.contains("did not finish in time"), "{err}");
        b.close().await;
    }

    /// A peer that sends candidates and then never answers a check: the checks end
    /// at [`CHECK_TIMEOUT`] with a clear error, and another pair connects meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_with_a_peer_that_never_answers_end_at_their_deadline() {
        let (a, silent) = (
            gather(&loopback(), true).await.unwrap(),
            gather(&loopback(), false).await.unwrap(),
        );
        let remote_silent = remote(&silent);
        // The silent peer's agent is gone: its ports answer nothing.
        silent.close().await;
        let (_keep, checks) = mpsc::channel(1);
        let started = tokio::time::Instant::now();
        let hung = tokio::spawn(a.connect(remote_silent, true, checks));

        let (c, d) = (
            gather(&loopback(), true).await.unwrap(),
            gather(&loopback(), false).await.unwrap(),
        );
        let (rc, rd) = (remote(&d), remote(&c));
        let (_keep_c, checks_c) = mpsc::channel(1);
        let (_keep_d, checks_d) = mpsc::channel(1);
        let controlling = tokio::spawn(c.connect(rc, true, checks_c));
        let (mut y, _) = d.connect(rd, false, checks_d).await.unwrap();
        y.write_all(b"meanwhile").await.unwrap();
        let (mut x, _) = controlling.await.unwrap().unwrap();
        let mut buf = [0u8; 9];
        x.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"meanwhile");
        assert!(
            !hung.is_finished(),
            "the silent pair is still being checked"
        );

        let err = hung.await.unwrap().unwrap_err();
        assert!(err.contains("did not finish in time"), "{err}");
        let took = started.elapsed();
        assert!(
            took >= CHECK_TIMEOUT && took < CHECK_TIMEOUT + Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn candidates_read_back_as_the_sdp_lines_webrtc_ice_parses() {
        let c = IceCandidate {
            addr_port: IpAddressPort::Addr("203.0.113.7:40000".parse().unwrap()),
            overlay_link: link_type::DTLS_UDP_SR,
            foundation: Bytes::from_static(b"abc123"),
            priority: 1_694_498_815,
            cand_type: CandType::Srflx(IpAddressPort::Addr("10.0.0.2:5000".parse().unwrap())),
            extensions: Vec::new(),
        };
        let line = sdp_line(&c).unwrap();
        assert_eq!(
            line,
            "abc123 1 udp 1694498815 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 5000"
        );
        let parsed = unmarshal_candidate(&line).unwrap();
        let back = to_wire(&parsed).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_hostile_foundation_cannot_inject_sdp_fields() {
        let c = IceCandidate {
            addr_port: IpAddressPort::Addr("198.51.100.1:1".parse().unwrap()),
            overlay_link: link_type::DTLS_UDP_SR,
            foundation: Bytes::from_static(b"x 1 udp 9 1.2.3.4 5 typ relay"),
            priority: 1,
            cand_type: CandType::Host,
            extensions: Vec::new(),
        };
        let line = sdp_line(&c).unwrap();
        let parsed = unmarshal_candidate(&line).unwrap();
        assert_eq!(parsed.address(), "198.51.100.1");
        assert_eq!(parsed.candidate_type(), CandidateType::Host);
    }
}
