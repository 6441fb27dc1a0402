//! Storage in virtual time, one test per rule: each access-control policy accepts its
//! legitimate writer and refuses wrong users, wrong nodes, wrong keys, unsigned values,
//! other keys' signatures and replays — with the RFC's error and the stored value
//! unchanged.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::id::{NodeId, ResourceId};
use crate::identity::testca::TestCa;
use crate::identity::{CertCache, Credentials, TrustStore, VerifiedSigner};
use crate::time::Instant;
use crate::wire::*;

const OVERLAY: &str = "store.example";
const UNIX: i64 = 1_800_000_000;
const USER: KindId = 100;
const NODE: KindId = 101;
const USER_NODE: KindId = 102;
const MULTI: KindId = 103;
const LIST: KindId = 104;

struct World {
    trust: TrustStore,
    alice: Credentials,
    bob: Credentials,
    kinds: KindTable,
    storage: Storage,
    certs: CertCache,
}

fn world() -> World {
    let mut ca = TestCa::new(OVERLAY, 5);
    let alice = ca.node("alice@x.example", NodeId(0xa));
    let bob = ca.node("bob@x.example", NodeId(0xb));
    let mut kinds = KindTable::empty();
    let def = |id, model, policy| KindDef {
        id,
        name: format!("K{id}"),
        model,
        policy,
        max_count: 5,
        max_size: 100,
    };
    kinds.insert(def(USER, DataModel::Single, Policy::UserMatch));
    kinds.insert(def(NODE, DataModel::Single, Policy::NodeMatch));
    kinds.insert(def(USER_NODE, DataModel::Dictionary, Policy::UserNodeMatch));
    kinds.insert(def(MULTI, DataModel::Single, Policy::NodeMultiple(3)));
    kinds.insert(def(LIST, DataModel::Array, Policy::UserMatch));
    World {
        trust: ca.trust_store(),
        alice,
        bob,
        kinds,
        storage: Storage::default(),
        certs: CertCache::new(8),
    }
}

fn alice_res() -> ResourceId {
    ResourceId::of_name(b"alice@x.example")
}

fn signed(
    c: &Credentials,
    r: ResourceId,
    kind: KindId,
    t: u64,
    value: StoredDataValue,
) -> StoredData {
    let signature = c.sign_value(r, kind, t, &value);
    StoredData {
        storage_time: t,
        lifetime: 60,
        value,
        signature,
    }
}

fn single(v: &'static [u8]) -> StoredDataValue {
    StoredDataValue::Single(DataValue::new(Bytes::from_static(v)))
}

fn req(r: ResourceId, kinds: Vec<(KindId, u64, Vec<StoredData>)>) -> StoreReq {
    StoreReq {
        resource: r,
        replica_number: 0,
        kind_data: kinds
            .into_iter()
            .map(|(kind, generation_counter, v)| StoreKindData {
                kind,
                generation_counter,
                values: KindValues::Parsed(v),
            })
            .collect(),
    }
}

impl World {
    fn signer(&mut self, c: &Credentials) -> VerifiedSigner {
        let bucket = c.certificates();
        let d = signed(c, ResourceId(1), 1, 1, single(b"x"));
        self.certs
            .verify_value(&self.trust, ResourceId(1), 1, &d, &bucket, UNIX)
            .unwrap()
    }

    /// Stores `req` as `requester` at time `now` with the requester's and `extra`
    /// certificates in the bucket.
    fn store_as(
        &mut self,
        requester: &Credentials,
        req: &StoreReq,
        now: Instant,
    ) -> Result<Vec<StoreKindResponse>, ErrorResponse> {
        self.store_with(requester, req, now, false)
    }

    fn store_with(
        &mut self,
        requester: &Credentials,
        req: &StoreReq,
        now: Instant,
        replica: bool,
    ) -> Result<Vec<StoreKindResponse>, ErrorResponse> {
        let signer = self.signer(requester);
        let mut bucket = self.alice.certificates();
        bucket.extend(self.bob.certificates());
        let World {
            trust,
            certs,
            kinds,
            storage,
            ..
        } = self;
        let r = req.resource;
        let mut verify = |kind, sd: &StoredData| {
            certs
                .verify_value(trust, r, kind, sd, &bucket, UNIX)
                .map(|s| (s, vec![]))
        };
        let ctx = StoreContext {
            kinds,
            now,
            request_signer: &signer,
            replica,
        };
        storage.store(req, &ctx, &mut verify)
    }

