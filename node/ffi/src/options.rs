//! Options for `xor_start`: a handle over [`xor_node::embed::Builder`].

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use xor_node::embed::Builder;

use crate::XorOptions;
use crate::boundary::{Failure, XorStatus, bytes, fail, guard, text};
use crate::event::XorEvent;

/// Called with each event on the thread the game named. `event` and its strings are
/// valid only until the callback returns.
pub type XorCallback = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const XorEvent)>;

/// The game's callback and where it runs.
#[derive(Debug, Clone)]
pub(crate) struct Callback {
    pub(crate) func: unsafe extern "C" fn(*mut c_void, *const XorEvent),
    /// The game's `user_data`, kept as a number: the library never dereferences it.
    pub(crate) user: usize,
    pub(crate) thread: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) builder: Builder,
    pub(crate) callback: Option<Callback>,
}

/// Handles of both kinds come from one counter, so a chat handle is never a valid
/// options handle and the other way round; none is ever reused.
pub(crate) fn fresh_handle() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn registry() -> MutexGuard<'static, HashMap<u64, Options>> {
    static OPTIONS: LazyLock<Mutex<HashMap<u64, Options>>> = LazyLock::new(Default::default);
    OPTIONS.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn take_options(handle: XorOptions) -> Result<Options, Failure> {
    registry().get(&handle).cloned().ok_or_else(|| {
        fail(
            XorStatus::ErrHandle,
            format!("{handle} is not a live options handle"),
        )
    })
}

fn update(handle: XorOptions, f: impl FnOnce(&mut Options)) -> Result<XorStatus, Failure> {
    let mut reg = registry();
    let opts = reg.get_mut(&handle).ok_or_else(|| {
        fail(
            XorStatus::ErrHandle,
            format!("{handle} is not a live options handle"),
        )
    })?;
    f(opts);
    Ok(XorStatus::Ok)
}

fn build(handle: XorOptions, f: impl FnOnce(Builder) -> Builder) -> Result<XorStatus, Failure> {
    update(handle, |o| o.builder = f(o.builder.clone()))
}

fn address(s: &str) -> Result<std::net::SocketAddr, Failure> {
    s.parse().map_err(|_| {
        fail(
            XorStatus::ErrInvalid,
            format!("{s:?} is not an IP address and port"),
        )
    })
}

/// New options for a device of the overlay `overlay` (e.g. `chat.example.org`).
///
/// # Safety
/// `overlay` must point to `overlay_len` readable bytes; `out` to a writable handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_new(
    overlay: *const u8,
    overlay_len: usize,
    out: *mut XorOptions,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `overlay`.
        let name = unsafe { text(overlay, overlay_len, "overlay") }?;
        if out.is_null() {
            return Err(fail(XorStatus::ErrNull, "out is NULL"));
        }
        if name.is_empty() {
            return Err(fail(XorStatus::ErrInvalid, "the overlay name is empty"));
        }
        let handle = fresh_handle();
        registry().insert(
            handle,
            Options {
                builder: Builder::new(name),
                callback: None,
            },
        );
        // SAFETY: non-NULL, and the caller guarantees a writable handle there.
        unsafe { out.write(handle) };
        Ok(XorStatus::Ok)
    })
}

/// Frees options (a started chat does not need them any more).
#[unsafe(no_mangle)]
pub extern "C" fn xor_options_free(options: XorOptions) -> XorStatus {
    guard(|| match registry().remove(&options) {
        Some(_) => Ok(XorStatus::Ok),
        None => Err(fail(
            XorStatus::ErrHandle,
            format!("{options} is not a live options handle"),
        )),
    })
}

/// Applies a string option (cbindgen reads no macros, so each function is written
/// out and shares this).
///
/// # Safety
/// `value` must point to `len` readable bytes.
unsafe fn string_option(
    options: XorOptions,
    value: *const u8,
    len: usize,
    what: &str,
    apply: impl FnOnce(Builder, &str) -> Builder,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `value`.
        let s = unsafe { text(value, len, what) }?;
        build(options, |b| apply(b, s))
    })
}

/// Fetch the configuration document from this HTTPS URL (instead of DNS).
///
/// # Safety
/// `value` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_config_url(
    options: XorOptions,
    value: *const u8,
    len: usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe { string_option(options, value, len, "url", |b, s| b.config_url(s)) }
}

/// Trust these PEM certificates for the HTTPS servers (instead of the Web PKI).
///
/// # Safety
/// `value` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_http_roots_pem(
    options: XorOptions,
    value: *const u8,
    len: usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe {
        string_option(options, value, len, "pem", |b, s| {
            b.http_roots_pem(s.as_bytes())
        })
    }
}

/// Savedata exported by `xor_savedata`: key, certificates, configuration, roster.
///
/// # Safety
/// `value` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_savedata(
    options: XorOptions,
    value: *const u8,
    len: usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe {
        string_option(options, value, len, "savedata", |b, s| {
            b.savedata(s.as_bytes())
        })
    }
}

/// This device's resource (default `game`).
///
/// # Safety
/// `value` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_resource(
    options: XorOptions,
    value: *const u8,
    len: usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe { string_option(options, value, len, "resource", |b, s| b.resource(s)) }
}

/// Use this signed configuration document.
///
/// # Safety
/// `document` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_config_document(
    options: XorOptions,
    document: *const u8,
    len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `document`.
        let doc = unsafe { bytes(document, len, "document") }?.to_vec();
        build(options, |b| b.config_document(doc))
    })
}

