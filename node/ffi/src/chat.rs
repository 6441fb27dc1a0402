//! A running chat: its own network threads, the calls a game makes, and the two ways
//! events reach the game (`xor_poll`, or a callback on a thread the game names).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use xor_node::embed::Chat;

use crate::boundary::{Failure, XorStatus, fail, guard, optional_text, text, write_out};
use crate::event::{EventBuf, XorEvent, XorShow};
use crate::options::{Callback, fresh_handle, take_options};
use crate::{XorChat, XorOptions};

/// Network threads per chat.
const NETWORK_THREADS: usize = 2;

struct Live {
    runtime: tokio::runtime::Runtime,
    chat: Chat,
    /// The strings of the event `xor_poll` handed out last.
    polled: Mutex<EventBuf>,
    /// The callback thread, if the game chose callbacks.
    callback: Mutex<Option<std::thread::JoinHandle<()>>>,
    callback_thread: Option<std::thread::ThreadId>,
}

fn chats() -> MutexGuard<'static, HashMap<u64, Arc<Live>>> {
    static CHATS: LazyLock<Mutex<HashMap<u64, Arc<Live>>>> = LazyLock::new(Default::default);
    CHATS.lock().unwrap_or_else(|p| p.into_inner())
}

fn live(handle: XorChat) -> Result<Arc<Live>, Failure> {
    chats().get(&handle).cloned().ok_or_else(|| {
        fail(
            XorStatus::ErrHandle,
            format!("{handle} is not a live chat handle"),
        )
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A peer closing a connection makes the next write to it raise SIGPIPE, whose
/// default action kills the process. Rust programs ignore it from `main`; a C game
/// linking libxor does not, so the first chat sets it to "ignore" when — and only
/// when — the game left it at its default (a handler of the game's stays). Writes
/// then fail with EPIPE, which the library handles.
fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a NULL new action only reads the current one into
        // `old`, a zeroed sigaction owned here; signal(SIGPIPE, SIG_IGN) changes the
        // disposition of SIGPIPE alone, and only from SIG_DFL. Both are
        // async-signal-safe libc calls with valid arguments.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
        }
    });
}

/// Calls the game's callback for every event until the chat closes.
fn run_callback(chat: Chat, runtime: tokio::runtime::Handle, cb: Callback) {
    let mut buf = EventBuf::default();
    while let Some(event) = runtime.block_on(chat.next_event()) {
        let view = buf.fill(&event);
        // SAFETY: `func` is the game's non-NULL callback, which it promised stays
        // callable until xor_close returns (xor_close joins this thread first);
        // `user` is the game's own pointer, handed back untouched; `view` and the
        // strings it points to live in `buf` until the call returns.
        unsafe { (cb.func)(cb.user as *mut c_void, &view) };
    }
}

/// Starts a chat with `options` (which stay valid and may start more chats): enrolls
/// or loads the credentials, joins the overlay and registers the device. Blocks until
/// joined or failed (see `xor_options_join_timeout`). The first start sets SIGPIPE
/// to "ignore" if it is at its default, so that a peer closing a connection cannot
/// kill the game; a handler the game installed is left alone.
///
/// # Safety
/// `out` must point to a writable handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_start(options: XorOptions, out: *mut XorChat) -> XorStatus {
    guard(|| {
        if out.is_null() {
            return Err(fail(XorStatus::ErrNull, "out is NULL"));
        }
        let opts = take_options(options)?;
        ignore_sigpipe();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(NETWORK_THREADS)
            .thread_name("xor-net")
            .enable_all()
            .build()
            .map_err(|e| fail(XorStatus::ErrRuntime, e.to_string()))?;
        let chat = runtime.block_on(opts.builder.start())?;
        let mut callback = None;
        let mut callback_thread = None;
        if let Some(cb) = opts.callback {
            let (c, rt) = (chat.clone(), runtime.handle().clone());
            match std::thread::Builder::new()
                .name(cb.thread.clone())
                .spawn(move || run_callback(c, rt, cb))
            {
                Ok(t) => {
                    callback_thread = Some(t.thread().id());
                    callback = Some(t);
                }
                Err(e) => {
                    let _ = runtime.block_on(chat.shutdown());
                    return Err(fail(XorStatus::ErrRuntime, e.to_string()));
                }
            }
        }
        let handle = fresh_handle();
        chats().insert(
            handle,
            Arc::new(Live {
                runtime,
                chat,
                polled: Mutex::new(EventBuf::default()),
                callback: Mutex::new(callback),
                callback_thread,
            }),
        );
        // SAFETY: non-NULL, and the caller guarantees a writable handle there.
        unsafe { out.write(handle) };
        Ok(XorStatus::Ok)
    })
}

