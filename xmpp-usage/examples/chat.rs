//! Serverless chat in a few lines: two users on a loopback overlay, one message.
//!
//! Run: `cargo run -p xor-xmpp --example chat`
//!
//! A game client does the same with its real overlay configuration and enrolled
//! credentials; here a throwaway CA issues them and the first device starts the
//! overlay.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // an example prints and aborts on failure

use std::time::Duration;

use xor_overlay::id::NodeId;
use xor_overlay::identity::testca::TestCa;
use xor_xmpp::runtime::{XmppConfig, XmppEvent, XmppNode};
use xor_xmpp::{Jid, stanza};

fn config(
    ca: &mut TestCa,
    jid: &str,
    resource: &str,
    id: u128,
    bootstrap: Option<std::net::SocketAddr>,
) -> XmppConfig {
    let creds = ca.node(jid, NodeId(id));
    let mut cfg = XmppConfig::new(
        &ca.overlay.clone(),
        creds,
        ca.trust_store(),
        Jid::parse(jid).unwrap(),
        resource,
    );
    cfg.node.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.stream_listen = "127.0.0.1:0".parse().unwrap();
    cfg.node.bootstrap = bootstrap.into_iter().collect();
    cfg.node.may_start_overlay = bootstrap.is_none();
    cfg
}

#[tokio::main]
async fn main() {
    let mut ca = TestCa::new("example.overlay", 1);
    let romeo = XmppNode::start(config(
        &mut ca,
        "romeo@montague.lit",
        "phone",
        1 << 126,
        None,
    ))
    .await
    .unwrap();
    let bootstrap = Some(romeo.overlay().local_addr());
    let juliet = XmppNode::start(config(
        &mut ca,
        "juliet@capulet.lit",
        "balcony",
        3 << 126,
        bootstrap,
    ))
    .await
    .unwrap();
    let mut inbox = juliet.events().await.unwrap();

    let report = romeo
        .send(stanza::chat(
            &Jid::parse("juliet@capulet.lit").unwrap(),
            "Wherefore art thou?",
        ))
        .await
        .unwrap();
    println!(
        "romeo sent to {} device(s) of juliet",
        report.delivered_to.len()
    );

    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await {
        match event {
            XmppEvent::DeviceConnected(d) => println!("juliet: direct stream to {} is up", d.jid),
            XmppEvent::Stanza(d) => {
                println!(
                    "juliet got from {}: {}",
                    d.stanza.attr("from").unwrap_or("?"),
                    stanza::body(&d.stanza).unwrap_or_default()
                );
                break;
            }
            XmppEvent::DeviceDisconnected(_) => {}
        }
    }
    juliet.shutdown().await;
    romeo.shutdown().await;
}
