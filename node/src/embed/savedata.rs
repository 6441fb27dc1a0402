//! The game owns persistence (as `tox_get_savedata` does): everything a device needs
//! to start again — key, certificate chain, the overlay's signed configuration
//! document, the roster — as one text blob the game stores where it likes. xor writes
//! no file for an embedding.
//!
//! The blob is TOML:
//!
//! ```toml
//! format = "xor-savedata/1"
//! overlay = "chat.example.org"
//! key = "-----BEGIN PRIVATE KEY-----\n…"        # PKCS#8, P-256
//! certificates = "-----BEGIN CERTIFICATE-----\n…" # leaf first, then its issuers
//! configuration = "PD94bWwg…"                    # the signed document, base64
//! roster = "[[item]]\njid = …"                   # the roster file's text
//! ```
//!
//! It holds the private key: the game must keep it as it keeps any secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xor_enrollment::client::{Profile, check_document};
use xor_enrollment::config::Document;
use xor_enrollment::files::{certs_pem, key_pem, parse_certs, parse_key};
use xor_overlay::identity::Credentials;

/// The format tag of this version.
pub const FORMAT: &str = "xor-savedata/1";
/// Largest savedata accepted (a configuration document is at most 1 MiB; a full
/// roster of 10,000 contacts about as much again).
pub const MAX_SAVEDATA: usize = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Blob {
    format: String,
    overlay: String,
    key: String,
    certificates: String,
    configuration: String,
    #[serde(default)]
    roster: String,
}

/// A device's saved state.
#[derive(Debug, Clone)]
pub struct Savedata {
    /// The overlay's name.
    pub overlay: String,
    /// Key, chain and configuration.
    pub profile: Profile,
    /// The roster's text (see [`crate::roster::Roster::to_toml`]).
    pub roster: String,
}

impl Savedata {
    /// The blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let creds = &self.profile.credentials;
        let chain =
            std::iter::once(creds.cert().as_ref()).chain(creds.chain().iter().map(|c| c.as_ref()));
        let blob = Blob {
            format: FORMAT.into(),
            overlay: self.overlay.clone(),
            key: key_pem(creds.key()),
            certificates: certs_pem(chain),
            configuration: STANDARD.encode(&self.profile.document),
            roster: self.roster.clone(),
        };
        toml::to_string(&blob).map_or_else(|_| Vec::new(), String::into_bytes)
    }

    /// Reads a blob written by [`Savedata::to_bytes`]. The configuration document
    /// was verified when it was first fetched and is parsed again here.
    pub fn from_bytes(bytes: &[u8]) -> Result<Savedata, SavedataError> {
        if bytes.len() > MAX_SAVEDATA {
            return Err(SavedataError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SavedataError::NotUtf8)?;
        let blob: Blob = toml::from_str(text)?;
        if blob.format != FORMAT {
            return Err(SavedataError::Format(blob.format));
        }
        let key = parse_key(blob.key.as_bytes()).map_err(SavedataError::Credentials)?;
        let document = Bytes::from(
            STANDARD
                .decode(blob.configuration.trim())
                .map_err(|e| SavedataError::Configuration(e.to_string()))?,
        );
        let config = Document::parse(&document)
            .and_then(|d| d.configuration(&blob.overlay).map(|c| c.config.clone()))
            .map_err(|e| SavedataError::Configuration(e.to_string()))?;
        let profile = Profile {
            credentials: credentials(key, blob.certificates.as_bytes(), &blob.overlay)?,
            document,
            config,
        };
        crate::roster::Roster::from_toml(&blob.roster).map_err(SavedataError::Roster)?;
        Ok(Savedata {
            overlay: blob.overlay,
            profile,
            roster: blob.roster,
        })
    }
}

/// Why savedata cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedataError {
    /// Over [`MAX_SAVEDATA`]; refused before it is read.
    #[error("savedata larger than {MAX_SAVEDATA} bytes")]
    TooLarge,
    /// Not text.
    #[error("savedata is not UTF-8 text")]
    NotUtf8,
    /// Not the TOML that [`Savedata::to_bytes`] writes.
    #[error("savedata: {0}")]
    Toml(#[from] toml::de::Error),
    /// Written by another version.
    #[error("savedata format {0:?}, this version reads {FORMAT:?}")]
    Format(String),
    /// The key or certificates are unusable.
    #[error("savedata credentials: {0}")]
    Credentials(String),
    /// The overlay's configuration document is unusable.
    #[error("savedata configuration: {0}")]
    Configuration(String),
    /// The roster is unusable.
    #[error("savedata roster: {0}")]
    Roster(crate::config::ConfigError),
}

/// Credentials from a key and a PEM chain (leaf first).
pub(crate) fn credentials(
    key: xor_overlay::identity::KeyPair,
    chain_pem: &[u8],
    overlay: &str,
) -> Result<Credentials, SavedataError> {
    let mut certs = parse_certs(chain_pem).map_err(SavedataError::Credentials)?;
    let leaf = certs.remove(0);
    Credentials::new(
        key,
        leaf,
        certs.into_iter().map(Bytes::from).collect(),
        overlay,
    )
    .map_err(|e| SavedataError::Credentials(e.to_string()))
}

/// A profile from a document just fetched or given (verified) and credentials.
pub(crate) fn profile(
    overlay: &str,
    document: Bytes,
    credentials: Credentials,
) -> Result<Profile, SavedataError> {
    let fetched = check_document(overlay, document, None)
        .map_err(|e| SavedataError::Configuration(e.to_string()))?;
    Ok(Profile {
        credentials,
        document: fetched.document,
        config: fetched.verified.config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savedata_beyond_its_limit_is_refused_before_it_is_read() {
        let over = vec![b'#'; MAX_SAVEDATA + 1];
        let err = Savedata::from_bytes(&over).unwrap_err();
        assert!(matches!(err, SavedataError::TooLarge), "{err}");
        // At the limit it is read (and this text is no savedata).
        let at = vec![b'#'; MAX_SAVEDATA];
        let err = Savedata::from_bytes(&at).unwrap_err();
        assert!(!matches!(err, SavedataError::TooLarge), "{err}");
    }
}
