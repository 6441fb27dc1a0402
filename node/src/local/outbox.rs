//! Stanzas from the user's clients on their way into the overlay. RFC 6120 §10.1
//! wants them delivered in the order they were sent, and a client that sends faster
//! than the overlay delivers must be slowed down rather than have stanzas dropped:
//! each recipient (bare JID) has a lane, a bounded queue worked by one task, so one
//! slow or unreachable recipient does not hold up the others; a full lane makes the
//! session wait, which stops reading from the client's socket (TCP back-pressure).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::Element;
use tokio::sync::mpsc;
use xor_xmpp::stanza;

use super::lock;

/// Stanzas queued for one recipient before the sender waits.
pub const LANE_CAPACITY: usize = 256;
/// A lane with nothing to do for this long is closed.
const LANE_IDLE: Duration = Duration::from_secs(60);

/// What a lane does with each stanza, in order.
pub type Process = Arc<dyn Fn(Element) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

type Lanes = Arc<Mutex<HashMap<String, mpsc::Sender<Element>>>>;

/// The per-recipient queues.
pub struct Outbox {
    staged: Mutex<Vec<Element>>,
    lanes: Lanes,
    process: Process,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("lanes", &lock(&self.lanes).len())
            .finish()
    }
}

impl Outbox {
    /// An outbox handing every stanza to `process`.
    pub fn new(process: Process) -> Outbox {
        Outbox {
            staged: Mutex::new(Vec::new()),
            lanes: Arc::new(Mutex::new(HashMap::new())),
            process,
        }
    }

    /// Queues `el` until the next [`Outbox::flush`] (for code that cannot wait).
    pub fn stage(&self, el: Element) {
        lock(&self.staged).push(el);
    }

    /// Moves everything staged into its lane, waiting while a lane is full.
    pub async fn flush(&self) {
        let items = std::mem::take(&mut *lock(&self.staged));
        for el in items {
            self.push(el).await;
        }
    }

    async fn push(&self, mut el: Element) {
        let key = stanza::to(&el).map(|j| j.bare_str()).unwrap_or_default();
        loop {
            let tx = lock(&self.lanes)
                .entry(key.clone())
                .or_insert_with(|| self.open(key.clone()))
                .clone();
            match tx.send(el).await {
                Ok(()) => return,
                // The lane closed itself for idleness just now: open a new one.
                Err(mpsc::error::SendError(back)) => {
                    el = back;
                    let mut lanes = lock(&self.lanes);
                    if lanes.get(&key).is_some_and(|t| t.same_channel(&tx)) {
                        lanes.remove(&key);
                    }
                }
            }
        }
    }

    fn open(&self, key: String) -> mpsc::Sender<Element> {
        let (tx, mut rx) = mpsc::channel(LANE_CAPACITY);
        let process = self.process.clone();
        let lanes = self.lanes.clone();
        let mine = tx.clone();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(LANE_IDLE, rx.recv()).await {
                    Ok(Some(el)) => process(el).await,
                    Ok(None) => return,
                    Err(_) => {
                        let mut map = lock(&lanes);
                        if rx.is_empty() {
                            if map.get(&key).is_some_and(|t| t.same_channel(&mine)) {
                                map.remove(&key);
                            }
                            return;
                        }
                    }
                }
            }
        });
        tx
    }
}