    fn value(&self, r: ResourceId, kind: KindId) -> Option<KindData> {
        self.storage.get(r, kind).cloned()
    }
}

fn code(r: Result<Vec<StoreKindResponse>, ErrorResponse>) -> ErrorCode {
    r.expect_err("must be refused").code
}

/// Stores a first value, then checks `attempt` is refused with `expected` and leaves the
/// stored value as it was.
fn refused(
    w: &mut World,
    r: ResourceId,
    kind: KindId,
    first: StoredData,
    as_: Credentials,
    attempt: StoredData,
    expected: ErrorCode,
) {
    let alice = w.alice.clone();
    w.store_as(&alice, &req(r, vec![(kind, 0, vec![first])]), Instant::ZERO)
        .expect("the legitimate store succeeds");
    let before = w.value(r, kind);
    assert_eq!(
        code(w.store_as(&as_, &req(r, vec![(kind, 0, vec![attempt])]), Instant::ZERO)),
        expected
    );
    assert_eq!(w.value(r, kind), before, "stored value unchanged");
}

#[test]
fn user_match_refuses_another_user_rfc6940_7_3_1() {
    let mut w = world();
    let (a, b) = (w.alice.clone(), w.bob.clone());
    let good = signed(&a, alice_res(), USER, 10, single(b"mine"));
    let by_bob = signed(&b, alice_res(), USER, 11, single(b"bob's"));
    refused(
        &mut w,
        alice_res(),
        USER,
        good,
        b,
        by_bob,
        ErrorCode::Forbidden,
    );
}

#[test]
fn node_match_refuses_another_node_rfc6940_7_3_2() {
    let mut w = world();
    let (a, b) = (w.alice.clone(), w.bob.clone());
    let r = node_resource(NodeId(0xa));
    let good = signed(&a, r, NODE, 10, single(b"node a"));
    let by_bob = signed(&b, r, NODE, 11, single(b"node b"));
    refused(&mut w, r, NODE, good, b, by_bob, ErrorCode::Forbidden);
}

fn entry(key: &[u8], v: &'static [u8]) -> StoredDataValue {
    StoredDataValue::Dictionary {
        key: Bytes::copy_from_slice(key),
        value: DataValue::new(Bytes::from_static(v)),
    }
}

#[test]
fn user_node_match_refuses_a_wrong_dictionary_key_rfc6940_7_3_3() {
    let mut w = world();
    let a = w.alice.clone();
    let good = signed(
        &a,
        alice_res(),
        USER_NODE,
        10,
        entry(&NodeId(0xa).to_be_bytes(), b"route"),
    );
    // Alice writes under Node-ID 0xb's key: refused.
    let wrong_key = signed(
        &a,
        alice_res(),
        USER_NODE,
        11,
        entry(&NodeId(0xb).to_be_bytes(), b"route"),
    );
    refused(
        &mut w,
        alice_res(),
        USER_NODE,
        good,
        a,
        wrong_key,
        ErrorCode::Forbidden,
    );
}

#[test]
fn user_node_match_refuses_another_user_rfc6940_7_3_3() {
    let mut w = world();
    let (a, b) = (w.alice.clone(), w.bob.clone());
    let good = signed(
        &a,
        alice_res(),
        USER_NODE,
        10,
        entry(&NodeId(0xa).to_be_bytes(), b"route"),
    );
    let bob = signed(
        &b,
        alice_res(),
        USER_NODE,
        11,
        entry(&NodeId(0xb).to_be_bytes(), b"hijack"),
    );
    refused(
        &mut w,
        alice_res(),
        USER_NODE,
        good,
        b,
        bob,
        ErrorCode::Forbidden,
    );
}