/// Goes offline, leaves the overlay, stops the chat's threads and frees the handle.
/// Any later call with it (a second close included) returns `XOR_STATUS_ERR_HANDLE`. After
/// it returns the callback is never called again (unless called from the callback
/// itself, which returns at once and lets the thread finish on its own).
#[unsafe(no_mangle)]
pub extern "C" fn xor_close(chat: XorChat) -> XorStatus {
    guard(|| {
        let live = chats().remove(&chat).ok_or_else(|| {
            fail(
                XorStatus::ErrHandle,
                format!("{chat} is not a live chat handle"),
            )
        })?;
        let _ = live.runtime.block_on(live.chat.shutdown());
        let thread = lock(&live.callback).take();
        if let Some(t) = thread
            && Some(std::thread::current().id()) != live.callback_thread
        {
            let _ = t.join();
        }
        // The runtime goes when the last reference does; a callback thread still
        // running holds only a Handle, which fails its next wait once it is gone.
        if let Ok(live) = Arc::try_unwrap(live) {
            live.runtime.shutdown_timeout(Duration::from_secs(2));
        }
        Ok(XorStatus::Ok)
    })
}

/// Sends a chat message to a bare JID (every device of the user) or a full JID, in
/// order with earlier messages to that user. The message's id is written to
/// `id_buf` (optional: NULL skips it) for matching a later `MessageFailed` event.
///
/// # Safety
/// `to` and `body` must point to their lengths of readable bytes; `id_len` must be
/// NULL or writable, and `id_buf` NULL or `id_cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_send(
    chat: XorChat,
    to: *const u8,
    to_len: usize,
    body: *const u8,
    body_len: usize,
    id_buf: *mut u8,
    id_cap: usize,
    id_len: *mut usize,
) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantees for both strings.
        let (to, body) = unsafe { (text(to, to_len, "to")?, text(body, body_len, "body")?) };
        let live = live(chat)?;
        let id = live.runtime.block_on(live.chat.send_message(to, body))?;
        if id_buf.is_null() {
            return Ok(XorStatus::Ok);
        }
        // SAFETY: the caller's guarantees for the id buffer.
        unsafe { write_out(id.as_bytes(), id_buf, id_cap, id_len) }
    })
}

/// Sets this user's presence (`show` an `XorShow`; `status` optional, NULL for
/// none).
///
/// # Safety
/// `status` must be NULL or point to `status_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_set_presence(
    chat: XorChat,
    show: i32,
    status: *const u8,
    status_len: usize,
) -> XorStatus {
    guard(|| {
        let show = XorShow::from_raw(show)
            .ok_or_else(|| fail(XorStatus::ErrInvalid, "show is not an XorShow"))?;
        // SAFETY: the caller's guarantee for `status`.
        let status = unsafe { optional_text(status, status_len, "status") }?;
        let live = live(chat)?;
        live.runtime
            .block_on(live.chat.set_presence(show, status))?;
        Ok(XorStatus::Ok)
    })
}

/// Shows this user offline to every contact.
#[unsafe(no_mangle)]
pub extern "C" fn xor_set_unavailable(chat: XorChat) -> XorStatus {
    guard(|| {
        let live = live(chat)?;
        live.runtime.block_on(live.chat.set_unavailable())?;
        Ok(XorStatus::Ok)
    })
}

#[derive(Clone, Copy)]
enum Sub {
    Subscribe,
    Approve,
    Deny,
    Unsubscribe,
}

/// # Safety
/// `jid` must point to `len` readable bytes.
unsafe fn subscription(chat: XorChat, jid: *const u8, len: usize, what: Sub) -> XorStatus {
    guard(|| {
        // SAFETY: the caller's guarantee for `jid`.
        let jid = unsafe { text(jid, len, "jid") }?;
        let live = live(chat)?;
        let c = &live.chat;
        live.runtime.block_on(async {
            match what {
                Sub::Subscribe => c.subscribe(jid).await,
                Sub::Approve => c.approve(jid).await,
                Sub::Deny => c.deny(jid).await,
                Sub::Unsubscribe => c.unsubscribe(jid).await,
            }
        })?;
        Ok(XorStatus::Ok)
    })
}

/// Asks to see `jid`'s presence.
///
/// # Safety
/// `jid` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_subscribe(chat: XorChat, jid: *const u8, len: usize) -> XorStatus {
    // SAFETY: passed on.
    unsafe { subscription(chat, jid, len, Sub::Subscribe) }
}

