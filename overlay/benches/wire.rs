//! Encode/decode throughput of typical storage messages (issue: wire codec).
//!
//! Run: `cargo bench -p xor-overlay --bench wire`. Criterion prints time per message
//! and MiB/s; messages/s is 1 / time. Figures are recorded in `BENCHMARKS.md`.

use std::collections::HashMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xor_overlay::id::ResourceId;
use xor_overlay::wire::codec::decode_all;
use xor_overlay::wire::{
    DataModel, DataValue, Encode, FetchAns, FetchKindResponse, KindId, KindValues, Signature,
    SignatureAndHashAlgorithm, SignerIdentity, StoreKindData, StoreReq, StoredData,
    StoredDataValue,
};

const XMPP_LOCATION: KindId = 5;

/// An ECDSA P-256 signature identified by a SHA-256 certificate hash: the sizes a real
/// signed value has.
fn signature() -> Signature {
    Signature {
        algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
        identity: SignerIdentity::CertHash {
            hash_alg: 4,
            hash: Bytes::from(vec![0x5a; 32]),
        },
        value: Bytes::from(vec![0xa5; 71]),
    }
}

/// One device's XMPP-LOCATION route: key = Node-ID, value = a 21-byte XmppLocation.
fn location(n: u8) -> StoredData {
    StoredData {
        storage_time: 1_790_000_000_000 + n as u64,
        lifetime: 3600,
        value: StoredDataValue::Dictionary {
            key: Bytes::from(vec![n; 16]),
            value: DataValue::new(Bytes::from(vec![n; 21])),
        },
        signature: signature(),
    }
}

/// A FetchAns for a user with three devices online.
fn fetch_ans() -> FetchAns {
    FetchAns {
        kind_responses: vec![FetchKindResponse {
            kind: XMPP_LOCATION,
            generation: 42,
            values: KindValues::Parsed((1..=3).map(location).collect()),
        }],
    }
}

/// A StoreReq registering one device.
fn store_req() -> StoreReq {
    StoreReq {
        resource: ResourceId::of_name(b"juliet@capulet.lit"),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: XMPP_LOCATION,
            generation_counter: 0,
            values: KindValues::Parsed(vec![location(7)]),
        }],
    }
}

fn bench(c: &mut Criterion) {
    let models: HashMap<KindId, DataModel> =
        HashMap::from([(XMPP_LOCATION, DataModel::Dictionary)]);

    let fetch = fetch_ans();
    let fetch_bytes = fetch.to_bytes().expect("encodes");
    let mut g = c.benchmark_group("fetch_ans");
    g.throughput(Throughput::Bytes(fetch_bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| black_box(&fetch).to_bytes()));
    g.bench_function("decode", |b| {
        b.iter(|| {
            decode_all(black_box(&fetch_bytes), |i| {
                FetchAns::parse_with(i, &models)
            })
        })
    });
    g.finish();

    let store = store_req();
    let store_bytes = store.to_bytes().expect("encodes");
    let mut g = c.benchmark_group("store_req");
    g.throughput(Throughput::Bytes(store_bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| black_box(&store).to_bytes()));
    g.bench_function("decode", |b| {
        b.iter(|| {
            decode_all(black_box(&store_bytes), |i| {
                StoreReq::parse_with(i, &models)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
