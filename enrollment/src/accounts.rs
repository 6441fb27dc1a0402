//! Accounts of the enrollment server (§11.3: "The enrollment server MUST authenticate
//! the request using the provided account name and password") and the Node-IDs each
//! user was given, so a returning user gets the same ones back.
//!
//! [`FileAccounts`] is the embedded default: one line per account,
//! `username:pbkdf2-sha256$iterations$salt$hash:nodeid,nodeid,…` (base64 salt and hash,
//! hex Node-IDs), rewritten atomically on every change. Passwords are compared as
//! binary UTF-8 (§11.3) through PBKDF2-HMAC-SHA256 in constant time.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::pbkdf2;
use xor_overlay::id::NodeId;

use crate::files::{FileError, os_random, write_atomic};

/// Where accounts live.
pub trait AccountStore: Send + Sync + fmt::Debug {
    /// Whether `password` is `username`'s.
    fn authenticate(&self, username: &str, password: &str) -> bool;
    /// The Node-IDs `username` was given before, oldest first.
    fn node_ids(&self, username: &str) -> Vec<NodeId>;
    /// Records that `username` now also holds `ids`.
    fn add_node_ids(&self, username: &str, ids: &[NodeId]) -> Result<(), String>;
    /// Whether any account holds `id` (Node-IDs are unique across the overlay).
    fn node_id_taken(&self, id: NodeId) -> bool;
    /// Removes `ids` from `username`'s Node-IDs (a revoked device frees its slot);
    /// returns how many it held.
    fn remove_node_ids(&self, username: &str, ids: &[NodeId]) -> Result<usize, String>;
}

/// PBKDF2 iterations for new passwords (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
const ALG: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

#[derive(Debug, Clone)]
struct Account {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
    node_ids: Vec<NodeId>,
}

impl Account {
    fn new(password: &str, iterations: u32) -> Account {
        let iterations = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
        let salt = os_random()[..16].to_vec();
        let mut hash = vec![0u8; 32];
        pbkdf2::derive(ALG, iterations, &salt, password.as_bytes(), &mut hash);
        Account {
            iterations,
            salt,
            hash,
            node_ids: Vec::new(),
        }
    }

    fn line(&self, user: &str) -> String {
        let ids: Vec<String> = self
            .node_ids
            .iter()
            .map(|n| hex::encode(n.to_be_bytes()))
            .collect();
        format!(
            "{user}:pbkdf2-sha256${}${}${}:{}\n",
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash),
            ids.join(",")
        )
    }

    fn parse(line: &str) -> Option<(String, Account)> {
        let (user, rest) = line.rsplit_once(':')?.0.rsplit_once(':')?;
        let ids = line.rsplit_once(':')?.1;
        let mut parts = rest.split('$');
        if parts.next()? != "pbkdf2-sha256" {
            return None;
        }
        let iterations = NonZeroU32::new(parts.next()?.parse().ok()?)?;
        let salt = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        let hash = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        let node_ids = ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|h| {
                let b: [u8; 16] = hex::decode(h).ok()?.try_into().ok()?;
                Some(NodeId::from_bytes(b))
            })
            .collect::<Option<Vec<_>>>()?;
        Some((
            user.to_owned(),
            Account {
                iterations,
                salt,
                hash,
                node_ids,
            },
        ))
    }
}

/// Accounts in a file.
pub struct FileAccounts {
    path: PathBuf,
    iterations: u32,
    accounts: Mutex<BTreeMap<String, Account>>,
    /// Compared against when the user does not exist, so both paths cost the same.
    dummy: Account,
}

impl fmt::Debug for FileAccounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileAccounts")
            .field("path", &self.path)
            .finish()
    }
}

impl FileAccounts {
    /// Opens (or starts) the account file at `path`.
    pub fn open(path: &Path) -> Result<FileAccounts, FileError> {
        FileAccounts::open_with(path, DEFAULT_ITERATIONS)
    }