/// Lets `jid` see this user's presence (answers a SubscriptionRequest).
///
/// # Safety
/// `jid` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_approve(chat: XorChat, jid: *const u8, len: usize) -> XorStatus {
    // SAFETY: passed on.
    unsafe { subscription(chat, jid, len, Sub::Approve) }
}

/// Refuses or revokes `jid`'s view of this user's presence.
///
/// # Safety
/// `jid` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_deny(chat: XorChat, jid: *const u8, len: usize) -> XorStatus {
    // SAFETY: passed on.
    unsafe { subscription(chat, jid, len, Sub::Deny) }
}

/// Stops seeing `jid`'s presence.
///
/// # Safety
/// `jid` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_unsubscribe(chat: XorChat, jid: *const u8, len: usize) -> XorStatus {
    // SAFETY: passed on.
    unsafe { subscription(chat, jid, len, Sub::Unsubscribe) }
}

/// Takes the next event, waiting up to `timeout_ms` (0: do not wait). Returns
/// `XOR_STATUS_OK` with `*event` filled, or `XOR_STATUS_NO_EVENT`. The event's strings stay valid
/// until the next `xor_poll` on this chat or `xor_close`. Not for chats whose events
/// go to a callback (`XOR_STATUS_ERR_INVALID`).
///
/// # Safety
/// `event` must point to a writable `XorEvent`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_poll(
    chat: XorChat,
    event: *mut XorEvent,
    timeout_ms: u32,
) -> XorStatus {
    guard(|| {
        if event.is_null() {
            return Err(fail(XorStatus::ErrNull, "event is NULL"));
        }
        let live = live(chat)?;
        if live.callback_thread.is_some() {
            return Err(fail(
                XorStatus::ErrInvalid,
                "this chat delivers events to its callback",
            ));
        }
        let next = match live.chat.try_next_event() {
            Some(e) => Some(e),
            None if timeout_ms == 0 => None,
            None => live.runtime.block_on(async {
                tokio::time::timeout(
                    Duration::from_millis(timeout_ms.into()),
                    live.chat.next_event(),
                )
                .await
                .ok()
                .flatten()
            }),
        };
        let Some(next) = next else {
            return Ok(XorStatus::NoEvent);
        };
        let view = lock(&live.polled).fill(&next);
        // SAFETY: non-NULL, and the caller guarantees a writable XorEvent there.
        unsafe { event.write(view) };
        Ok(XorStatus::Ok)
    })
}

/// Events dropped because the game did not take them in time (the queue keeps the
/// newest; see `xor_options_event_capacity`).
///
/// # Safety
/// `out` must point to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_dropped_events(chat: XorChat, out: *mut u64) -> XorStatus {
    guard(|| {
        if out.is_null() {
            return Err(fail(XorStatus::ErrNull, "out is NULL"));
        }
        let n = live(chat)?.chat.dropped_events();
        // SAFETY: non-NULL, and the caller guarantees a writable uint64_t there.
        unsafe { out.write(n) };
        Ok(XorStatus::Ok)
    })
}

/// Writes a string about the chat into the caller's buffer (cbindgen reads no
/// macros, so each function is written out and shares this).
///
/// # Safety
/// `len` must be NULL or point to a writable `size_t`; `buf` NULL or `cap` writable
/// bytes.
unsafe fn string_query(
    chat: XorChat,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    value: impl FnOnce(&Chat) -> Vec<u8>,
) -> XorStatus {
    guard(|| {
        let live = live(chat)?;
        let v = value(&live.chat);
        // SAFETY: the caller's guarantees for the buffer.
        unsafe { write_out(&v, buf, cap, len) }
    })
}

/// This device's full JID.
///
/// # Safety
/// `len` must point to a writable `size_t`; `buf` must be NULL or point to `cap`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_jid(
    chat: XorChat,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe { string_query(chat, buf, cap, len, |c| c.jid().to_string().into_bytes()) }
}

/// The overlay listener's `ip:port` (another device can bootstrap from it).
///
/// # Safety
/// `len` must point to a writable `size_t`; `buf` must be NULL or point to `cap`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_overlay_address(
    chat: XorChat,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe {
        string_query(chat, buf, cap, len, |c| {
            c.overlay_address().to_string().into_bytes()
        })
    }
}

/// Savedata to start this device again with `xor_options_savedata`: key,
/// certificates, the newest configuration and the roster, as text. It holds the
/// private key: store it as a secret.
///
/// # Safety
/// `len` must point to a writable `size_t`; `buf` must be NULL or point to `cap`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_savedata(
    chat: XorChat,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> XorStatus {
    // SAFETY: passed on.
    unsafe { string_query(chat, buf, cap, len, |c| c.savedata().to_bytes()) }
}
