"""The kernel the image runs against: every ntoskrnl.exe, fwpkclnt.sys and
ndis.sys export the image imports, played by the harness, each checking
what it is given.

Speakeasy calls :meth:`Kernel.dispatch` for every imported function (one
wildcard API hook). A name not in :attr:`Kernel.apis` fails the run with
that name; so do a broken rule (IRQL, pool tag, lock order, handle, double
completion...) and a driver bugcheck. The first failure stops emulation;
the scenario then reports it.
"""

import collections
import re
import struct

from . import constants as c
from . import layouts as L

PAGE = 0x1000
CANARY = b"\xfd" * 16  # written after every pool block, checked on free
UNINITIALIZED_FILL = 0xC1  # what POOL_FLAG_UNINITIALIZED blocks start as


class HarnessStop(Exception):
    """Raised inside a hook after a failure is recorded: stops emulation."""


# The callout's callbacks the filter engine calls (FWPS_CALLOUT2).
CALLOUT_CALLBACKS = ("classifyFn", "notifyFn", "flowDeleteFn")


def _round_up(value, to):
    return (value + to - 1) // to * to


def tag_name(tag):
    return tag.to_bytes(4, "little").decode("latin-1")


class PoolBlock:
    def __init__(self, address, size, tag, flags, map_base):
        self.address = address
        self.size = size
        self.tag = tag
        self.flags = flags
        self.map_base = map_base


