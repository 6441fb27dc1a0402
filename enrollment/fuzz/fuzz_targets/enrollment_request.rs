//! An enrollment request (§11.3) as the server reads it: a user name and CSR bytes
//! (DER or PEM) from a stranger who knows a password. The domain CA never panics, and
//! what it issues names exactly the user asked for, in its own domain.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xor_enrollment::ca::{CaDir, DomainCa};
use xor_overlay::id::NodeId;
use xor_overlay::identity::issue::Validity;

fn ca() -> &'static DomainCa {
    static CA: OnceLock<(tempfile::TempDir, DomainCa)> = OnceLock::new();
    &CA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CaDir::init(dir.path(), "fuzz.example", 30, 1_800_000_000).expect("ca");
        let domain = ca.create_domain("capulet.test", 30, 1_800_000_000).expect("domain");
        (dir, domain)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    // First line: the user name; the rest: the CSR.
    let (user, csr) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => return,
    };
    let Ok(user) = std::str::from_utf8(user) else {
        return;
    };
    let validity = Validity::days_from(1_800_000_000, 1);
    if let Ok(cert) = ca().issue_csr(csr, user, &[NodeId(7)], validity) {
        let id = xor_overlay::identity::CertIdentity::parse(&cert, "fuzz.example")
            .expect("an issued certificate parses");
        assert_eq!(id.user.as_deref(), Some(user));
        assert!(user.to_ascii_lowercase().ends_with("@capulet.test"));
    }
});
