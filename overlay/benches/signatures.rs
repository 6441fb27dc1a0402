//! RELOAD signing and verification rates (§6.3.4).
//!
//! Run: `cargo bench -p xor-overlay --bench signatures`. Figures go in `BENCHMARKS.md`.

#![allow(clippy::unwrap_used)] // a benchmark aborts on any failure

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xor_overlay::id::NodeId;
use xor_overlay::identity::CertCache;
use xor_overlay::identity::sign::{message_signature_input, verify_with_cert};
use xor_overlay::identity::testca::TestCa;
use xor_overlay::wire::*;

fn bench(c: &mut Criterion) {
    let mut ca = TestCa::new("bench.example", 1);
    let creds = ca.node("bench@bench.example", NodeId(42));
    let trust = ca.trust_store();
    let contents = MessageContents {
        code: MessageCode::PING_REQ,
        body: Bytes::from(vec![0u8; 200]),
        extensions: vec![],
    };
    let encoded = contents.to_bytes().unwrap();
    let header = ForwardingHeader {
        overlay: 1,
        configuration_sequence: 0,
        ttl: 100,
        fragment: Fragment::WHOLE,
        transaction_id: 7,
        max_response_length: 0,
        via_list: vec![],
        destination_list: vec![Destination::Node(NodeId(1))],
        options: vec![],
    };
    let security = creds.security_block(1, 7, &encoded);
    let message = Message {
        header,
        contents,
        security,
    };
    let input = message_signature_input(1, 7, &encoded, &creds.signer_identity());
    let sig = message.security.signature.value.clone();

    let mut g = c.benchmark_group("signatures");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_message_ecdsa_p256", |b| {
        b.iter(|| creds.sign_message(1, black_box(7), &encoded))
    });
    g.bench_function("verify_signature_ecdsa_p256", |b| {
        b.iter(|| {
            verify_with_cert(
                creds.cert(),
                SignatureAndHashAlgorithm::ECDSA_SHA256,
                black_box(&input),
                &sig,
            )
        })
    });
    let mut cache = CertCache::new(16);
    g.bench_function("verify_message_cached_chain", |b| {
        b.iter(|| {
            cache
                .verify_message(&trust, black_box(&message), 1_800_000_000)
                .unwrap()
        })
    });
    g.bench_function("verify_message_cold_chain", |b| {
        b.iter(|| {
            CertCache::new(1)
                .verify_message(&trust, black_box(&message), 1_800_000_000)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