class Kernel:
    """ntoskrnl's and the I/O manager's side; :attr:`wfp` is fwpkclnt's,
    :attr:`wdf` KMDF's."""

    def __init__(self, se, printer):
        self.se = se
        self.emu = None  # set once the image is loaded
        self.printer = printer
        self.failures = []
        self.irql = c.PASSIVE_LEVEL
        self.clock = 1000 * 10_000_000  # 100-ns ticks: 1000 s after boot
        self.processor = 0
        self.processor_count = 4
        self.api_counts = collections.Counter()
        self.driver_lines = []
        # pool
        self.pool = {}
        self.freed = {}
        self.pool_allocated = collections.Counter()
        self.pool_freed = collections.Counter()
        self.fail_allocations = collections.Counter()  # tag -> how many to refuse
        self.fail_api = {}  # API name -> (the nth call that fails, its status)
        # spin locks: address -> {"exclusive": bool, "shared": int, "value": int}
        self.locks = {}
        self.held = []  # (lock address, "exclusive"/"shared")
        # I/O manager
        self.driver_object = 0
        self.registry_path = 0
        self.devices = {}
        self.deleted_devices = set()
        # set by the harness around a classify, for FwpsPendOperation0
        self.classify_in_progress = None
        # what the harness is running now ("classifyFn", "notifyFn",
        # "DriverUnload", ...), for the calls allowed only out of band
        self.current_call = None
        # ETW: provider registrations (handle -> {"guid", "name"}), the one
        # trace session (level, keyword) or None, the events it recorded.
        # A session wanting everything is on by default, so every scenario
        # runs the driver's event writing and decodes what it wrote.
        self.etw_registrations = {}
        self.etw_next_handle = 0x45_5457_0000_0000
        self.etw_session = (c.TRACE_LEVEL_VERBOSE, 0)
        self.etw_events = []
        from .packets import Packets
        from .wdf import Wdf
        from .wfp import WfpEngine

        self.wfp = WfpEngine(self)
        self.packets = Packets(self)
        self.wdf = Wdf(self)
        self.apis = {
            # pool
            "ExAllocatePool2": (self.ExAllocatePool2, 3),
            "ExFreePoolWithTag": (self.ExFreePoolWithTag, 2),
            # spin locks
            "ExAcquireSpinLockExclusive": (self.ExAcquireSpinLockExclusive, 1),
            "ExReleaseSpinLockExclusive": (self.ExReleaseSpinLockExclusive, 2),
            "ExAcquireSpinLockShared": (self.ExAcquireSpinLockShared, 1),
            "ExReleaseSpinLockShared": (self.ExReleaseSpinLockShared, 2),
            # time, processors, waiting
            "KeQueryUnbiasedInterruptTime": (self.KeQueryUnbiasedInterruptTime, 0),
            "KeGetCurrentProcessorNumberEx": (self.KeGetCurrentProcessorNumberEx, 1),
            "KeQueryActiveProcessorCountEx": (self.KeQueryActiveProcessorCountEx, 1),
            "KeDelayExecutionThread": (self.KeDelayExecutionThread, 3),
            # ETW
            "EtwRegister": (self.EtwRegister, 4),
            "EtwUnregister": (self.EtwUnregister, 1),
            "EtwSetInformation": (self.EtwSetInformation, 4),
            "EtwProviderEnabled": (self.EtwProviderEnabled, 3),
            "EtwWriteTransfer": (self.EtwWriteTransfer, 6),
            # debug output, bugcheck
            "DbgPrintEx": (self.DbgPrintEx, 3),
            "KeBugCheckEx": (self.KeBugCheckEx, 5),
            # C memory functions
            "memcpy": (self.memcpy, 3),
            "memmove": (self.memmove, 3),
            "memset": (self.memset, 3),
            "memcmp": (self.memcmp, 3),
        }
        self.apis.update(self.wfp.apis())
        self.apis.update(self.wdf.apis())
        self.apis.update(self.packets.apis())

    # ---- plumbing -----------------------------------------------------------

    def fail(self, message):
        """Records a failure and stops emulation (raises :class:`HarnessStop`)."""
        self.failures.append(message)
        raise HarnessStop(message)

    def check(self, condition, message):
        if not condition:
            self.fail(message)

    def dispatch(self, emu, api_name, orig, argv):
        """The one API hook: every import the image calls lands here."""
        name = api_name.split(".", 1)[-1]
        entry = self.apis.get(name)
        if entry is None:
            self.fail(f"unsupported API {api_name}")
        handler, argc = entry
        # At an import's first instruction the caller's `call` has pushed the
        # return address: rsp + 8 must be 16-byte aligned (Windows x64 ABI).
        # unicorn does not fault on a misaligned movaps, so this is checked.
        rsp = self.emu.reg_read("rsp")
        if (rsp + 8) % 16:
            self.fail(f"{api_name} called with a misaligned stack (rsp {rsp:#x})")
        args = self.read_args(argc)
        self.api_counts[name] += 1
        failure = self.fail_api.get(name)
        if failure is not None and self.api_counts[name] == failure[0]:
            # An injected failure: the call returns this status, having done nothing.
            return failure[1]
        result = handler(*args)
        return 0 if result is None else result

    def read_args(self, argc):
        regs = [self.emu.reg_read(r) for r in ("rcx", "rdx", "r8", "r9")]
        args = regs[:argc]
        if argc > 4:
            rsp = self.emu.reg_read("rsp")
            for index in range(4, argc):
                args.append(self.read_u64(rsp + 8 + 8 * index))
        return args

    def read(self, address, size, what="memory"):
        if size == 0:
            return b""
        try:
            return bytes(self.se.mem_read(address, size))
        except Exception:
            self.fail(f"{what}: {size} bytes at {address:#x} are not readable")

    def write(self, address, data, what="memory"):
        if not data:
            return
        try:
            self.se.mem_write(address, bytes(data))
        except Exception:
            self.fail(f"{what}: {len(data)} bytes at {address:#x} are not writable")

    def read_u64(self, address, what="memory"):
        return struct.unpack("<Q", self.read(address, 8, what))[0]

    def write_u64(self, address, value, what="memory"):
        self.write(address, struct.pack("<Q", value), what)

    def read_wide(self, address, max_chars=512):
        data = self.read(address, 2 * max_chars, "UTF-16 string")
        for index in range(0, len(data), 2):
            if data[index:index + 2] == b"\0\0":
                return data[:index].decode("utf-16-le")
        self.fail(f"UTF-16 string at {address:#x} is not terminated within {max_chars} characters")

    def read_cstring(self, address, limit=1024):
        out = bytearray()
        while len(out) < limit:
            byte = self.read(address + len(out), 1, "string")
            if byte == b"\0":
                return bytes(out)
            out += byte
        self.fail(f"string at {address:#x} is not NUL-terminated within {limit} bytes")

    def alloc(self, size, tag):
        """Harness-owned memory on pages of its own (so freeing unmaps it)."""
        address = self.emu.mem_map(_round_up(max(size, 1), PAGE), tag=f"emu.wfpemu.{tag}")
        return address

    def free(self, address):
        self.emu.mem_free(address)

    def require_irql(self, at_most, api):
        if self.irql > at_most:
            self.fail(f"{api} called at IRQL {self.irql} (allowed: <= {at_most})")

    def require_out_of_band(self, api):
        """Not from inside a callout callback: completing a pended operation
        and injecting go to a DPC, a worker, an IOCTL or unload (DDI
        FwpsInjectTransportReceiveAsync0 remarks: TCP only out of band;
        neither Microsoft sample completes from classifyFn or notifyFn)."""
        self.check(self.current_call not in CALLOUT_CALLBACKS,
                   f"{api} from inside {self.current_call}: only out of band (a DPC, worker, IOCTL or unload)")

    def require_no_lock(self, api):
        if self.held:
            locks = ", ".join(f"{a:#x} ({m})" for a, m in self.held)
            self.fail(f"{api} called while holding spin lock(s) {locks}")

    # ---- pool ---------------------------------------------------------------

    def ExAllocatePool2(self, flags, size, tag):
        kinds = flags & (c.POOL_FLAG_NON_PAGED | c.POOL_FLAG_PAGED | c.POOL_FLAG_NON_PAGED_EXECUTE)
        if kinds not in (c.POOL_FLAG_NON_PAGED, c.POOL_FLAG_PAGED, c.POOL_FLAG_NON_PAGED_EXECUTE):
            self.fail(f"ExAllocatePool2: flags {flags:#x} name no single pool type")
        known = (c.POOL_FLAG_USE_QUOTA | c.POOL_FLAG_UNINITIALIZED | c.POOL_FLAG_CACHE_ALIGNED
                 | c.POOL_FLAG_RAISE_ON_FAILURE | kinds)
        self.check(flags & ~known == 0, f"ExAllocatePool2: unknown flags {flags & ~known:#x}")
        self.check(kinds != c.POOL_FLAG_NON_PAGED_EXECUTE, "ExAllocatePool2: executable pool requested")
        self.require_irql(c.APC_LEVEL if kinds == c.POOL_FLAG_PAGED else c.DISPATCH_LEVEL, "ExAllocatePool2")
        name = tag_name(tag)
        self.check(name in c.POOL_TAGS, f"ExAllocatePool2: pool tag {name!r} is not one the driver documents")
        self.check(0 < size <= 1 << 24, f"ExAllocatePool2({name!r}): size {size}")
        if self.fail_allocations[name] > 0:
            self.fail_allocations[name] -= 1
            return 0
        map_base = self.alloc(size + len(CANARY), f"pool.{name}")
        address = map_base
        if flags & c.POOL_FLAG_UNINITIALIZED:
            self.write(address, bytes([UNINITIALIZED_FILL]) * size)
        self.write(address + size, CANARY)
        self.pool[address] = PoolBlock(address, size, tag, flags, map_base)
        self.freed.pop(address, None)
        self.pool_allocated[name] += 1
        return address

    def ExFreePoolWithTag(self, address, tag):
        self.require_irql(c.DISPATCH_LEVEL, "ExFreePoolWithTag")
        block = self.pool.get(address)
        if block is None:
            if address in self.freed:
                self.fail(f"ExFreePoolWithTag: double free of {address:#x} (tag {self.freed[address]!r})")
            self.fail(f"ExFreePoolWithTag: {address:#x} is not a pool block")
        if block.tag != tag:
            self.fail(f"ExFreePoolWithTag: {address:#x} was allocated with tag {tag_name(block.tag)!r}, "
                      f"freed with {tag_name(tag)!r}")
        self.check_canary(block, "ExFreePoolWithTag")
        del self.pool[address]
        self.freed[address] = tag_name(tag)
        self.pool_freed[tag_name(tag)] += 1
        self.free(block.map_base)

    def check_canary(self, block, when):
        if self.read(block.address + block.size, len(CANARY)) != CANARY:
            self.fail(f"{when}: pool block {block.address:#x} ({tag_name(block.tag)!r}, {block.size} bytes) "
                      "was written past its end")

    def pool_in_use(self):
        """Live pool blocks by tag: {tag: (count, bytes)}."""
        usage = {}
        for block in self.pool.values():
            count, size = usage.get(tag_name(block.tag), (0, 0))
            usage[tag_name(block.tag)] = (count + 1, size + block.size)
        return usage

    def pool_block_at(self, address):
        """The live pool block that contains ``address``, if any."""
        for block in self.pool.values():
            if block.address <= address < block.address + block.size:
                return block
        return None

    # ---- spin locks ---------------------------------------------------------

    def _lock(self, address, api):
        self.check(address % 4 == 0, f"{api}: lock {address:#x} is not 4-byte aligned")
        value = struct.unpack("<i", self.read(address, 4, f"{api} lock"))[0]
        state = self.locks.setdefault(address, {"exclusive": False, "shared": 0})
        expected = (-0x80000000 if state["exclusive"] else 0) + state["shared"]
        self.check(value == expected, f"{api}: lock word at {address:#x} is {value:#x}, not {expected:#x}: "
                   "modified outside the ExXxxSpinLock functions")
        return state

    def _store_lock(self, address, state):
        value = (-0x80000000 if state["exclusive"] else 0) + state["shared"]
        self.write(address, struct.pack("<i", value))

    def _acquire(self, address, mode, api):
        self.require_irql(c.DISPATCH_LEVEL, api)
        state = self._lock(address, api)
        if any(held == address for held, _ in self.held):
            self.fail(f"{api}: recursive acquire of spin lock {address:#x} (a deadlock)")
        old = self.irql
        self.irql = max(self.irql, c.DISPATCH_LEVEL)
        if mode == "exclusive":
            state["exclusive"] = True
        else:
            state["shared"] += 1
        self._store_lock(address, state)
        self.held.append((address, mode))
        return old

    def _release(self, address, old_irql, mode, api):
        state = self._lock(address, api)
        if (address, mode) not in self.held:
            self.fail(f"{api}: spin lock {address:#x} is not held {mode}")
        self.check(self.irql == c.DISPATCH_LEVEL, f"{api}: released at IRQL {self.irql}")
        self.check(old_irql <= c.DISPATCH_LEVEL, f"{api}: old IRQL {old_irql}")
        if mode == "exclusive":
            state["exclusive"] = False
        else:
            state["shared"] -= 1
        self._store_lock(address, state)
        index = len(self.held) - 1 - self.held[::-1].index((address, mode))
        del self.held[index]
        self.irql = old_irql & 0xFF

    def ExAcquireSpinLockExclusive(self, lock):
        return self._acquire(lock, "exclusive", "ExAcquireSpinLockExclusive")

    def ExReleaseSpinLockExclusive(self, lock, old_irql):
        self._release(lock, old_irql & 0xFF, "exclusive", "ExReleaseSpinLockExclusive")

    def ExAcquireSpinLockShared(self, lock):
        return self._acquire(lock, "shared", "ExAcquireSpinLockShared")

    def ExReleaseSpinLockShared(self, lock, old_irql):
        self._release(lock, old_irql & 0xFF, "shared", "ExReleaseSpinLockShared")

    # ---- time, processors ---------------------------------------------------

    def KeQueryUnbiasedInterruptTime(self):
        return self.clock

    def KeGetCurrentProcessorNumberEx(self, number):
        if number:
            self.write(number, L.PROCESSOR_NUMBER.pack(Group=0, Number=self.processor), "PROCESSOR_NUMBER")
        return self.processor

    def KeQueryActiveProcessorCountEx(self, group):
        group &= 0xFFFF
        self.check(group in (0, c.ALL_PROCESSOR_GROUPS), f"KeQueryActiveProcessorCountEx: group {group}")
        return self.processor_count

    def KeDelayExecutionThread(self, wait_mode, alertable, interval):
        self.require_irql(c.PASSIVE_LEVEL if alertable & 0xFF else c.APC_LEVEL, "KeDelayExecutionThread")
        self.require_no_lock("KeDelayExecutionThread")
        self.check(wait_mode & 0xFF in (0, 1), f"KeDelayExecutionThread: wait mode {wait_mode}")
        value = struct.unpack("<q", self.read(interval, 8, "KeDelayExecutionThread interval"))[0]
        if value < 0:
            self.clock += -value
        else:
            self.clock = max(self.clock, value)
        return c.STATUS_SUCCESS

    # ---- debug output, bugcheck ---------------------------------------------

    _FORMAT = re.compile(rb"%(%|-?[0-9]*(?:l|ll|I64|z)?[sdiuxXpc])")

    def DbgPrintEx(self, component, level, fmt):
        self.require_irql(0x1F, "DbgPrintEx")
        template = self.read_cstring(fmt)
        rsp = self.emu.reg_read("rsp")
        next_arg = [3]

        def arg():
            index = next_arg[0]
            next_arg[0] += 1
            return self.emu.reg_read("r9") if index == 3 else self.read_u64(rsp + 8 + 8 * index)

        def replace(match):
            spec = match.group(1)
            if spec == b"%":
                return b"%"
            kind = spec[-1:]
            if kind == b"s":
                return self.read_cstring(arg())
            if kind == b"c":
                return bytes([arg() & 0xFF])
            value = arg()
            if b"l" not in spec and b"I64" not in spec and b"z" not in spec and kind != b"p":
                value &= 0xFFFFFFFF
            if kind in (b"d", b"i"):
                bits = 32 if value < 1 << 32 else 64
                value = value - (1 << bits) if value >> (bits - 1) else value
                return str(value).encode()
            if kind == b"u":
                return str(value).encode()
            if kind == b"p":
                return f"{value:016X}".encode()
            return (f"{value:x}" if kind == b"x" else f"{value:X}").encode()

        leftover = self._FORMAT.sub(b"", template)
        self.check(b"%" not in leftover, f"DbgPrintEx: unsupported format {template!r}")
        text = self._FORMAT.sub(replace, template).decode("utf-8", "replace")
        for line in text.rstrip("\n").split("\n"):
            self.driver_lines.append((component, level, line))
            self.printer(line)
        return c.STATUS_SUCCESS

    # ---- ETW ----------------------------------------------------------------

    def _etw_registration(self, handle, api):
        registration = self.etw_registrations.get(handle)
        self.check(registration is not None, f"{api}: handle {handle:#x} is not a registered ETW provider")
        return registration

    def EtwRegister(self, provider_id, callback, context, handle_out):
        self.require_irql(c.PASSIVE_LEVEL, "EtwRegister")
        self.check(provider_id != 0 and handle_out != 0, "EtwRegister: NULL provider id or RegHandle")
        guid = L.guid_str(self.read(provider_id, 16, "EtwRegister ProviderId"))
        self.etw_next_handle += 1
        handle = self.etw_next_handle
        self.etw_registrations[handle] = {"guid": guid, "name": None, "callback": callback}
        self.write_u64(handle_out, handle, "EtwRegister RegHandle")
        return c.STATUS_SUCCESS

    def EtwUnregister(self, handle):
        self.require_irql(c.PASSIVE_LEVEL, "EtwUnregister")
        self._etw_registration(handle, "EtwUnregister")
        del self.etw_registrations[handle]
        return c.STATUS_SUCCESS

    def EtwSetInformation(self, handle, info_class, information, length):
        self.require_irql(c.PASSIVE_LEVEL, "EtwSetInformation")
        registration = self._etw_registration(handle, "EtwSetInformation")
        info_class &= 0xFFFFFFFF
        if info_class != c.EVENT_PROVIDER_SET_TRAITS:
            return c.STATUS_INVALID_DEVICE_REQUEST
        registration["name"] = self._etw_traits(self.read(information, length & 0xFFFFFFFF, "provider traits"),
                                                "EtwSetInformation")
        return c.STATUS_SUCCESS

    def _etw_wants(self, level, keyword):
        if self.etw_session is None:
            return False
        session_level, session_keyword = self.etw_session
        level_ok = level == 0 or level <= session_level
        keyword_ok = keyword == 0 or session_keyword == 0 or keyword & session_keyword != 0
        return level_ok and keyword_ok

    def EtwProviderEnabled(self, handle, level, keyword):
        self._etw_registration(handle, "EtwProviderEnabled")
        return 1 if self._etw_wants(level & 0xFF, keyword) else 0

    def EtwWriteTransfer(self, handle, descriptor, activity_id, related_id, count, data):
        self.require_irql(c.DISPATCH_LEVEL, "EtwWriteTransfer")
        registration = self._etw_registration(handle, "EtwWriteTransfer")
        count &= 0xFFFFFFFF
        event_id, version, channel, level, opcode, task, keyword = struct.unpack(
            "<HBBBBHQ", self.read(descriptor, 16, "EVENT_DESCRIPTOR"))
        self.check(channel == c.WINEVENT_CHANNEL_TRACELOGGING,
                   f"EtwWriteTransfer: Channel {channel}, TraceLogging events use 11")
        self.check(count >= 2, f"EtwWriteTransfer: {count} data descriptors, TraceLogging needs traits + metadata")
        blocks = []
        for index in range(count):
            ptr, size, kind, _r1, _r2 = struct.unpack("<QIBBH", self.read(data + 16 * index, 16,
                                                                         "EVENT_DATA_DESCRIPTOR"))
            blocks.append((kind, self.read(ptr, size, f"event data block {index}")))
        wanted_kinds = [c.EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA, c.EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA]
        kinds = [kind for kind, _ in blocks]
        self.check(kinds[:2] == wanted_kinds and all(k == c.EVENT_DATA_DESCRIPTOR_TYPE_NONE for k in kinds[2:]),
                   f"EtwWriteTransfer: data descriptor types {kinds}, expected [2, 1, 0...]")
        provider = self._etw_traits(blocks[0][1], "EtwWriteTransfer")
        self.check(provider == registration["name"],
                   f"EtwWriteTransfer: traits name {provider!r}, registered as {registration['name']!r}")
        name, fields = self._etw_decode(blocks[1][1], b"".join(block for _, block in blocks[2:]))
        if self._etw_wants(level, keyword):
            self.etw_events.append({"provider": provider, "guid": registration["guid"], "name": name, "id": event_id,
                                    "version": version, "level": level, "opcode": opcode, "task": task,
                                    "keyword": keyword, "fields": fields})
        return c.STATUS_SUCCESS

    def _etw_traits(self, blob, api):
        """Provider traits: u16 size (= the blob's length), the UTF-8 name, NUL."""
        self.check(len(blob) >= 3 and struct.unpack_from("<H", blob)[0] == len(blob),
                   f"{api}: provider traits size field does not match its {len(blob)} bytes")
        end = blob.find(b"\0", 2)
        self.check(end >= 0, f"{api}: provider name not NUL-terminated")
        return blob[2:end].decode("utf-8")

    def _etw_decode(self, meta, payload):
        """Decodes TraceLogging event metadata, then the payload field by
        field: returns (event name, [(field name, value)])."""
        self.check(len(meta) >= 4 and struct.unpack_from("<H", meta)[0] == len(meta),
                   "TraceLogging event metadata: size field does not match")
        at = 2
        while meta[at] & 0x80:  # tag bytes
            at += 1
        at += 1

        def cstr(buf, pos, what):
            end = buf.find(b"\0", pos)
            self.check(end >= 0, f"TraceLogging {what} not NUL-terminated")
            return buf[pos:end].decode("utf-8"), end + 1

        name, at = cstr(meta, at, "event name")
        fields, offset = [], 0

        def take(size, field):
            nonlocal offset
            self.check(offset + size <= len(payload), f"event {name}: data ends inside field {field}")
            chunk = payload[offset:offset + size]
            offset += size
            return chunk

        while at < len(meta):
            field, at = cstr(meta, at, "field name")
            in_type, out_type = meta[at], c.TLG_OUT_DEFAULT
            at += 1
            if in_type & 0x80:
                out_type = meta[at] & 0x7F
                at += 1
            in_type &= 0x7F
            kind = (in_type, out_type)
            if kind == (c.TLG_IN_UINT8, c.TLG_OUT_DEFAULT):
                value = take(1, field)[0]
            elif kind == (c.TLG_IN_UINT16, c.TLG_OUT_DEFAULT):
                value = struct.unpack("<H", take(2, field))[0]
            elif kind == (c.TLG_IN_UINT16, c.TLG_OUT_PORT):
                value = struct.unpack(">H", take(2, field))[0]
            elif kind in ((c.TLG_IN_UINT32, c.TLG_OUT_DEFAULT), (c.TLG_IN_UINT32, c.TLG_OUT_NTSTATUS)):
                value = struct.unpack("<I", take(4, field))[0]
            elif kind == (c.TLG_IN_UINT64, c.TLG_OUT_DEFAULT):
                value = struct.unpack("<Q", take(8, field))[0]
            elif kind in ((c.TLG_IN_COUNTED_STR8, c.TLG_OUT_UTF8), (c.TLG_IN_COUNTED_STR8, c.TLG_OUT_DEFAULT)):
                length = struct.unpack("<H", take(2, field))[0]
                value = take(length, field).decode("utf-8")
            else:
                self.fail(f"event {name}: field {field} has in/out type {kind}, not decodable here")
            fields.append((field, value))
        self.check(offset == len(payload), f"event {name}: {len(payload) - offset} data bytes past its last field")
        return name, fields

    def KeBugCheckEx(self, code, p1, p2, p3, p4):
        name = (code & 0xFFFFFFFF).to_bytes(4, "big").decode("latin-1")
        self.fail(f"KeBugCheckEx({code & 0xFFFFFFFF:#010x} {name!r}, {p1:#x}, {p2:#x}, {p3:#x}, {p4:#x}): "
                  "the driver stopped the system")

    # ---- C memory functions -------------------------------------------------

    def memcpy(self, dest, src, count):
        if count and dest != src and (dest < src + count and src < dest + count):
            self.fail(f"memcpy: overlapping ranges {dest:#x} and {src:#x} ({count} bytes)")
        self.write(dest, self.read(src, count, "memcpy source"), "memcpy destination")
        return dest

    def memmove(self, dest, src, count):
        self.write(dest, self.read(src, count, "memmove source"), "memmove destination")
        return dest

    def memset(self, dest, value, count):
        self.write(dest, bytes([value & 0xFF]) * count, "memset destination")
        return dest

    def memcmp(self, lhs, rhs, count):
        a, b = self.read(lhs, count), self.read(rhs, count)
        for x, y in zip(a, b):
            if x != y:
                return (x - y) & 0xFFFFFFFF
        return 0