/// Enroll a new device of `user` (`name@domain`) with its password when started.
///
/// # Safety
/// `user` and `password` must point to their lengths of readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_enroll(
    options: XorOptions,
    user: *const u8,
    user_len: usize,
    password: *const u8,
    password_len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantees for both strings.
        let (u, p) = unsafe {
            (
                text(user, user_len, "user")?,
                text(password, password_len, "password")?,
            )
        };
        build(options, |b| b.enroll(u, p))
    })
}

/// Use a key (PKCS#8 PEM) and its certificate chain (PEM, leaf first).
///
/// # Safety
/// `key` and `chain` must point to their lengths of readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_credentials_pem(
    options: XorOptions,
    key: *const u8,
    key_len: usize,
    chain: *const u8,
    chain_len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantees for both buffers.
        let (k, c) = unsafe {
            (
                bytes(key, key_len, "key")?,
                bytes(chain, chain_len, "chain")?,
            )
        };
        build(options, |b| b.credentials_pem(k, c))
    })
}

/// Where the overlay listener binds, e.g. `0.0.0.0:0` (the default) or
/// `127.0.0.1:6084`.
///
/// # Safety
/// `addr` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_listen(
    options: XorOptions,
    addr: *const u8,
    len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `addr`.
        let a = address(unsafe { text(addr, len, "addr") }?)?;
        build(options, |b| b.listen(a))
    })
}

/// Adds a bootstrap node (`ip:port`) besides those of the configuration.
///
/// # Safety
/// `addr` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_bootstrap(
    options: XorOptions,
    addr: *const u8,
    len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `addr`.
        let a = address(unsafe { text(addr, len, "addr") }?)?;
        build(options, |b| b.bootstrap(a))
    })
}

/// Adds a STUN server (`stun:host:port`) for direct streams through NATs (ICE).
///
/// # Safety
/// `url` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_stun_server(
    options: XorOptions,
    url: *const u8,
    len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `url`.
        let u = unsafe { text(url, len, "url") }?.to_owned();
        build(options, |b| b.stun_server(u))
    })
}

/// Adds a TURN server (`turn:host:port`) with its long-term credentials, for
/// players whose NATs ICE cannot join directly.
///
/// # Safety
/// Each pointer must point to its length's readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_turn_server(
    options: XorOptions,
    url: *const u8,
    url_len: usize,
    username: *const u8,
    username_len: usize,
    password: *const u8,
    password_len: usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for each pointer.
        let (u, n, p) = unsafe {
            (
                text(url, url_len, "url")?.to_owned(),
                text(username, username_len, "username")?.to_owned(),
                text(password, password_len, "password")?.to_owned(),
            )
        };
        build(options, |b| b.turn_server(u, n, p))
    })
}

/// Route priority, lower first (default 10).
#[unsafe(no_mangle)]
pub extern "C" fn xor_options_priority(options: XorOptions, priority: u8) -> XorStatus {
    guard(|| build(options, |b| b.priority(priority)))
}

/// Non-zero: start a new overlay when no bootstrap node answers.
#[unsafe(no_mangle)]
pub extern "C" fn xor_options_start_overlay(options: XorOptions, yes: i32) -> XorStatus {
    guard(|| build(options, |b| b.start_overlay(yes != 0)))
}

/// Most bytes of other users' data this device stores for the overlay.
#[unsafe(no_mangle)]
pub extern "C" fn xor_options_storage_limit(options: XorOptions, bytes: u64) -> XorStatus {
    guard(|| {
        let limit = usize::try_from(bytes).map_err(|_| fail(XorStatus::ErrInvalid, "too large"))?;
        build(options, |b| b.storage_limit(limit))
    })
}

/// Events kept for the game before the oldest are dropped (default 4096, 1 to
/// 1,048,576).
#[unsafe(no_mangle)]
pub extern "C" fn xor_options_event_capacity(options: XorOptions, events: u32) -> XorStatus {
    guard(|| {
        if events == 0 || events > 1 << 20 {
            return Err(fail(
                XorStatus::ErrInvalid,
                "event capacity must be 1 to 1048576",
            ));
        }
        build(options, |b| b.event_capacity(events as usize))
    })
}

/// How long `xor_start` tries to join, in milliseconds (default 30,000).
#[unsafe(no_mangle)]
pub extern "C" fn xor_options_join_timeout(options: XorOptions, millis: u32) -> XorStatus {
    guard(|| {
        build(options, |b| {
            b.join_timeout(std::time::Duration::from_millis(millis.into()))
        })
    })
}

/// Delivers events by calling `callback(user_data, event)` on a thread the library
/// starts and names `thread_name` (instead of `xor_poll`). `user_data` is passed
/// through untouched; the game must allow its use from that thread.
///
/// # Safety
/// `thread_name` must point to `len` readable bytes; `callback` must stay callable
/// until `xor_close` of every chat started with these options returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_options_callback(
    options: XorOptions,
    callback: XorCallback,
    user_data: *mut c_void,
    thread_name: *const u8,
    len: usize,
) -> XorStatus {
    guard(|| {
        let func = callback.ok_or_else(|| fail(XorStatus::ErrNull, "callback is NULL"))?;
        // SAFETY: the caller's guarantee for `thread_name`.
        let name = unsafe { text(thread_name, len, "thread_name") }?;
        if name.contains('\0') {
            return Err(fail(XorStatus::ErrInvalid, "thread_name holds a NUL"));
        }
        let cb = Callback {
            func,
            user: user_data as usize,
            thread: name.to_owned(),
        };
        update(options, |o| o.callback = Some(cb))
    })
}
