//! The user's roster (RFC 6121 §2), kept in a TOML file next to the profile. The node
//! is the user's "server": it answers roster requests and tracks subscriptions.

use crate::config::ConfigError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::roster as wire;
use xor_xmpp::Jid;

/// The subscription state of a contact (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    /// Neither sees the other's presence.
    #[default]
    None,
    /// We see theirs.
    To,
    /// They see ours.
    From,
    /// Both.
    Both,
}

impl Subscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The state an attribute names (`none` for anything else).
    pub fn from_attr(s: &str) -> Subscription {
        match s {
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => Subscription::None,
        }
    }

    /// Whether the contact may see our presence.
    pub fn they_see_us(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// Whether we see the contact's presence.
    pub fn we_see_them(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    fn with(self, to: bool, from: bool) -> Subscription {
        match (to, from) {
            (true, true) => Subscription::Both,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (false, false) => Subscription::None,
        }
    }

    /// With "we see them" set to `on`.
    pub fn set_to(self, on: bool) -> Subscription {
        Subscription::None.with(on, self.they_see_us())
    }

    /// With "they see us" set to `on`.
    pub fn set_from(self, on: bool) -> Subscription {
        Subscription::None.with(self.we_see_them(), on)
    }
}

/// One contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Item {
    /// The contact's bare JID.
    pub jid: String,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Subscription state.
    #[serde(default)]
    pub subscription: Subscription,
    /// We asked to see their presence and wait for an answer.
    #[serde(default)]
    pub ask: bool,
    /// They asked to see ours and wait for the user's answer.
    #[serde(default)]
    pub pending_in: bool,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Item {
    /// The `<item/>` of a roster result or push (RFC 6121 §2.1.2); `None` for a
    /// JID the `jid` crate cannot read (it is left out of what clients see).
    pub fn wire(&self) -> Option<wire::Item> {
        Some(wire::Item {
            jid: BareJid::new(&self.jid).ok()?,
            name: self.name.clone(),
            subscription: match self.subscription {
                Subscription::None => wire::Subscription::None,
                Subscription::To => wire::Subscription::To,
                Subscription::From => wire::Subscription::From,
                Subscription::Both => wire::Subscription::Both,
            },
            ask: if self.ask {
                wire::Ask::Subscribe
            } else {
                wire::Ask::None
            },
            groups: self.groups.iter().cloned().map(wire::Group).collect(),
            approved: None,
        })
    }
}

/// The push item of a removed contact (`subscription='remove'`, RFC 6121 §2.5.2).
pub fn removal(jid: &Jid) -> Option<wire::Item> {
    Some(wire::Item {
        jid: BareJid::new(&jid.bare_str()).ok()?,
        name: None,
        subscription: wire::Subscription::Remove,
        ask: wire::Ask::None,
        groups: Vec::new(),
        approved: None,
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    item: Vec<Item>,
}

/// The roster, saved on every change.
#[derive(Debug)]
pub struct Roster {
    path: Option<PathBuf>,
    items: BTreeMap<String, Item>,
}

/// Most contacts a roster holds.
pub const MAX_ITEMS: usize = 10_000;

impl Roster {
    /// A roster kept only in memory (the demo, tests).
    pub fn in_memory() -> Roster {
        Roster {
            path: None,
            items: BTreeMap::new(),
        }
    }

    /// Loads the roster at `path` (empty if the file does not exist yet).
    pub fn load(path: &Path) -> Result<Roster, ConfigError> {
        let items = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<File>(&text)
                .map_err(|e| ConfigError::from(e).in_file(path))?
                .item
                .into_iter()
                .map(|i| (i.jid.clone(), i))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(ConfigError::file(path)(e)),
        };
        Ok(Roster {
            path: Some(path.to_owned()),
            items,
        })
    }

    /// A roster kept in memory, from the text of [`Roster::to_toml`] (an embedding
    /// that keeps its own savedata).
    pub fn from_toml(text: &str) -> Result<Roster, ConfigError> {
        let file = toml::from_str::<File>(text)?;
        if file.item.len() > MAX_ITEMS {
            return Err(ConfigError::Invalid(format!(
                "more than {MAX_ITEMS} contacts"
            )));
        }
        Ok(Roster {
            path: None,
            items: file.item.into_iter().map(|i| (i.jid.clone(), i)).collect(),
        })
    }

    /// The roster as the roster file holds it.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let file = File {
            item: self.items.values().cloned().collect(),
        };
        toml::to_string(&file)
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        match self.to_toml() {
            Ok(text) => {
                if let Err(e) = xor_enrollment::files::write_atomic(path, text.as_bytes(), true) {
                    tracing::warn!(error = %e, "cannot save the roster");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise the roster"),
        }
    }

    /// Every contact.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// One contact.
    pub fn get(&self, jid: &Jid) -> Option<&Item> {
        self.items.get(&jid.bare_str())
    }

    /// Changes (or creates) a contact; returns the new item, or `None` when the roster
    /// is full.
    pub fn update(&mut self, jid: &Jid, f: impl FnOnce(&mut Item)) -> Option<Item> {
        let key = jid.bare_str();
        if !self.items.contains_key(&key) && self.items.len() >= MAX_ITEMS {
            return None;
        }
        let item = self.items.entry(key.clone()).or_insert_with(|| Item {
            jid: key,
            ..Item::default()
        });
        f(item);
        let item = item.clone();
        self.save();
        Some(item)
    }

    /// Removes a contact; whether it existed.
    pub fn remove(&mut self, jid: &Jid) -> bool {
        let existed = self.items.remove(&jid.bare_str()).is_some();
        self.save();
        existed
    }

    /// The `<query/>` of a roster result.
    pub fn query(&self) -> wire::Roster {
        wire::Roster {
            ver: None,
            items: self.items.values().filter_map(Item::wire).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_survives_a_restart_and_subscriptions_compose() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        let mut r = Roster::load(&path).unwrap();
        let bob = Jid::parse("bob@b.test/phone").unwrap();
        r.update(&bob, |i| {
            i.name = Some("Bob".into());
            i.subscription = i.subscription.set_to(true);
        });
        r.update(&bob, |i| i.subscription = i.subscription.set_from(true));
        let r2 = Roster::load(&path).unwrap();
        let item = r2.get(&bob).unwrap();
        assert_eq!(item.jid, "bob@b.test");
        assert_eq!(item.subscription, Subscription::Both);
        assert_eq!(item.name.as_deref(), Some("Bob"));
        assert_eq!(r2.query().items.len(), 1);
        std::fs::write(&path, "item = 3").unwrap();
        assert!(Roster::load(&path).is_err());
    }
}
