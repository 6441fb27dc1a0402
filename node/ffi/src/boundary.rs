//! What every call shares: status codes, the thread's last error, the panic guard,
//! reading the caller's strings and writing into the caller's buffers.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a call returns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XorStatus {
    /// Done.
    Ok = 0,
    /// `xor_poll`: no event arrived in time.
    NoEvent = 1,
    /// A required pointer is NULL.
    ErrNull = -1,
    /// A string is not UTF-8.
    ErrUtf8 = -2,
    /// A JID argument is not a JID.
    ErrJid = -3,
    /// An argument is out of bounds or malformed (address, size, mode).
    ErrInvalid = -4,
    /// Not a live handle: never issued, closed, or freed.
    ErrHandle = -5,
    /// The options are incomplete or unusable (configuration, credentials, savedata).
    ErrConfig = -6,
    /// Fetching the configuration or enrolling failed.
    ErrEnroll = -7,
    /// The node did not start or join.
    ErrStart = -8,
    /// The output buffer is too small; `*len` says what is needed (plus a NUL).
    ErrBuffer = -9,
    /// A bug inside the library (a caught panic); the handle may be unusable.
    ErrPanic = -10,
    /// The library could not make its threads.
    ErrRuntime = -11,
}

/// A failed call: its status and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: XorStatus,
    pub(crate) message: String,
}

pub(crate) fn fail(status: XorStatus, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

impl From<xor_node::embed::ChatError> for Failure {
    fn from(e: xor_node::embed::ChatError) -> Failure {
        use xor_node::embed::ChatError as E;
        let status = match &e {
            E::Config(_) => XorStatus::ErrConfig,
            E::Enroll(_) => XorStatus::ErrEnroll,
            E::Start(_) => XorStatus::ErrStart,
            E::Jid(_) => XorStatus::ErrJid,
            E::Invalid(_) => XorStatus::ErrInvalid,
            E::Closed => XorStatus::ErrHandle,
        };
        fail(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.push_str(message);
    });
}

/// Runs a call: its failure becomes a status and the thread's last error; a panic
/// is caught here and never unwinds into the caller.
pub(crate) fn guard(call: impl FnOnce() -> Result<XorStatus, Failure>) -> XorStatus {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(status)) => status,
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(&format!("internal error (please report): {what}"));
            XorStatus::ErrPanic
        }
    }
}

/// The caller's bytes.
///
/// # Safety
/// Unless `ptr` is NULL, it must point to `len` bytes readable for the duration of
/// the call.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return Err(fail(XorStatus::ErrNull, format!("{what} is NULL")));
    }
    if len > isize::MAX as usize {
        return Err(fail(
            XorStatus::ErrInvalid,
            format!("{what}: length too large"),
        ));
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes at `ptr` for
    // the call; the length fits an isize as from_raw_parts requires.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The caller's UTF-8 string.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, Failure> {
    // SAFETY: the caller's guarantee is passed on unchanged.
    let b = unsafe { bytes(ptr, len, what) }?;
    std::str::from_utf8(b).map_err(|_| fail(XorStatus::ErrUtf8, format!("{what} is not UTF-8")))
}

/// An optional UTF-8 string: NULL is `None`.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn optional_text<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: as above.
    unsafe { text(ptr, len, what) }.map(Some)
}

/// Writes `value` and a NUL into the caller's buffer; `*len` gets its length.
///
/// # Safety
/// `len` must be NULL or point to a writable `size_t`; unless `buf` is NULL it must
/// point to `cap` writable bytes.
pub(crate) unsafe fn write_out(
    value: &[u8],
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> Result<XorStatus, Failure> {
    if len.is_null() {
        return Err(fail(XorStatus::ErrNull, "len is NULL"));
    }
    // SAFETY: non-NULL, and the caller guarantees it points to a writable size_t.
    unsafe { len.write(value.len()) };
    if buf.is_null() || cap < value.len() + 1 {
        return Err(fail(
            XorStatus::ErrBuffer,
            format!("the buffer needs {} bytes", value.len() + 1),
        ));
    }
    // SAFETY: `buf` is non-NULL with `cap >= value.len() + 1` writable bytes (the
    // caller's guarantee), and cannot overlap `value`, which this library owns.
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), buf, value.len());
        buf.add(value.len()).write(0);
    }
    Ok(XorStatus::Ok)
}

/// Copies the calling thread's last error message into `buf` (see the crate docs for
/// the buffer rules). An empty message means no call on this thread has failed.
///
/// # Safety
/// `len` must point to a writable `size_t`; unless `buf` is NULL it must point to
/// `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xor_last_error(buf: *mut u8, cap: usize, len: *mut usize) -> XorStatus {
    let message = LAST_ERROR.with(|e| e.borrow().clone());
    // Not through `guard`: reading the error must not replace it.
    match catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's guarantees are those of write_out.
        unsafe { write_out(message.as_bytes(), buf, cap, len) }
    })) {
        Ok(Ok(s)) => s,
        Ok(Err(f)) => f.status,
        Err(_) => XorStatus::ErrPanic,
    }
}
