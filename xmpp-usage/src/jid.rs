//! JIDs and their preparation for comparison (RFC 7622, PRECIS).
//!
//! The localpart is enforced with the UsernameCaseMapped profile, the domainpart is
//! lower-cased and converted to its Unicode form per IDNA, the resourcepart with the
//! OpaqueString profile. XEP-0415 looks a user up by the prepared *bare* JID; the
//! peer that stores a location does not prepare anything (the storer must).

use std::fmt;

use precis_core::profile::Profile;
use precis_profiles::{OpaqueString, UsernameCaseMapped};

/// Why a string is not a usable JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// No `@`: this usage addresses users, not servers.
    #[error("'{0}' has no localpart (expected user@domain)")]
    NoLocalpart(String),
    /// A part is empty or too long, or fails its PRECIS profile.
    #[error("invalid {part} in '{jid}': {why}")]
    Invalid {
        /// The JID as given.
        jid: String,
        /// Which part.
        part: &'static str,
        /// What was wrong.
        why: String,
    },
}

/// A prepared JID: `local@domain` with an optional resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: String,
    domain: String,
    resource: Option<String>,
}

impl Jid {
    /// Parses and prepares `s` (RFC 7622 §3).
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let invalid = |part: &'static str, why: String| JidError::Invalid {
            jid: s.to_owned(),
            part,
            why,
        };
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let (local, domain) = bare
            .split_once('@')
            .ok_or_else(|| JidError::NoLocalpart(s.to_owned()))?;
        let local = UsernameCaseMapped::new()
            .enforce(local)
            .map_err(|e| invalid("localpart", format!("{e:?}")))?
            .into_owned();
        let domain = domain.trim_end_matches('.');
        let (domain, result) = idna::domain_to_unicode(&domain.to_lowercase());
        result.map_err(|e| invalid("domainpart", e.to_string()))?;
        if domain.is_empty() || domain.len() > 1023 || domain.contains(['@', '/']) {
            return Err(invalid(
                "domainpart",
                "empty, too long or with forbidden characters".into(),
            ));
        }
        if local.len() > 1023 {
            return Err(invalid("localpart", "longer than 1023 bytes".into()));
        }
        let resource = match resource {
            Some(r) => {
                let r = OpaqueString::new()
                    .enforce(r)
                    .map_err(|e| invalid("resourcepart", format!("{e:?}")))?
                    .into_owned();
                if r.len() > 1023 {
                    return Err(invalid("resourcepart", "longer than 1023 bytes".into()));
                }
                Some(r)
            }
            None => None,
        };
        Ok(Jid {
            local,
            domain,
            resource,
        })
    }

    /// The bare JID (resource stripped), prepared: what XMPP-LOCATION is keyed by.
    pub fn bare(&self) -> Jid {
        Jid {
            resource: None,
            ..self.clone()
        }
    }

    /// This JID with `resource`.
    pub fn with_resource(&self, resource: impl Into<String>) -> Jid {
        Jid {
            resource: Some(resource.into()),
            ..self.clone()
        }
    }

    /// The resourcepart.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// Whether this is a bare JID.
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// The bare JID as a string.
    pub fn bare_str(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// The domainpart.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_is_case_mapped_and_resource_stripped_rfc7622() {
        let j = Jid::parse("Juliet@Capulet.LIT/balcony").unwrap();
        assert_eq!(j.bare_str(), "juliet@capulet.lit");
        assert_eq!(j.resource(), Some("balcony"));
        assert_eq!(j.bare().to_string(), "juliet@capulet.lit");
    }

    #[test]
    fn width_and_idn_are_normalised_rfc7622() {
        // Fullwidth letters map to their ASCII forms; the IDN domain is kept in Unicode.
        let j = Jid::parse("ＪＵＬＩＥＴ@ÉXAMPLE.org").unwrap();
        assert_eq!(j.bare_str(), "juliet@éxample.org");
        assert_eq!(
            Jid::parse("juliet@xn--xample-9ua.org").unwrap().bare_str(),
            "juliet@éxample.org"
        );
    }

    #[test]
    fn invalid_jids_are_refused() {
        assert!(matches!(
            Jid::parse("capulet.lit"),
            Err(JidError::NoLocalpart(_))
        ));
        assert!(matches!(
            Jid::parse("jul iet@capulet.lit"),
            Err(JidError::Invalid {
                part: "localpart",
                ..
            })
        ));
        assert!(matches!(
            Jid::parse("@capulet.lit"),
            Err(JidError::Invalid { .. })
        ));
        assert!(matches!(
            Jid::parse("juliet@"),
            Err(JidError::Invalid {
                part: "domainpart",
                ..
            })
        ));
    }
}
