//! Files: PEM encoding, atomic writes (no partial file is ever visible), keys with
//! owner-only permissions, and an RNG seeded by the operating system.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use ring::rand::SecureRandom;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use xor_overlay::identity::KeyPair;

/// A file problem, with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub what: String,
}

impl FileError {
    pub(crate) fn new(path: &Path, what: impl std::fmt::Display) -> FileError {
        FileError {
            path: path.to_owned(),
            what: what.to_string(),
        }
    }
}

/// An RNG seeded from the operating system (keys, Node-IDs, salts).
pub fn os_rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed(os_random())
}

/// 32 bytes from the operating system's RNG.
pub fn os_random() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // SystemRandom only fails if the OS has no RNG, where nothing here can work.
    let _ = ring::rand::SystemRandom::new().fill(&mut seed);
    seed
}

/// `label` PEM armour around `der`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER of the first certificate in PEM text.
pub fn pem_der(text: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(text)
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// Every certificate in PEM text, in order (at least one).
pub fn parse_certs(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(text)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the PEM text".into());
    }
    Ok(certs)
}

/// A PKCS#8 P-256 private key from PEM text.
pub fn parse_key(text: &[u8]) -> Result<KeyPair, String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(text).map_err(|e| format!("bad PEM key: {e}"))?;
    KeyPair::from_pkcs8_der(der.secret_pkcs8_der()).map_err(|e| e.to_string())
}

/// Every certificate in a PEM file, in order.
pub fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, FileError> {
    let text = fs::read(path).map_err(|e| FileError::new(path, e))?;
    parse_certs(&text).map_err(|e| FileError::new(path, e))
}

/// A PKCS#8 P-256 private key from a PEM file.
pub fn read_key(path: &Path) -> Result<KeyPair, FileError> {
    let text = fs::read(path).map_err(|e| FileError::new(path, e))?;
    parse_key(&text).map_err(|e| FileError::new(path, e))
}

/// The PEM of a key.
pub fn key_pem(key: &KeyPair) -> String {
    pem("PRIVATE KEY", &key.to_pkcs8_der())
}

/// The PEM of a certificate chain.
pub fn certs_pem<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> String {
    certs.into_iter().map(|c| pem("CERTIFICATE", c)).collect()
}

fn tmp_name(path: &Path) -> PathBuf {
    let n = u64::from_le_bytes(os_random()[..8].try_into().unwrap_or_default());
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{n:016x}.tmp"))
}

fn sync_dir(dir: &Path) {
    // Directory fsync makes the rename durable; not every platform allows it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// flushed, then renamed over `path`. `secret` files are readable by the owner only.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    let tmp = tmp_name(path);
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(FileError::new(path, e));
    }
    sync_dir(dir);
    Ok(())
}

/// Replaces directory `dir` with `files` (name, bytes, secret) as one step: they are
/// written to a fresh sibling directory which is then renamed into place; the old
/// directory, if any, is moved aside first and removed after. A crash in between
/// leaves `dir.old` beside no `dir`, which [`recover_dir`] puts back.
pub fn replace_dir(dir: &Path, files: &[(&str, &[u8], bool)]) -> Result<(), FileError> {
    for (name, _, _) in files {
        if name.is_empty() || name.contains(['/', '\\']) || *name == "." || *name == ".." {
            return Err(FileError::new(dir, format!("{name:?} is not a file name")));
        }
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| FileError::new(parent, e))?;
    let staging = tmp_name(dir);
    let old = dir.with_extension("old");
    let result = (|| {
        fs::create_dir(&staging).map_err(|e| FileError::new(&staging, e))?;
        for (name, bytes, secret) in files {
            write_atomic(&staging.join(name), bytes, *secret)?;
        }
        recover_dir(dir)?;
        if dir.exists() {
            let _ = fs::remove_dir_all(&old);
            fs::rename(dir, &old).map_err(|e| FileError::new(dir, e))?;
        }
        fs::rename(&staging, dir).map_err(|e| FileError::new(dir, e))?;
        sync_dir(parent);
        let _ = fs::remove_dir_all(&old);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        let _ = recover_dir(dir);
    }
    result
}

/// Puts `dir.old` back when an interrupted [`replace_dir`] left no `dir`.
pub fn recover_dir(dir: &Path) -> Result<(), FileError> {
    let old = dir.with_extension("old");
    if !dir.exists() && old.exists() {
        fs::rename(&old, dir).map_err(|e| FileError::new(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_dir_swaps_all_files_and_recovers_an_interrupted_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("profile");
        replace_dir(&dir, &[("a", b"1", false), ("key", b"k1", true)]).unwrap();
        replace_dir(&dir, &[("a", b"2", false), ("key", b"k2", true)]).unwrap();
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"2");
        assert_eq!(fs::read(dir.join("key")).unwrap(), b"k2");
        // Nothing is left beside it.
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        // A crash between "move the old aside" and "move the new in" leaves only
        // profile.old: recovery puts it back.
        fs::rename(&dir, dir.with_extension("old")).unwrap();
        recover_dir(&dir).unwrap();
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"2");
        // A failed replacement (a file name that cannot be written) changes nothing.
        assert!(replace_dir(&dir, &[("a", b"3", false), ("no/such/dir/x", b"", false)]).is_err());
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"2");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "the staging directory is removed");
    }

    #[test]
    fn pem_round_trips_keys_and_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let key = KeyPair::generate(&mut os_rng());
        write_atomic(&tmp.path().join("k.pem"), key_pem(&key).as_bytes(), true).unwrap();
        assert_eq!(
            read_key(&tmp.path().join("k.pem")).unwrap().spki_der(),
            key.spki_der()
        );
        let certs = certs_pem([b"abc".as_slice(), b"defg".as_slice()]);
        write_atomic(&tmp.path().join("c.pem"), certs.as_bytes(), false).unwrap();
        assert_eq!(
            read_certs(&tmp.path().join("c.pem")).unwrap(),
            vec![b"abc".to_vec(), b"defg".to_vec()]
        );
        let err = read_key(&tmp.path().join("missing.pem")).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