    /// Like [`FileAccounts::open`], hashing new passwords with `iterations` rounds
    /// (tests use few; existing entries keep their own count).
    pub fn open_with(path: &Path, iterations: u32) -> Result<FileAccounts, FileError> {
        let mut accounts = BTreeMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (user, account) = Account::parse(line).ok_or_else(|| {
                        FileError::new(path, format!("line {}: not an account entry", n + 1))
                    })?;
                    accounts.insert(user, account);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new(path, e)),
        }
        Ok(FileAccounts {
            path: path.to_owned(),
            iterations,
            accounts: Mutex::new(accounts),
            dummy: Account::new("", iterations),
        })
    }

    fn save(&self, accounts: &BTreeMap<String, Account>) -> Result<(), FileError> {
        let text: String = accounts.iter().map(|(u, a)| a.line(u)).collect();
        write_atomic(&self.path, text.as_bytes(), true)
    }

    /// Adds `username` or changes its password (keeping its Node-IDs).
    pub fn set_password(&self, username: &str, password: &str) -> Result<(), FileError> {
        if username.contains(':') || username.contains('\n') || username.is_empty() {
            return Err(FileError::new(
                &self.path,
                format!("{username:?} cannot be an account name"),
            ));
        }
        let mut accounts = self.lock();
        let mut account = Account::new(password, self.iterations);
        if let Some(old) = accounts.get(username) {
            account.node_ids = old.node_ids.clone();
        }
        accounts.insert(username.to_owned(), account);
        self.save(&accounts)
    }

    /// Removes `username`; returns whether it existed.
    pub fn remove(&self, username: &str) -> Result<bool, FileError> {
        let mut accounts = self.lock();
        let existed = accounts.remove(username).is_some();
        self.save(&accounts)?;
        Ok(existed)
    }

    /// The account names.
    pub fn users(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Account>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AccountStore for FileAccounts {
    fn authenticate(&self, username: &str, password: &str) -> bool {
        let account = self.lock().get(username).cloned();
        let (account, exists) = match account {
            Some(a) => (a, true),
            None => (self.dummy.clone(), false),
        };
        let ok = pbkdf2::verify(
            ALG,
            account.iterations,
            &account.salt,
            password.as_bytes(),
            &account.hash,
        )
        .is_ok();
        ok && exists
    }

    fn node_ids(&self, username: &str) -> Vec<NodeId> {
        self.lock()
            .get(username)
            .map(|a| a.node_ids.clone())
            .unwrap_or_default()
    }

    fn add_node_ids(&self, username: &str, ids: &[NodeId]) -> Result<(), String> {
        let mut accounts = self.lock();
        let account = accounts
            .get_mut(username)
            .ok_or_else(|| format!("no account {username}"))?;
        account.node_ids.extend_from_slice(ids);
        self.save(&accounts).map_err(|e| e.to_string())
    }

    fn node_id_taken(&self, id: NodeId) -> bool {
        self.lock().values().any(|a| a.node_ids.contains(&id))
    }

    fn remove_node_ids(&self, username: &str, ids: &[NodeId]) -> Result<usize, String> {
        let mut accounts = self.lock();
        let account = accounts
            .get_mut(username)
            .ok_or_else(|| format!("no account {username}"))?;
        let before = account.node_ids.len();
        account.node_ids.retain(|n| !ids.contains(n));
        let removed = before - account.node_ids.len();
        self.save(&accounts).map_err(|e| e.to_string())?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        let a = FileAccounts::open_with(&path, 1000).unwrap();
        a.set_password("juliet@capulet.lit", "wherefore").unwrap();
        a.add_node_ids("juliet@capulet.lit", &[NodeId(7), NodeId(8)])
            .unwrap();
        assert!(a.authenticate("juliet@capulet.lit", "wherefore"));
        assert!(!a.authenticate("juliet@capulet.lit", "Wherefore"));
        assert!(!a.authenticate("romeo@montague.lit", "wherefore"));
        assert!(!a.authenticate("romeo@montague.lit", ""));
        let b = FileAccounts::open(&path).unwrap();
        assert!(b.authenticate("juliet@capulet.lit", "wherefore"));
        assert_eq!(b.node_ids("juliet@capulet.lit"), vec![NodeId(7), NodeId(8)]);
        assert!(b.node_id_taken(NodeId(8)) && !b.node_id_taken(NodeId(9)));
        assert_eq!(b.remove_node_ids("juliet@capulet.lit", &[NodeId(8)]), Ok(1));
        assert!(!b.node_id_taken(NodeId(8)));
        b.add_node_ids("juliet@capulet.lit", &[NodeId(8)]).unwrap();
        // A new password keeps the Node-IDs.
        b.set_password("juliet@capulet.lit", "balcony").unwrap();
        assert!(!b.authenticate("juliet@capulet.lit", "wherefore"));
        assert_eq!(b.node_ids("juliet@capulet.lit").len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("balcony"), "no clear-text password on disk");
        assert!(b.remove("juliet@capulet.lit").unwrap());
        assert!(b.users().is_empty());
        assert!(b.set_password("a:b", "x").is_err());
    }

    #[test]
    fn a_corrupt_account_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        std::fs::write(&path, "juliet@capulet.lit:plaintext:\n").unwrap();
        let err = FileAccounts::open(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