#[test]
fn node_multiple_accepts_indices_up_to_the_maximum_rfc6940_7_3_4() {
    let mut w = world();
    let a = w.alice.clone();
    for i in 1..=3 {
        let r = node_multiple_resource(NodeId(0xa), i);
        w.store_as(
            &a,
            &req(
                r,
                vec![(MULTI, 0, vec![signed(&a, r, MULTI, 10, single(b"turn"))])],
            ),
            Instant::ZERO,
        )
        .unwrap_or_else(|e| panic!("i = {i}: {e}"));
    }
    let r4 = node_multiple_resource(NodeId(0xa), 4);
    assert_eq!(
        code(w.store_as(
            &a,
            &req(
                r4,
                vec![(MULTI, 0, vec![signed(&a, r4, MULTI, 10, single(b"turn"))])]
            ),
            Instant::ZERO
        )),
        ErrorCode::Forbidden
    );
}

#[test]
fn unsigned_values_are_refused_rfc6940_7_4_1_1() {
    let mut w = world();
    let a = w.alice.clone();
    let good = signed(&a, alice_res(), USER, 10, single(b"mine"));
    let mut unsigned = signed(&a, alice_res(), USER, 11, single(b"forged"));
    unsigned.signature = Signature::anonymous();
    refused(
        &mut w,
        alice_res(),
        USER,
        good,
        a,
        unsigned,
        ErrorCode::Forbidden,
    );
}

#[test]
fn a_signature_by_another_key_is_refused_rfc6940_7_1() {
    let mut w = world();
    let (a, b) = (w.alice.clone(), w.bob.clone());
    let good = signed(&a, alice_res(), USER, 10, single(b"mine"));
    // Claims Alice's certificate, signed with Bob's key.
    let mut forged = signed(&a, alice_res(), USER, 11, single(b"forged"));
    forged.signature.value = signed(&b, alice_res(), USER, 11, single(b"forged"))
        .signature
        .value;
    refused(
        &mut w,
        alice_res(),
        USER,
        good,
        a,
        forged,
        ErrorCode::Forbidden,
    );
}

#[test]
fn a_replayed_older_value_is_data_too_old_rfc6940_7() {
    let mut w = world();
    let a = w.alice.clone();
    let old = signed(&a, alice_res(), USER, 10, single(b"old"));
    let new = signed(&a, alice_res(), USER, 20, single(b"new"));
    w.store_as(
        &a,
        &req(alice_res(), vec![(USER, 0, vec![old.clone()])]),
        Instant::ZERO,
    )
    .unwrap();
    refused(
        &mut w,
        alice_res(),
        USER,
        new,
        a,
        old,
        ErrorCode::DataTooOld,
    );
}

