//! The XMPP usage of RELOAD (XEP-0415): XMPP-LOCATION, JID resolution, direct streams, fan-out.
