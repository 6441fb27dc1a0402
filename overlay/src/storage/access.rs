//! Access-control policies (§7.3). A policy decides whether a signer may write a value
//! at a resource; the four of RFC 6940 are built in and a usage can add its own by
//! implementing [`AccessControl`] (the XMPP usage matches the `id-on-xmppAddr`).
//!
//! Resource names are hashed with the overlay hash (§10.2): a user name as its UTF-8
//! bytes, a Node-ID as its 16 raw bytes (for NODE-MULTIPLE followed by the index `i` as a
//! 4-byte big-endian integer).

use crate::id::{NodeId, ResourceId, overlay_hash};
use crate::identity::VerifiedSigner;
use crate::wire::StoredDataValue;

use super::kinds::Policy;

/// Decides whether a signer may write a value at a resource.
pub trait AccessControl: Send + Sync {
    /// The policy's name in the configuration document.
    fn name(&self) -> &str;

    /// Whether `signer` may write `value` at `resource`.
    fn permits(
        &self,
        resource: ResourceId,
        value: &StoredDataValue,
        signer: &VerifiedSigner,
    ) -> bool;
}

/// Whether `name` hashes to `resource`.
pub fn name_matches(name: &str, resource: ResourceId) -> bool {
    overlay_hash(name.as_bytes()) == resource
}

/// The Resource-ID of a Node-ID (for NODE-MATCH and CERTIFICATE_BY_NODE, §7.3.2, §8).
pub fn node_resource(node: NodeId) -> ResourceId {
    overlay_hash(&node.to_be_bytes())
}

/// The Resource-ID of `H(Node-ID || i)` (NODE-MULTIPLE, §7.3.4).
pub fn node_multiple_resource(node: NodeId, i: u32) -> ResourceId {
    let mut input = node.to_be_bytes().to_vec();
    input.extend_from_slice(&i.to_be_bytes());
    overlay_hash(&input)
}

impl Policy {
    /// Whether `signer` may write `value` at `resource` under this policy (§7.3).
    pub fn permits(
        &self,
        resource: ResourceId,
        value: &StoredDataValue,
        signer: &VerifiedSigner,
    ) -> bool {
        let user_ok = || {
            signer
                .identity
                .user
                .as_deref()
                .is_some_and(|u| name_matches(u, resource))
        };
        match self {
            // §7.3.1: the certificate's user name hashes to the Resource-ID.
            Policy::UserMatch => user_ok(),
            // §7.3.2: the signing Node-ID hashes to the Resource-ID.
            Policy::NodeMatch => node_resource(signer.node_id) == resource,
            // §7.3.3: user name matches and the dictionary key is the signing Node-ID.
            Policy::UserNodeMatch => match value {
                StoredDataValue::Dictionary { key, .. } => {
                    user_ok() && key.as_ref() == signer.node_id.to_be_bytes()
                }
                _ => false,
            },
            // §7.3.4: H(Node-ID || i) for some 1 <= i <= max.
            Policy::NodeMultiple(max) => {
                (1..=*max).any(|i| node_multiple_resource(signer.node_id, i) == resource)
            }
            Policy::Custom(c) => c.permits(resource, value, signer),
        }
    }
}
