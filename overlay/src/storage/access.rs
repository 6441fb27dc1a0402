//! Access-control policies (§7.3) as a trait, so usages can add their own.

use crate::id::ResourceId;
use crate::identity::VerifiedSigner;
use crate::wire::StoredDataValue;

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