#[test]
fn a_replica_keeps_newer_values_and_adds_the_missing_ones_rfc6940_10_4() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    let item = |i: u32, t: u64, v: &'static [u8]| {
        let value = StoredDataValue::Array {
            index: i,
            value: DataValue::new(Bytes::from_static(v)),
        };
        signed(&a, r, LIST, t, value)
    };
    w.store_as(
        &a,
        &req(r, vec![(LIST, 0, vec![item(0, 20, b"newer")])]),
        Instant::ZERO,
    )
    .unwrap();
    // A replica from a peer with an older copy of entry 0 and an entry 1 this node
    // lacks: entry 1 is added, entry 0 stays the newer one.
    let mut replica = req(
        r,
        vec![(LIST, 3, vec![item(0, 10, b"older"), item(1, 11, b"new")])],
    );
    replica.replica_number = 1;
    w.store_with(&a, &replica, Instant::ZERO, true).unwrap();
    let data = w.value(r, LIST).unwrap();
    let times: Vec<(u64, Bytes)> = data
        .entries
        .iter()
        .map(|e| match &e.data.value {
            StoredDataValue::Array { value, .. } => (e.data.storage_time, value.value.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        times,
        vec![
            (20, Bytes::from_static(b"newer")),
            (11, Bytes::from_static(b"new"))
        ]
    );
    // An ordinary store of an older value is still refused.
    assert_eq!(
        code(w.store_as(
            &a,
            &req(r, vec![(LIST, 0, vec![item(0, 15, b"rollback")])]),
            Instant::ZERO
        )),
        ErrorCode::DataTooOld
    );
}

#[test]
fn generation_counter_too_low_names_the_current_counter_rfc6940_7_4_1_2() {
    let mut w = world();
    let a = w.alice.clone();
    let gen1 = w
        .store_as(
            &a,
            &req(
                alice_res(),
                vec![(
                    USER,
                    0,
                    vec![signed(&a, alice_res(), USER, 10, single(b"v1"))],
                )],
            ),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(gen1[0].generation_counter, 1);
    let gen2 = w
        .store_as(
            &a,
            &req(
                alice_res(),
                vec![(
                    USER,
                    1,
                    vec![signed(&a, alice_res(), USER, 11, single(b"v2"))],
                )],
            ),
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(gen2[0].generation_counter, 2);
    let stale = w.store_as(
        &a,
        &req(
            alice_res(),
            vec![(
                USER,
                1,
                vec![signed(&a, alice_res(), USER, 12, single(b"v3"))],
            )],
        ),
        Instant::ZERO,
    );
    let e = stale.unwrap_err();
    assert_eq!(e.code, ErrorCode::GenerationCounterTooLow);
    let info = StoreAns::decode(&e.info).unwrap();
    assert_eq!(info.kind_responses[0].generation_counter, 2);
    assert!(info.kind_responses[0].replicas.is_empty());
}

#[test]
fn a_store_of_several_kinds_is_all_or_nothing_rfc6940_7_4_1_1() {
    let mut w = world();
    let (a, b) = (w.alice.clone(), w.bob.clone());
    let r = alice_res();
    // The first Kind is fine, the second is Bob's forbidden write: nothing is stored.
    let mixed = req(
        r,
        vec![
            (USER, 0, vec![signed(&a, r, USER, 10, single(b"ok"))]),
            (
                LIST,
                0,
                vec![signed(
                    &b,
                    r,
                    LIST,
                    10,
                    StoredDataValue::Array {
                        index: 0,
                        value: DataValue::new(&b"no"[..]),
                    },
                )],
            ),
        ],
    );
    assert_eq!(
        code(w.store_as(&a, &mixed, Instant::ZERO)),
        ErrorCode::Forbidden
    );
    assert_eq!(w.value(r, USER), None, "the good Kind was rolled back too");
}

#[test]
fn unknown_kinds_are_listed_in_error_info_rfc6940_7_4_1_2() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    let e = w
        .store_as(
            &a,
            &req(
                r,
                vec![(USER, 0, vec![]), (999, 0, vec![]), (998, 0, vec![])],
            ),
            Instant::ZERO,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownKind);
    assert_eq!(
        UnknownKinds::decode(&e.info).unwrap(),
        UnknownKinds(vec![999, 998])
    );
}

#[test]
fn values_over_max_size_or_max_count_are_data_too_large_rfc6940_7_4_1_2() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    let big = StoredDataValue::Single(DataValue::new(vec![0u8; 101]));
    assert_eq!(
        code(w.store_as(
            &a,
            &req(r, vec![(USER, 0, vec![signed(&a, r, USER, 10, big)])]),
            Instant::ZERO
        )),
        ErrorCode::DataTooLarge
    );
    let six: Vec<StoredData> = (0..6)
        .map(|i| {
            signed(
                &a,
                r,
                LIST,
                10,
                StoredDataValue::Array {
                    index: i,
                    value: DataValue::new(&b"x"[..]),
                },
            )
        })
        .collect();
    assert_eq!(
        code(w.store_as(&a, &req(r, vec![(LIST, 0, six)]), Instant::ZERO)),
        ErrorCode::DataTooLarge
    );
}

#[test]
fn a_value_disappears_at_its_lifetime_not_before_rfc6940_7() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    w.store_as(
        &a,
        &req(
            r,
            vec![(USER, 0, vec![signed(&a, r, USER, 10, single(b"60s"))])],
        ),
        Instant::from_secs(100),
    )
    .unwrap();
    assert_eq!(w.storage.next_expiry(), Some(Instant::from_secs(160)));
    let fetch = FetchReq {
        resource: r,
        specifiers: vec![StoredDataSpecifier {
            kind: USER,
            generation: 0,
            model_specifier: ModelSpecifier::Single,
        }],
    };
    let exists = |w: &World, at: u64| {
        let (ans, _) = w
            .storage
            .fetch(&fetch, &w.kinds, Instant::from_secs(at))
            .unwrap();
        ans.kind_responses[0].values.parsed()[0].value.data().exists
    };
    w.storage.expire(Instant::from_micros(159_999_999));
    assert!(exists(&w, 159), "still there a moment before");
    w.storage.expire(Instant::from_secs(160));
    assert!(!exists(&w, 160), "gone at its lifetime");
    assert_eq!(w.storage.values(), 0);
}

