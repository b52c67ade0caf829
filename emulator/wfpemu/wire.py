"""The driver's wire formats, written from their documented layout tables
(wire/src/policy.rs, ask_request.rs, verdict_message.rs, version.rs,
control.rs), not from the decoding code."""

import ipaddress
import struct

# ---- IOCTLs (control.rs table; CTL_CODE(FILE_DEVICE_NETWORK, fn, METHOD_BUFFERED, access))


def ctl_code(device_type, function, method, access):
    return (device_type << 16) | (access << 14) | (function << 2) | method


IOCTL_GET_VERSION = ctl_code(0x12, 0x800, 0, 1)
IOCTL_GET_STATS = ctl_code(0x12, 0x801, 0, 1)
IOCTL_AGENT_GET_REQUEST = ctl_code(0x12, 0x810, 0, 3)
IOCTL_AGENT_SET_VERDICT = ctl_code(0x12, 0x811, 0, 3)
IOCTL_SET_LOG_LEVEL = ctl_code(0x12, 0x802, 0, 3)
assert (IOCTL_GET_VERSION, IOCTL_GET_STATS, IOCTL_AGENT_GET_REQUEST, IOCTL_AGENT_SET_VERDICT) == (
    0x00126000, 0x00126004, 0x0012E040, 0x0012E044)
assert IOCTL_SET_LOG_LEVEL == 0x0012E008


def log_gate(level, reserved=b"\0\0\0"):
    """SET_LOG_LEVEL's input (log_gate.rs: the level code, 3 reserved zero bytes)."""
    return bytes([level]) + reserved

# ---- policy blob (policy.rs: 24-byte header, then the label) ----------------

ACTION_PERMIT, ACTION_BLOCK, ACTION_AUDIT, ACTION_RATE_LIMIT, ACTION_ASK = range(5)
LOG_OFF, LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_TRACE = range(5)
VERDICT_PERMIT, VERDICT_BLOCK = 1, 2


def policy_blob(action, log_level=LOG_OFF, verdict=0, param_a=0, param_b=0, label=b"",
                magic=b"WFPC", version=1, total_len=None):
    """A version-1 policy blob; every field can be overridden to make a bad one."""
    if isinstance(label, str):
        label = label.encode()
    if total_len is None:
        total_len = 24 + len(label)
    header = struct.pack("<4sBBHBBBBIII", magic, version, 0, total_len, action, log_level, verdict,
                         len(label), param_a, param_b, 0)
    assert len(header) == 24
    return header + label


def permit(label="", log_level=LOG_OFF):
    return policy_blob(ACTION_PERMIT, log_level=log_level, label=label)


def block(label="", log_level=LOG_OFF):
    return policy_blob(ACTION_BLOCK, log_level=log_level, label=label)


def audit(label="", log_level=LOG_INFO):
    return policy_blob(ACTION_AUDIT, log_level=log_level, label=label)


def rate_limit(rate_per_sec, burst, label=""):
    return policy_blob(ACTION_RATE_LIMIT, param_a=rate_per_sec, param_b=burst, label=label)


def ask(timeout_ms, default_verdict, label=""):
    return policy_blob(ACTION_ASK, verdict=default_verdict, param_a=timeout_ms, label=label)


# ---- ask request (ask_request.rs: exactly 136 bytes) -----------------------

ASK_REQUEST_LEN = 136


def decode_ask_request(data):
    if len(data) != ASK_REQUEST_LEN:
        raise ValueError(f"ask request is {len(data)} bytes, not {ASK_REQUEST_LEN}")
    (request_id, filter_id, process_id, layer_id, direction, ip_version, protocol, default_verdict,
     label_len, reserved, local_port, remote_port, timeout_ms) = struct.unpack_from("<QQQHBBBBBBHHI", data, 0)
    local = data[40:56]
    remote = data[56:72]
    label = data[72:72 + label_len]
    if reserved != 0 or any(data[72 + label_len:136]):
        raise ValueError("ask request: reserved or label padding bytes are not zero")
    if ip_version == 4:
        if any(local[4:]) or any(remote[4:]):
            raise ValueError("ask request: IPv4 address padding is not zero")
        local_address, remote_address = ipaddress.IPv4Address(local[:4]), ipaddress.IPv4Address(remote[:4])
    elif ip_version == 6:
        local_address, remote_address = ipaddress.IPv6Address(local), ipaddress.IPv6Address(remote)
    else:
        raise ValueError(f"ask request: IP version {ip_version}")
    return {
        "request_id": request_id, "filter_id": filter_id, "process_id": process_id, "layer_id": layer_id,
        "direction": direction, "ip_version": ip_version, "protocol": protocol,
        "default_verdict": default_verdict, "timeout_ms": timeout_ms, "local_address": local_address,
        "local_port": local_port, "remote_address": remote_address, "remote_port": remote_port,
        "label": label.decode(),
    }


# ---- verdict message (verdict_message.rs: exactly 16 bytes) ----------------


def verdict_message(request_id, verdict):
    return struct.pack("<QB7x", request_id, verdict)


# ---- version info (version.rs: exactly 16 bytes) ---------------------------

VERSION_FLAG_LOADED, VERSION_FLAG_ADOPTION_COMPLETE, VERSION_FLAG_AGENT_CONNECTED = 1, 2, 4


def decode_version(data):
    if len(data) != 16:
        raise ValueError(f"version info is {len(data)} bytes, not 16")
    magic, abi, driver_version, flags = struct.unpack("<4sIII", data)
    if magic != b"WFPV":
        raise ValueError(f"version info magic {magic!r}")
    return {"abi_version": abi, "driver_version": driver_version, "flags": flags}
