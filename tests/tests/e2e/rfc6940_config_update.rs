//! A new configuration spreads through the overlay by ConfigUpdate (RFC 6940 §6.5.4,
//! §6.3.2.1) and its `bad-node` list is enforced: links to the bad node close, its
//! TLS handshakes and its stores are refused (§11.1). Forged and stale updates are
//! refused with the right error codes.

use std::time::Duration;

use bytes::Bytes;
use xor_enrollment::authority::DocumentAuthority;
use xor_enrollment::server::ServerSettings;
use xor_overlay::id::{NodeId, overlay_hash};
use xor_overlay::node::{ConfigAuthority, RequestError};
use xor_overlay::runtime::{Expect, Overlay, TlsContext};
use xor_overlay::wire::*;
use xor_tests::operator::{Operator, USER_NODE_KIND, node_config, template};
use xor_tests::{start, wait_stable};

const OVERLAY: &str = "update.test";

async fn wait_sequence(nodes: &[Overlay], seq: u16, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seqs: Vec<u16> = nodes.iter().map(|n| n.configuration().borrow().0).collect();
        if seqs.iter().all(|s| *s == seq) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("sequences {seqs:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn error_code(r: Result<xor_overlay::node::Answer, RequestError>) -> ErrorCode {
    match r {
        Err(RequestError::Error(e)) => e.code,
        other => panic!("expected an error response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_updates_spread_and_bad_nodes_are_shut_out_rfc6940_6_5_4() {
    let mut op = Operator::start(OVERLAY, &["capulet.test"], ServerSettings::default()).await;
    let doc1 = op.document.clone();
    let mut nodes: Vec<Overlay> = Vec::new();
    let mut creds = Vec::new();
    for i in 0..5u128 {
        let id = NodeId(i * (u128::MAX / 5) + 12_345);
        let c = op.credentials(&format!("user{i}@capulet.test"), id);
        creds.push(c.clone());
        let bootstrap = nodes.first().map(Overlay::local_addr);
        nodes.push(
            start(node_config(c, &doc1, bootstrap, i as u64 + 1))
                .await
                .unwrap(),
        );
    }
    wait_stable(&nodes, Duration::from_secs(30)).await.unwrap();

    // A forged document (one byte changed) is refused with Error_Forbidden.
    let mut forged = doc1.to_vec();
    let at = String::from_utf8_lossy(&forged)
        .find("<initial-ttl>")
        .unwrap()
        + 13;
    forged[at] = b'9';
    let to0 = vec![Destination::Node(nodes[0].node_id())];
    let body = Body::ConfigUpdateReq(ConfigUpdateReq::Config(Bytes::from(forged)));
    assert_eq!(
        error_code(nodes[1].request(to0.clone(), body).await),
        ErrorCode::Forbidden
    );

    // The operator bans node 4 in configuration 2, handed to node 0.
    let bad = nodes[4].node_id();
    let mut c = template(OVERLAY, &op.enroll_url());
    c.bad_nodes = vec![bad];
    let doc2 = op.republish(&c);
    let authority = DocumentAuthority::new(OVERLAY, None);
    let change = authority.verify_config(&doc1, &doc2, now()).unwrap();
    assert_eq!(change.sequence, 2);
    nodes[0].apply_config(change).await.unwrap();
    wait_sequence(&nodes[..4], 2, Duration::from_secs(20))
        .await
        .unwrap();
    for n in &nodes[..4] {
        assert_eq!(n.configuration().borrow().1.as_ref(), Some(&doc2));
    }

    // The old document is now stale: Error_Config_Too_Old.
    let body = Body::ConfigUpdateReq(ConfigUpdateReq::Config(doc1.clone()));
    assert_eq!(
        error_code(nodes[1].request(to0.clone(), body).await),
        ErrorCode::ConfigTooOld
    );

    // Nobody keeps node 4 as a neighbour, and its handshakes are refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut holding = false;
        for n in &nodes[..4] {
            let nb = n.neighbors().await.unwrap();
            holding |= nb.successors.contains(&bad) || nb.predecessors.contains(&bad);
        }
        if !holding {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 4 is still a neighbour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let doc = xor_enrollment::config::Document::parse(&doc1).unwrap();
    let old_trust =
        xor_enrollment::config::sign::trust_of(&doc.configuration(OVERLAY).unwrap().config)
            .unwrap();
    let tls = TlsContext::new(creds[4].clone(), old_trust).unwrap();
    // In TLS 1.3 the client's side completes before the server has judged the
    // client certificate: the refusal arrives as an alert on the first read.
    if let Ok((mut stream, _)) = tls
        .connect(nodes[0].local_addr(), Expect::Node(nodes[0].node_id()))
        .await
    {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Err(_)) | Ok(Ok(0))),
            "a bad node's handshake must fail, read {read:?}"
        );
    }

    // Its stores land nowhere in the overlay (at best in its own memory, alone).
    let resource = overlay_hash(b"user4@capulet.test");
    let key = Bytes::copy_from_slice(&bad.to_be_bytes());
    let value = StoredDataValue::Dictionary {
        key: key.clone(),
        value: DataValue::new(Bytes::from_static(b"still here?")),
    };
    let stored = tokio::time::timeout(
        Duration::from_secs(40),
        nodes[4].store(
            resource,
            vec![(USER_NODE_KIND, vec![value])],
            Duration::from_secs(60),
        ),
    )
    .await;
    if let Ok(Ok(ans)) = &stored {
        assert!(ans.kind_responses[0].replicas.is_empty(), "{ans:?}");
    }
    let spec = StoredDataSpecifier {
        kind: USER_NODE_KIND,
        generation: 0,
        model_specifier: ModelSpecifier::Dictionary(vec![key]),
    };
    for reader in &nodes[..4] {
        let ans = reader.fetch(resource, vec![spec.clone()]).await.unwrap();
        let values = ans.kind_responses[0].values.parsed();
        assert!(
            values.iter().all(|v| !v.value.data().exists),
            "{stored:?} {ans:?}"
        );
    }
    // The good nodes still work together under configuration 2.
    let value = StoredDataValue::Dictionary {
        key: Bytes::copy_from_slice(&nodes[1].node_id().to_be_bytes()),
        value: DataValue::new(Bytes::from_static(b"fine")),
    };
    nodes[1]
        .store(
            overlay_hash(b"user1@capulet.test"),
            vec![(USER_NODE_KIND, vec![value])],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