#[test]
fn removal_stores_a_nonexistent_value_rfc6940_7_4_1_3() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    w.store_as(
        &a,
        &req(
            r,
            vec![(USER, 0, vec![signed(&a, r, USER, 10, single(b"v"))])],
        ),
        Instant::ZERO,
    )
    .unwrap();
    let gone = StoredDataValue::Single(DataValue::absent());
    w.store_as(
        &a,
        &req(r, vec![(USER, 0, vec![signed(&a, r, USER, 11, gone)])]),
        Instant::ZERO,
    )
    .unwrap();
    let fetch = FetchReq {
        resource: r,
        specifiers: vec![StoredDataSpecifier {
            kind: USER,
            generation: 0,
            model_specifier: ModelSpecifier::Single,
        }],
    };
    let (ans, _) = w.storage.fetch(&fetch, &w.kinds, Instant::ZERO).unwrap();
    let v = &ans.kind_responses[0].values.parsed()[0];
    assert!(!v.value.data().exists);
    assert!(
        !v.signature.is_anonymous(),
        "a removal keeps the remover's signature"
    );
}

#[test]
fn fetch_synthesises_missing_values_and_appends_arrays_rfc6940_7_4_2() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    let at = |i, v: &'static [u8]| StoredDataValue::Array {
        index: i,
        value: DataValue::new(Bytes::from_static(v)),
    };
    let values = vec![
        signed(&a, r, LIST, 10, at(2, b"X")),
        signed(&a, r, LIST, 11, at(APPEND, b"Y")),
    ];
    w.store_as(&a, &req(r, vec![(LIST, 0, values)]), Instant::ZERO)
        .unwrap();
    let spec = |m| FetchReq {
        resource: r,
        specifiers: vec![StoredDataSpecifier {
            kind: LIST,
            generation: 0,
            model_specifier: m,
        }],
    };
    let (ans, _) = w
        .storage
        .fetch(
            &spec(ModelSpecifier::Array(vec![ArrayRange {
                first: 0,
                last: APPEND,
            }])),
            &w.kinds,
            Instant::ZERO,
        )
        .unwrap();
    let got: Vec<(u32, bool)> = ans.kind_responses[0]
        .values
        .parsed()
        .iter()
        .map(|v| match &v.value {
            StoredDataValue::Array { index, value } => (*index, value.exists),
            _ => panic!("array"),
        })
        .collect();
    assert_eq!(
        got,
        vec![(0, false), (1, false), (2, true), (3, true)],
        "[NA, NA, X, Y]"
    );
    // A dictionary: a missing key is synthesised; no keys fetches all.
    let d = signed(
        &a,
        r,
        USER_NODE,
        10,
        entry(&NodeId(0xa).to_be_bytes(), b"route"),
    );
    w.store_as(&a, &req(r, vec![(USER_NODE, 0, vec![d])]), Instant::ZERO)
        .unwrap();
    let dict = |keys: Vec<Bytes>| FetchReq {
        resource: r,
        specifiers: vec![StoredDataSpecifier {
            kind: USER_NODE,
            generation: 0,
            model_specifier: ModelSpecifier::Dictionary(keys),
        }],
    };
    let (all, _) = w
        .storage
        .fetch(&dict(vec![]), &w.kinds, Instant::ZERO)
        .unwrap();
    assert_eq!(all.kind_responses[0].values.parsed().len(), 1);
    let (missing, _) = w
        .storage
        .fetch(
            &dict(vec![Bytes::from_static(b"nope")]),
            &w.kinds,
            Instant::ZERO,
        )
        .unwrap();
    let v = &missing.kind_responses[0].values.parsed()[0];
    assert!(!v.value.data().exists && v.signature.is_anonymous());
    // The generation counter short-cuts an unchanged Kind.
    let generation = all.kind_responses[0].generation;
    let mut same = dict(vec![]);
    same.specifiers[0].generation = generation;
    assert!(
        w.storage
            .fetch(&same, &w.kinds, Instant::ZERO)
            .unwrap()
            .0
            .kind_responses[0]
            .values
            .parsed()
            .is_empty()
    );
}

