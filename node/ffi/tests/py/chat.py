"""Two players chat through libxor from Python with ctypes: a foreign caller that
knows nothing of Rust, only the C ABI in include/xor.h.

    python3 chat.py LIBXOR OVERLAY CONFIG_URL ROOT_PEM_FILE PASSWORD
"""

import ctypes
import sys
from ctypes import POINTER, byref, c_char_p, c_int32, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p

OK, NO_EVENT = 0, 1
ERR_NULL, ERR_UTF8, ERR_JID, ERR_HANDLE = -1, -2, -3, -5
MESSAGE, SUBSCRIPTION_REQUEST, SUBSCRIPTION_APPROVED = 1, 4, 5


class Event(ctypes.Structure):
    _fields_ = [
        ("kind", c_int32),
        ("from_", POINTER(c_uint8)),
        ("from_len", c_size_t),
        ("text", POINTER(c_uint8)),
        ("text_len", c_size_t),
        ("id", POINTER(c_uint8)),
        ("id_len", c_size_t),
        ("available", c_int32),
    ]


def string(ptr, n):
    return ctypes.string_at(ptr, n).decode()


lib = ctypes.CDLL(sys.argv[1])
overlay, url, pem_path, password = sys.argv[2:6]
pem = open(pem_path, "rb").read()
BYTES = c_char_p  # a Python bytes object passed as (pointer, length)
for name, args in {
    "xor_options_new": [BYTES, c_size_t, POINTER(c_uint64)],
    "xor_options_config_url": [c_uint64, BYTES, c_size_t],
    "xor_options_http_roots_pem": [c_uint64, BYTES, c_size_t],
    "xor_options_enroll": [c_uint64, BYTES, c_size_t, BYTES, c_size_t],
    "xor_options_listen": [c_uint64, BYTES, c_size_t],
    "xor_options_bootstrap": [c_uint64, BYTES, c_size_t],
    "xor_options_start_overlay": [c_uint64, c_int32],
    "xor_options_free": [c_uint64],
    "xor_start": [c_uint64, POINTER(c_uint64)],
    "xor_close": [c_uint64],
    "xor_send": [c_uint64, BYTES, c_size_t, BYTES, c_size_t, c_void_p, c_size_t, POINTER(c_size_t)],
    "xor_subscribe": [c_uint64, BYTES, c_size_t],
    "xor_approve": [c_uint64, BYTES, c_size_t],
    "xor_poll": [c_uint64, POINTER(Event), c_uint32],
    "xor_jid": [c_uint64, c_void_p, c_size_t, POINTER(c_size_t)],
    "xor_overlay_address": [c_uint64, c_void_p, c_size_t, POINTER(c_size_t)],
    "xor_last_error": [c_void_p, c_size_t, POINTER(c_size_t)],
}.items():
    getattr(lib, name).argtypes = args
    getattr(lib, name).restype = c_int32


def last_error():
    buf = ctypes.create_string_buffer(512)
    n = c_size_t()
    lib.xor_last_error(buf, 512, byref(n))
    return buf.value.decode()


def check(status, what):
    if status != OK:
        raise SystemExit(f"{what}: status {status}: {last_error()}")


def b(s):
    data = s.encode() if isinstance(s, str) else s
    return data, len(data)


def query(fn, handle):
    buf = ctypes.create_string_buffer(256)
    n = c_size_t()
    check(fn(handle, buf, 256, byref(n)), fn.__name__)
    return buf.raw[: n.value].decode()


def start(user, first, bootstrap=None):
    o = c_uint64()
    check(lib.xor_options_new(*b(overlay), byref(o)), "options")
    check(lib.xor_options_config_url(o, *b(url)), "config url")
    check(lib.xor_options_http_roots_pem(o, *b(pem)), "roots")
    check(lib.xor_options_enroll(o, *b(user), *b(password)), "enroll")
    check(lib.xor_options_listen(o, *b("127.0.0.1:0")), "listen")
    if first:
        check(lib.xor_options_start_overlay(o, 1), "start overlay")
    if bootstrap:
        check(lib.xor_options_bootstrap(o, *b(bootstrap)), "bootstrap")
    chat = c_uint64()
    check(lib.xor_start(o, byref(chat)), f"start {user}")
    check(lib.xor_options_free(o), "free")
    return chat.value


def wait(chat, kind, text=None):
    ev = Event()
    for _ in range(200):
        st = lib.xor_poll(chat, byref(ev), 100)
        if st == NO_EVENT:
            continue
        check(st, "poll")
        if ev.kind == kind and (text is None or string(ev.text, ev.text_len) == text):
            return string(ev.from_, ev.from_len)
    raise SystemExit(f"no event {kind} {text!r}")


alice = start("alice@example.org", True)
bob = start("bob@example.org", False, query(lib.xor_overlay_address, alice))
alice_jid = query(lib.xor_jid, alice)
print("alice is", alice_jid)

check(lib.xor_send(alice, *b("bob@example.org"), *b("hi from ctypes"), None, 0, None), "send")
assert wait(bob, MESSAGE, "hi from ctypes") == alice_jid
check(lib.xor_send(bob, *b(alice_jid), *b("hi back"), None, 0, None), "send back")
assert wait(alice, MESSAGE, "hi back") == "bob@example.org/game"
check(lib.xor_subscribe(bob, *b("alice@example.org")), "subscribe")
assert wait(alice, SUBSCRIPTION_REQUEST) == "bob@example.org"
check(lib.xor_approve(alice, *b("bob@example.org")), "approve")
assert wait(bob, SUBSCRIPTION_APPROVED) == "alice@example.org"

# Bad input from a foreign caller: a status code each, never a crash.
assert lib.xor_send(alice, None, 3, *b("x"), None, 0, None) == ERR_NULL
assert lib.xor_send(alice, *b(b"\xff\xfe"), *b("x"), None, 0, None) == ERR_UTF8
assert lib.xor_send(alice, *b("no jid@@"), *b("x"), None, 0, None) == ERR_JID
check(lib.xor_close(bob), "close bob")
assert lib.xor_close(bob) == ERR_HANDLE
assert lib.xor_poll(bob, byref(Event()), 0) == ERR_HANDLE
check(lib.xor_close(alice), "close alice")
print("ctypes: ok")
