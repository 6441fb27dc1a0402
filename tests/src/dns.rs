//! A real authoritative DNS server (hickory-server) on loopback, for discovery tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// A running DNS server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the zone holds besides its SOA.
#[derive(Debug, Clone)]
pub enum Entry {
    /// `name A addr`.
    A(String, Ipv4Addr),
    /// `name SRV priority weight port target`.
    Srv(String, u16, u16, u16, String),
}

fn name(s: &str) -> Name {
    let fq = if s.ends_with('.') {
        s.to_owned()
    } else {
        format!("{s}.")
    };
    Name::from_ascii(&fq).expect("a valid DNS name")
}

/// Serves `zone` with `entries` on 127.0.0.1 (UDP and TCP on the same port).
pub async fn start_dns(zone: &str, entries: &[Entry]) -> DnsServer {
    let origin = name(zone);
    let mut handler: InMemoryZoneHandler =
        InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(
        name(&format!("ns.{zone}")),
        name(&format!("hostmaster.{zone}")),
        1,
        3600,
        600,
        86_400,
        60,
    );
    handler.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    for e in entries {
        let record = match e {
            Entry::A(n, ip) => Record::from_rdata(name(n), 60, RData::A(A(*ip))),
            Entry::Srv(n, prio, weight, port, target) => Record::from_rdata(
                name(n),
                60,
                RData::SRV(SRV::new(*prio, *weight, *port, name(target))),
            ),
        };
        handler.upsert_mut(record, 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::new(&origin),
        vec![Arc::new(handler) as Arc<dyn ZoneHandler>],
    );
    let mut server = Server::new(catalog);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP");
    let addr = udp.local_addr().expect("UDP address");
    let tcp = tokio::net::TcpListener::bind(addr).await.expect("bind TCP");
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    let task = tokio::spawn(async move {
        let _ = server.block_until_done().await;
    });
    DnsServer { addr, task }
}
