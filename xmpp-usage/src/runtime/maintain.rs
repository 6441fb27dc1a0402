//! What the driver does for the device core's upkeep (`device::upkeep` decides when):
//! stores the location record when asked, and stores the new route of a client that
//! moved to another peer.

use std::sync::Arc;

use tokio::sync::Notify;
use xor_overlay::node::JoinState;

use super::XmppNode;

/// Stores the location record each time the core asks ([`crate::device::Output::Register`])
/// and tells it how that went.
pub(crate) async fn registrations(node: XmppNode, register: Arc<Notify>) {
    loop {
        register.notified().await;
        let ok = match node.register(node.own_location()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "location refresh failed; retrying");
                false
            }
        };
        node.driver.registered(ok).await;
    }
}

/// A client that moved to another peer (§4.2.1) stores its new route at once, so the
/// others reach it through the peer that now routes to it.
pub(crate) async fn follow_client_peer(node: XmppNode) {
    let mut watch = node.overlay.state_watch();
    let mut registered = node.overlay.state();
    while watch.changed().await.is_ok() {
        let state = *watch.borrow_and_update();
        if matches!(state, JoinState::Client { .. }) && state != registered {
            match node.register(node.own_location()).await {
                Ok(()) => registered = state,
                Err(e) => {
                    tracing::warn!(error = %e, "storing the new route failed; the refresh retries")
                }
            }
        }
    }
}
