//! Enrollment and bootstrap (RFC 6940 §11): configuration document, CA tooling, enrollment server and client.