const APPEND: u32 = crate::wire::store::APPEND_INDEX;

#[test]
fn huge_array_ranges_stay_bounded() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    let v = signed(
        &a,
        r,
        LIST,
        10,
        StoredDataValue::Array {
            index: 3,
            value: DataValue::new(&b"x"[..]),
        },
    );
    w.store_as(&a, &req(r, vec![(LIST, 0, vec![v])]), Instant::ZERO)
        .unwrap();
    let spec = FetchReq {
        resource: r,
        specifiers: vec![StoredDataSpecifier {
            kind: LIST,
            generation: 0,
            model_specifier: ModelSpecifier::Array(vec![ArrayRange {
                first: 0,
                last: 0xffff_fffe,
            }]),
        }],
    };
    let (ans, _) = w.storage.fetch(&spec, &w.kinds, Instant::ZERO).unwrap();
    assert_eq!(
        ans.kind_responses[0].values.parsed().len(),
        4,
        "stops at the array's end"
    );
}

#[test]
fn stat_and_find_rfc6940_7_4_3_and_7_4_4() {
    let mut w = world();
    let a = w.alice.clone();
    let r = alice_res();
    w.store_as(
        &a,
        &req(
            r,
            vec![(USER, 0, vec![signed(&a, r, USER, 10, single(b"abc"))])],
        ),
        Instant::ZERO,
    )
    .unwrap();
    let stat = FetchReq {
        resource: r,
        specifiers: vec![StoredDataSpecifier {
            kind: USER,
            generation: 0,
            model_specifier: ModelSpecifier::Single,
        }],
    };
    let ans = w.storage.stat(&stat, &w.kinds, Instant::ZERO).unwrap();
    let m = &ans.kind_responses[0].values.parsed()[0];
    assert_eq!(m.value_length, 3);
    let MetaDataValue::Single(meta) = &m.metadata else {
        panic!()
    };
    // SHA-256 of the value with its 4 length bytes.
    use sha2::Digest;
    assert_eq!(
        meta.hash_value.as_ref(),
        sha2::Sha256::digest([0, 0, 0, 3, b'a', b'b', b'c']).as_slice()
    );
    let find = w
        .storage
        .find(
            &FindReq {
                resource: ResourceId(r.0.wrapping_sub(5)),
                kinds: vec![USER, 999],
            },
            &w.kinds,
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(
        find.results,
        vec![
            FindKindData {
                kind: USER,
                closest: r
            },
            FindKindData {
                kind: 999,
                closest: ResourceId(0)
            }
        ]
    );
    assert_eq!(
        w.storage
            .find(
                &FindReq {
                    resource: r,
                    kinds: vec![USER, USER]
                },
                &w.kinds,
                Instant::ZERO
            )
            .unwrap_err()
            .code,
        ErrorCode::InvalidMessage
    );
}

#[test]
fn storage_is_bounded_by_the_configured_limits() {
    let mut w = world();
    w.storage = Storage::new(
        Box::<MemoryBackend>::default(),
        StorageLimits {
            max_bytes: 1 << 20,
            max_values: 2,
        },
    );
    let a = w.alice.clone();
    let r = alice_res();
    let v = |i| {
        signed(
            &a,
            r,
            LIST,
            10,
            StoredDataValue::Array {
                index: i,
                value: DataValue::new(&b"x"[..]),
            },
        )
    };
    w.store_as(
        &a,
        &req(r, vec![(LIST, 0, vec![v(0), v(1)])]),
        Instant::ZERO,
    )
    .unwrap();
    assert_eq!(
        code(w.store_as(&a, &req(r, vec![(LIST, 0, vec![v(2)])]), Instant::ZERO)),
        ErrorCode::DataTooLarge
    );
    assert_eq!(w.storage.values(), 2);
    let _ = Duration::ZERO;
}
