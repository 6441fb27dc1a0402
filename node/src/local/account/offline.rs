//! Messages kept while no client is connected: bounded, stamped (XEP-0203, by the
//! caller), and — for a device with a profile — written to `offline.toml` in it on
//! every change, so a restart of the daemon does not lose them.
//!
//! The file is the node's own (owner-only, in the profile); each message was checked
//! against the stream limits (size, 32 levels) when it arrived.

use std::collections::VecDeque;
use std::path::PathBuf;

use minidom::Element;
use serde::{Deserialize, Serialize};

/// Messages kept, at most.
pub const OFFLINE_LIMIT: usize = 1000;
/// Bytes of kept messages (as XML), at most.
pub const OFFLINE_BYTES: usize = 8 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    message: Vec<String>,
}

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct OfflineQueue {
    items: VecDeque<String>,
    bytes: usize,
    dropped: u64,
    path: Option<PathBuf>,
}

impl OfflineQueue {
    /// A queue kept in `path`, with what it already holds.
    pub(crate) fn load(path: PathBuf) -> OfflineQueue {
        let mut q = OfflineQueue {
            path: Some(path.clone()),
            ..OfflineQueue::default()
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => match toml::from_str::<File>(&text) {
                Ok(f) => {
                    for m in f.message {
                        if m.parse::<Element>().is_ok() {
                            q.push_text(m);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable offline queue; starting empty")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the offline queue")
            }
        }
        q
    }

    fn push_text(&mut self, text: String) {
        self.bytes += text.len();
        self.items.push_back(text);
        while self.items.len() > OFFLINE_LIMIT || self.bytes > OFFLINE_BYTES {
            match self.items.pop_front() {
                Some(old) => {
                    self.bytes -= old.len();
                    self.dropped += 1;
                }
                None => break,
            }
        }
    }

    /// Keeps `el` (dropping the oldest beyond the limits).
    pub(crate) fn push(&mut self, el: &Element) {
        let text = String::from(el);
        self.push_text(text);
        self.save();
    }

    /// Everything kept, oldest first, and how many were dropped since the last time.
    pub(crate) fn drain(&mut self) -> (Vec<Element>, u64) {
        let out = self
            .items
            .drain(..)
            .filter_map(|t| t.parse::<Element>().ok())
            .collect();
        self.bytes = 0;
        let dropped = std::mem::take(&mut self.dropped);
        if self.path.is_some() {
            self.save();
        }
        (out, dropped)
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        if self.items.is_empty() {
            let _ = std::fs::remove_file(path);
            return;
        }
        let file = File {
            message: self.items.iter().cloned().collect(),
        };
        match toml::to_string(&file) {
            Ok(text) => {
                if let Err(e) = xor_enrollment::files::write_atomic(path, text.as_bytes(), true) {
                    tracing::warn!(error = %e, "cannot save the offline queue");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise the offline queue"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Element {
        xor_xmpp::stanza::chat(&xor_xmpp::Jid::parse("a@x.test").unwrap(), &n.to_string())
    }

    #[test]
    fn the_queue_survives_a_restart_and_keeps_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offline.toml");
        let mut q = OfflineQueue::load(path.clone());
        for n in 0..OFFLINE_LIMIT + 5 {
            q.push(&msg(n));
        }
        let mut again = OfflineQueue::load(path.clone());
        let (kept, _) = again.drain();
        assert_eq!(kept.len(), OFFLINE_LIMIT);
        assert_eq!(xor_xmpp::stanza::body(&kept[0]).as_deref(), Some("5"));
        assert!(!path.exists(), "drained: nothing left on disk");
        let (_, dropped) = q.drain();
        assert_eq!(dropped, 5);
        std::fs::write(&path, "message = 3").unwrap();
        assert_eq!(OfflineQueue::load(path).drain().0.len(), 0);
    }
}
