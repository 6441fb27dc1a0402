//! The XMPP-LOCATION Kind (XEP-0415): a dictionary at the overlay hash of the prepared
//! bare JID, keyed by the storing device's Node-ID, under USER-NODE-MATCH where the
//! user is the certificate's `id-on-xmppAddr`.
//!
//! The storing peer does not apply PRECIS: it hashes the `id-on-xmppAddr` strings of the
//! signer's certificate exactly as they are; preparing the JID is the job of whoever
//! stores (and whoever issued the certificate).

use xor_overlay::id::ResourceId;
use xor_overlay::identity::VerifiedSigner;
use xor_overlay::storage::{AccessControl, KindDef, Policy, name_matches};
use xor_overlay::wire::{DataModel, KindId, StoredDataValue};

use crate::jid::Jid;

/// The Kind-ID the XEP registers; an overlay's configuration may choose another.
pub const XMPP_LOCATION: KindId = 0x5;

/// USER-NODE-MATCH on the `id-on-xmppAddr`: the value's key is the signer's Node-ID
/// and one of the signer's XMPP addresses hashes to the resource.
#[derive(Debug, Clone, Copy, Default)]
pub struct XmppAddrNodeMatch;

impl AccessControl for XmppAddrNodeMatch {
    fn name(&self) -> &str {
        "USER-NODE-MATCH"
    }

    fn permits(
        &self,
        resource: ResourceId,
        value: &StoredDataValue,
        signer: &VerifiedSigner,
    ) -> bool {
        let StoredDataValue::Dictionary { key, .. } = value else {
            return false;
        };
        key.as_ref() == signer.node_id.to_be_bytes()
            && signer
                .identity
                .xmpp_addrs
                .iter()
                .any(|jid| name_matches(jid, resource))
    }
}

/// The XMPP-LOCATION Kind with `id` and limits.
pub fn xmpp_location_kind(id: KindId, max_count: u32, max_size: u32) -> KindDef {
    KindDef {
        id,
        name: "XMPP-LOCATION".into(),
        model: DataModel::Dictionary,
        policy: Policy::Custom(std::sync::Arc::new(XmppAddrNodeMatch)),
        max_count,
        max_size,
    }
}

/// The Resource-ID of a user: the overlay hash of the prepared bare JID.
pub fn resource_of(jid: &Jid) -> ResourceId {
    ResourceId::of_name(jid.bare_str().as_bytes())
}
