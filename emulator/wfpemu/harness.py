"""Loads the PE image in speakeasy and drives it the way the I/O manager
and the filter engine would: DriverEntry, IRPs, notifyFn, classifyFn,
DriverUnload. Every call checks the state the kernel is left in."""

import ipaddress
import logging
import re
import struct

import capstone
import speakeasy
from speakeasy.config import get_default_config_dict
from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, x86_const

from . import constants as c
from . import layouts as L
from .kernel import HarnessStop, Kernel
from .layouts import guid_bytes
from .wfp import Filter, ProviderContext

for _name in ("speakeasy", "speakeasy.winemu", "unicorn"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class ScenarioFailure(Exception):
    pass


# Nonvolatile registers of the Windows x64 calling convention (rbp aside:
# speakeasy sets it for each call); a callee must preserve them.
NONVOLATILE = ("rbx", "rsi", "rdi", "r12", "r13", "r14", "r15")
NONVOLATILE_XMM = tuple(getattr(x86_const, f"UC_X86_REG_XMM{n}") for n in range(6, 16))


# The stack the calls made while a call is paused run on: 24 KiB, an x64
# kernel thread's stack (KERNEL_STACK_SIZE in the WDK headers).
PAUSE_STACK_SIZE = 0x6000


class Paused:
    """A call stopped by :meth:`Harness.pause_in`: where, its saved CPU
    state and run, its stack pointer, and the kernel state it ran in."""

    def __init__(self, address, context, run, rsp, irql, processor, classify, while_paused):
        self.address = address
        self.context = context
        self.run = run
        self.rsp = rsp
        self.irql = irql
        self.processor = processor
        self.classify = classify
        self.while_paused = while_paused


class Connection:
    """A connection as its ALE layer describes it: outbound at
    ALE_AUTH_CONNECT_V4 (the default), or inbound at ALE_AUTH_RECV_ACCEPT_V4,
    where it also arrived on an interface and sub-interface, in a
    compartment, with a first packet carrying ``payload``."""

    def __init__(self, local="10.0.0.2", local_port=50000, remote="192.0.2.10", remote_port=443, protocol=6,
                 process_id=4242, layer_id=c.FWPS_LAYER_ALE_AUTH_CONNECT_V4, interface_index=7,
                 sub_interface_index=1, compartment_id=c.DEFAULT_COMPARTMENT_ID, payload=b"", control_data=b""):
        self.local = ipaddress.IPv4Address(local)
        self.local_port = local_port
        self.remote = ipaddress.IPv4Address(remote)
        self.remote_port = remote_port
        self.protocol = protocol
        self.process_id = process_id
        self.layer_id = layer_id
        self.interface_index = interface_index
        self.sub_interface_index = sub_interface_index
        self.compartment_id = compartment_id
        self.payload = payload
        # The socket's control data for its first datagram (WSACMSGHDRs, as
        # the metadata's controlData gives them at ALE_AUTH_CONNECT).
        self.control_data = control_data

    def as_dict(self):
        return {"layer_id": self.layer_id, "local": self.local, "local_port": self.local_port,
                "remote": self.remote, "remote_port": self.remote_port, "protocol": self.protocol,
                "process_id": self.process_id, "interface_index": self.interface_index,
                "sub_interface_index": self.sub_interface_index, "compartment_id": self.compartment_id,
                "payload": self.payload, "control_data": self.control_data}


def link_map_symbols(path):
    """{demangled-ish path suffix: address} from lld-link's /MAP output."""
    symbols = {}
    pattern = re.compile(r"^\s*[0-9a-fA-F]{4}:[0-9a-fA-F]{8}\s+(\S+)\s+([0-9a-fA-F]{16})\s")
    with open(path) as handle:
        for line in handle:
            match = pattern.match(line)
            if match:
                symbols[match.group(1)] = int(match.group(2), 16)
    return symbols


def demangle(name):
    """``crate::module::item`` from a simple Rust v0 symbol (nested plain
    paths, as the link map lists them); anything else as it is."""
    match = re.match(r"_RN[vt](?:N[vt])*C(?:s[0-9A-Za-z]*_)?(?=\d)", name)
    if not match:
        return name
    rest, parts = name[match.end():], []
    while rest[:1].isdigit():
        digits = re.match(r"\d+", rest).group(0)
        length = int(digits)
        parts.append(rest[len(digits):len(digits) + length])
        rest = rest[len(digits) + length:]
    return "::".join(parts) if parts and not rest else name


def v0_suffix(*path):
    """The tail of a Rust v0 mangled name for module path ``path``."""
    return "".join(f"{len(part)}{part}" for part in path)


class Harness:
    """One loaded image in one fresh emulator."""

    def __init__(self, image, link_map, printer=print):
        config = get_default_config_dict()
        config["max_api_count"] = 1_000_000
        config["timeout"] = 120
        config["exceptions"]["dispatch_handlers"] = False
        config["analysis"]["strings"] = False
        self.se = speakeasy.Speakeasy(config=config)
        self.kernel = Kernel(self.se, printer)
        self.wfp = self.kernel.wfp
        self.module = self.se.load_module(image)
        # After load_module: only then does the hook reach the emulator
        # (hooks added earlier are installed by run_module, never called here).
        self.se.add_api_hook(self.kernel.dispatch, "*", "*")
        self.kernel.emu = self.se.emu
        self.base = self.module.base
        self.entry = self.module.base + self.module.ep
        self.image_end = self.module.base + self.module.image_size
        self.symbols = link_map_symbols(link_map)
        self.connection_handles = iter(range(1, 1 << 30))
        self.next_filter_id = 0x10000
        self.next_luid = 0x7000
        self.driver_object = 0
        self.unload_routine = 0
        self.calls = 0
        self.open_files = set()
        self.running_deferred = False
        # pause_in: the armed hooks, the pause just hit, the stack of the
        # calls made while a call is paused
        self._pause_hooks = []
        self._paused = None
        self.pause_stack = None
        self._map_processor_control_region()

    # ---- the processor control region ---------------------------------------

    def _map_processor_control_region(self):
        """x64 kernel code finds its processor's KPCR through GS. The only
        field a driver reads is the one Microsoft's wdm.h reads inline in
        ``KeGetCurrentProcessorIndex`` (``__readgsdword(0x1a4)``: the
        PRCB's ``Number``), which the driver uses for its per-processor
        lines, whole or its low byte or word (a read of 1, 2 or 4 bytes at
        0x1a4). The page GS points at holds the current processor's index
        there; any other read of it fails the scenario (an offset wdm.h
        does not give drivers), and every value read is recorded, so a
        scenario can check the driver used the processor it ran on."""
        emu = self.se.emu
        self.pcr = emu.mem_map(0x1000, tag="wfpemu.kpcr")
        uc = emu.emu_eng.emu
        uc.reg_write(x86_const.UC_X86_REG_GS_BASE, self.pcr)
        k = self.kernel
        k.pcr_number_reads = []

        def on_read(_uc, _access, address, size, _value, _user):
            offset = address - self.pcr
            if offset != c.KPCR_PRCB_NUMBER or size not in (1, 2, 4):
                k.failures.append(f"the driver read {size} byte(s) at KPCR+{offset:#x}: drivers may read only "
                                  f"the PRCB's Number (KPCR+{c.KPCR_PRCB_NUMBER:#x}, wdm.h's "
                                  "KeGetCurrentProcessorIndex)")
                _uc.emu_stop()
                return
            k.pcr_number_reads.append(int.from_bytes(_uc.mem_read(address, size), "little"))

        uc.hook_add(UC_HOOK_MEM_READ, on_read, begin=self.pcr, end=self.pcr + 0xFFF)

    def _set_processor_control_region(self):
        """The current processor's index, where GS-relative code reads it."""
        uc = self.se.emu.emu_eng.emu
        uc.reg_write(x86_const.UC_X86_REG_GS_BASE, self.pcr)
        self.kernel.write(self.pcr + c.KPCR_PRCB_NUMBER, self.kernel.processor.to_bytes(4, "little"), "KPCR")

    # ---- calling into the image ---------------------------------------------

    def symbol(self, *path):
        suffix = v0_suffix(*path)
        found = [address for name, address in self.symbols.items() if name.endswith(suffix)]
        if len(found) != 1:
            raise ScenarioFailure(f"link map: {'::'.join(path)} found {len(found)} times")
        return found[0]

    def call(self, address, args, irql=c.PASSIVE_LEVEL, what="call"):
        """Runs the function at ``address`` with the Windows x64 convention:
        four register arguments, a 32-byte home space, stack arguments
        above it, and rsp+8 16-byte aligned at entry. Returns rax."""
        if not self.base <= address < self.image_end:
            raise ScenarioFailure(f"{what}: {address:#x} is outside the image")
        registers = list(args[:4]) + [0] * (4 - min(len(args), 4))
        stack = [0, 0, 0, 0] + list(args[4:])
        if len(stack) % 2 == 0:
            stack.append(0)
        k = self.kernel
        k.irql = irql
        held_before = list(k.held)
        self.calls += 1
        sentinels = {name: 0x5A5A_0000_0000_0000 | (self.calls << 8) | index
                     for index, name in enumerate(NONVOLATILE)}
        xmm_sentinels = {reg: (0xC3C3 << 112) | (self.calls << 8) | index
                         for index, reg in enumerate(NONVOLATILE_XMM)}
        uc = self.se.emu.emu_eng.emu
        for name, value in sentinels.items():
            self.se.emu.reg_write(name, value)
        for reg, value in xmm_sentinels.items():
            uc.reg_write(reg, value)
        self._set_processor_control_region()
        outer_call, k.current_call = k.current_call, what
        try:
            try:
                self.se.call(address, registers + stack)
            except HarnessStop:
                pass
            while self._paused is not None:
                paused, self._paused = self._paused, None
                self._check_run(what)
                self._hold(paused, what)
                self._resume(paused)
        finally:
            k.current_call = outer_call
        self._check_run(what)
        if k.held != held_before:
            raise ScenarioFailure(f"{what} returned holding spin lock(s): {k.held}")
        if k.irql != irql:
            raise ScenarioFailure(f"{what} returned at IRQL {k.irql}, entered at {irql}")
        clobbered = [name for name, value in sentinels.items() if self.se.emu.reg_read(name) != value]
        clobbered += [f"xmm{6 + i}" for i, (reg, value) in enumerate(xmm_sentinels.items()) if uc.reg_read(reg) != value]
        if clobbered:
            raise ScenarioFailure(f"{what} did not preserve nonvolatile register(s) {', '.join(clobbered)} "
                                  "(Windows x64 calling convention)")
        result = self.se.emu.reg_read("rax")
        self.run_deferred()
        return result

    def _check_run(self, what):
        """Fails the call if a hook recorded a failure or the CPU stopped."""
        run = self.se.emu.curr_run
        if self.kernel.failures:
            raise ScenarioFailure(f"{what}: {self.kernel.failures[0]}")
        if run is not None and run.error:
            error = run.error
            detail = getattr(error, "model_dump", lambda: error)()
            raise ScenarioFailure(f"{what}: the emulated CPU stopped: {self._describe_error(detail)}")

    # ---- pausing a call in flight -------------------------------------------

    def function_instructions(self, address):
        """The machine code of the image's function at ``address``, decoded
        (capstone, with operand details) up to the next link-map symbol: what
        a scenario searches for the instruction to pause at, so that no
        address is written down that the next build would move."""
        following = [start for start in self.symbols.values() if start > address]
        end = min(following) if following else self.image_end
        if not self.base <= address < end <= self.image_end:
            raise ScenarioFailure(f"{address:#x} is not a function of the image")
        disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        disassembler.detail = True
        return list(disassembler.disasm(bytes(self.se.mem_read(address, end - address)), address))

    def memory_operand(self, instruction):
        """The address ``instruction``'s memory operand names with the
        registers as they are now (at a pause: the values the instruction
        used, if it changed none of them)."""
        for operand in instruction.operands:
            if operand.type == capstone.x86.X86_OP_MEM:
                mem = operand.mem
                if mem.segment != 0 or mem.base == capstone.x86.X86_REG_RIP:
                    raise ScenarioFailure(f"{instruction.address:#x}: {instruction.mnemonic} {instruction.op_str} "
                                          "is not a plain register-based operand")
                value = mem.disp
                if mem.base:
                    value += self.se.emu.reg_read(instruction.reg_name(mem.base))
                if mem.index:
                    value += mem.scale * self.se.emu.reg_read(instruction.reg_name(mem.index))
                return value & 0xFFFF_FFFF_FFFF_FFFF
        raise ScenarioFailure(f"{instruction.address:#x}: {instruction.mnemonic} {instruction.op_str} has no "
                              "memory operand")

    def pause_in(self, function, predicate, while_paused):
        """Stops the next call that runs ``function`` (an address in the
        image) before the first of its own instructions for which
        ``predicate(address)`` is true (it may read registers through
        ``self.se.emu.reg_read``), runs ``while_paused(paused)``, then
        resumes the call where it stopped; the call then ends with the
        checks every call gets (its failures, nonvolatile registers, IRQL,
        spin locks), and its caller (``classify``, ``notify``) with its own.

        Why: the engine may call the driver on another processor while one
        of its callbacks is still running (a DELETE notify during a
        classify of the same filter, which WFP does not rule out), and the
        driver's answer to that is in machine code only this interleaving
        runs. speakeasy runs one call at a time and starts each on the same
        stack (``call`` resets rsp to ``stack_base``), so the paused call's
        CPU state is saved (``context_save``) and the calls
        ``while_paused`` makes run on a stack region of their own; the
        paused frame is checked unchanged and the CPU state, the IRQL, the
        processor and the classification in progress are put back before
        it resumes. One-shot: the hook goes once it has fired."""
        if not self.base <= function < self.image_end:
            raise ScenarioFailure(f"pause_in: {function:#x} is outside the image")
        uc = self.se.emu.emu_eng.emu
        instructions = self.function_instructions(function)
        end = instructions[-1].address + instructions[-1].size
        state = {"armed": True}

        def on_code(_uc, address, _size, _user):
            if not state["armed"] or not predicate(address):
                return
            state["armed"] = False
            k = self.kernel
            self._paused = Paused(address, _uc.context_save(), self.se.emu.curr_run,
                                  self.se.emu.reg_read("rsp"), k.irql, k.processor, k.classify_in_progress,
                                  while_paused)
            _uc.emu_stop()

        state["hook"] = uc.hook_add(UC_HOOK_CODE, on_code, begin=function, end=end - 1)
        self._pause_hooks.append(state)

    def _hold(self, paused, what):
        """The pause: ``while_paused`` runs its calls on a stack region of
        their own, the paused frame (rsp up to the call's stack base)
        checked unchanged afterwards."""
        emu = self.se.emu
        uc = emu.emu_eng.emu
        for state in self._pause_hooks:
            if not state["armed"] and state.get("hook") is not None:
                uc.hook_del(state["hook"])
                state["hook"] = None
        self._pause_hooks = [state for state in self._pause_hooks if state["armed"]]
        if uc.reg_read(x86_const.UC_X86_REG_RIP) != paused.address:
            raise ScenarioFailure(f"{what}: the pause at {paused.address:#x} stopped at "
                                  f"{uc.reg_read(x86_const.UC_X86_REG_RIP):#x}")
        if self.pause_stack is None:
            self.pause_stack = emu.mem_map(PAUSE_STACK_SIZE, tag="wfpemu.pause_stack")
        if self.pause_stack <= paused.rsp < self.pause_stack + PAUSE_STACK_SIZE:
            raise ScenarioFailure(f"{what}: paused inside a call made while another was paused (one pause at a "
                                  "time: they would share the pause stack)")
        frame = bytes(emu.mem_read(paused.rsp, emu.stack_base - paused.rsp))
        stack_base = emu.stack_base
        emu.stack_base = self.pause_stack + PAUSE_STACK_SIZE - 0x100
        self.kernel.classify_in_progress = None
        try:
            paused.while_paused(paused)
        finally:
            emu.stack_base = stack_base
        if bytes(emu.mem_read(paused.rsp, stack_base - paused.rsp)) != frame:
            raise ScenarioFailure(f"{what}: the calls made while it was paused wrote to its stack frame")

    def _resume(self, paused):
        """Continues the paused call from its saved CPU state, as the run it
        was, until it returns (or pauses again)."""
        emu = self.se.emu
        uc = emu.emu_eng.emu
        k = self.kernel
        k.irql, k.processor, k.classify_in_progress = paused.irql, paused.processor, paused.classify
        uc.context_restore(paused.context)
        self._set_processor_control_region()
        emu.curr_run = paused.run
        emu.run_complete = False
        emu.curr_mod = emu.get_module_from_addr(paused.address)
        try:
            emu.emu_eng.start(paused.address, timeout=emu.config.timeout, count=emu.config.max_instructions)
        except HarnessStop:
            pass
        except Exception as error:  # noqa: BLE001 - as speakeasy's own run loop records it
            paused.run.error = emu.get_error_info(str(error), emu.get_pc())
        emu.on_emu_complete()

    def _describe_error(self, error):
        if isinstance(error, dict):
            keys = ("type", "pc", "address", "access_type", "api_name", "instr")
            parts = []
            for key in keys:
                value = error.get(key)
                if value is None:
                    continue
                parts.append(f"{key}={value:#x}" if isinstance(value, int) else f"{key}={value}")
            pc = error.get("pc")
            if isinstance(pc, str):
                pc = int(pc, 16) if pc.lower().startswith("0x") else None
            name = self.name_of(pc)
            return ", ".join(parts) + (f" in {name}" if name else "")
        return str(error)

    def name_of(self, address):
        if not isinstance(address, int):
            return None
        best = None
        for name, start in self.symbols.items():
            if start <= address and (best is None or start > best[1]):
                best = (name, start)
        return f"{demangle(best[0])}+{address - best[1]:#x}" if best else None

    def run_deferred(self):
        """What the engine does once the driver's call has returned: the
        reauthorization classify a completion at ALE_AUTH_CONNECT triggers,
        and flowDeleteFn for contexts removed with STATUS_PENDING. In order:
        a call made here (a reauthorization classify) does not start the
        next item itself, so each item finishes before the next begins (a
        datagram sent after its completion finds the reauthorization done)."""
        if self.running_deferred:
            return
        self.running_deferred = True
        try:
            self._run_deferred()
        finally:
            self.running_deferred = False

    def _run_deferred(self):
        while self.wfp.deferred:
            kind, item = self.wfp.deferred.pop(0)
            if kind == "reauthorize":
                f = item["filter"]
                if f.id not in self.wfp.filters or self.wfp.callout_by_key(f.callout_key) is None:
                    item["reauthorization"] = "not classified: the filter or its callout is gone"
                    continue
                item["reauthorization"] = self.classify(f, item["connection"], reauthorization=True,
                                                        reason=c.REAUTHORIZE_REASON_CLASSIFY_COMPLETION)
            elif kind == "flow_delete":
                (flow_id, layer_id, callout_id), context = item
                callout = self.wfp.callouts.get(callout_id) or next(
                    (co for co in self.wfp.unregistered if co.id == callout_id), None)
                self.call(callout.flow_delete_fn, [layer_id, callout_id, context], irql=c.DISPATCH_LEVEL,
                          what="flowDeleteFn")
            elif kind == "inject":
                self.deliver_injection(item)
            elif kind == "send":
                self.deliver_send(item)

    def deliver_injection(self, injection):
        """What the stack does with a clone FwpsInjectTransportReceiveAsync0
        took: the packet reaches ALE_AUTH_RECV_ACCEPT again, where the engine
        classifies it (layerData = the clone, data offset at the beginning
        of the data as for any inbound packet there), then hands it back
        (at the IP header, where it was injected) through the completion
        function, at DISPATCH_LEVEL."""
        packet, f = injection["packet"], injection["filter"]
        injected_at = packet.data_offset
        packet.data_offset += packet.ip_header + packet.transport_header
        self.kernel.packets.write(packet)
        if f.id in self.wfp.filters and self.wfp.callout_by_key(f.callout_key) is not None:
            injection["reclassification"] = self.classify(f, packet.connection, packet=packet)
        else:
            injection["reclassification"] = "not classified: the filter or its callout is gone"
        packet.data_offset = injected_at
        self.kernel.packets.write(packet)
        packet.state = "driver"
        injection["completed"] = True
        self.call(injection["completion_fn"], [injection["completion_context"], packet.nbl, 1],
                  irql=c.DISPATCH_LEVEL, what="injection completionFn")
        injection["freed_by_completion"] = packet.state == "freed"

    def deliver_send(self, injection):
        """What the stack does with a datagram FwpsInjectTransportSendAsync1
        took: the completion's reauthorization ran first (deferred before
        it), so the connection is authorized and the datagram goes out
        without another classification (the simulated kernel's D3; sent
        before the reauthorization, the engine would classify it at
        ALE_AUTH_CONNECT, which the harness does not model and reports);
        then the completion function runs at DISPATCH_LEVEL with the list."""
        packet = injection["packet"]
        # The completion of the operation pended with the datagram this is
        # a copy of (a connect completes with NULL, so the list names none).
        completion = next((x for x in self.wfp.completions
                           if self.wfp.pended[x["context"]]["progress"].get("packet") is packet.parent), None)
        reauthorization = completion["reauthorization"] if completion else None
        if not (isinstance(reauthorization, dict) and reauthorization["actionType"] == c.FWP_ACTION_PERMIT):
            raise ScenarioFailure(f"a datagram was sent on a connection not authorized (its completion's "
                                  f"reauthorization: {reauthorization})")
        injection["sent"] = self.kernel.read(packet.frame + packet.data_offset, packet.data_length)
        packet.state = "driver"
        injection["completed"] = True
        self.call(injection["completion_fn"], [injection["completion_context"], packet.nbl, 1],
                  irql=c.DISPATCH_LEVEL, what="send completionFn")
        injection["freed_by_completion"] = packet.state == "freed"

    def end_flow(self, flow_id):
        """The connection closes: the engine calls flowDeleteFn for every
        context associated with the flow. Returns how many it called."""
        ended = [(key, ctx) for key, ctx in self.wfp.flow_contexts.items() if key[0] == flow_id]
        for key, context in ended:
            del self.wfp.flow_contexts[key]
            _, layer_id, callout_id = key
            callout = self.wfp.callouts.get(callout_id)
            self.call(callout.flow_delete_fn, [layer_id, callout_id, context], irql=c.DISPATCH_LEVEL,
                      what="flowDeleteFn")
        return len(ended)

    # ---- the I/O manager ----------------------------------------------------

    def driver_entry(self, expected=c.STATUS_SUCCESS):
        """The I/O manager calls the image's entry point, FxDriverEntry,
        which binds to KMDF and calls DriverEntry."""
        k = self.kernel
        self.driver_object = k.alloc(L.DRIVER_OBJECT.size, "DRIVER_OBJECT")
        name = "\\Driver\\wfpcallout".encode("utf-16-le")
        registry = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\wfpcallout".encode("utf-16-le")
        strings = k.alloc(len(name) + 64, "driver strings")
        k.write(strings, name + b"\0\0")
        # The registry path is the I/O manager's, freed when the entry point
        # returns: a driver that keeps the pointer faults on its next use.
        registry_buffer = k.alloc(len(registry) + 2, "RegistryPath buffer")
        k.write(registry_buffer, registry + b"\0\0")
        registry_path = k.alloc(L.UNICODE_STRING.size, "RegistryPath")
        k.write(registry_path, L.UNICODE_STRING.pack(Length=len(registry), MaximumLength=len(registry) + 2,
                                                    Buffer=registry_buffer))
        k.registry_path = registry_path
        k.write(self.driver_object, L.DRIVER_OBJECT.pack(
            Type=c.IO_TYPE_DRIVER, Size=L.DRIVER_OBJECT.size, DriverStart=self.base,
            DriverSize=self.image_end - self.base, DriverInit=self.entry,
            **{"DriverName.Length": len(name), "DriverName.MaximumLength": len(name) + 2,
               "DriverName.Buffer": strings}))
        k.driver_object = self.driver_object
        status = self.call(self.entry, [self.driver_object, registry_path], what="FxDriverEntry") & 0xFFFFFFFF
        k.free(registry_path)
        k.free(registry_buffer)
        if status != expected:
            raise ScenarioFailure(f"FxDriverEntry returned {status:#010x}, expected {expected:#010x}")
        if status != c.STATUS_SUCCESS:
            return status
        fields = L.DRIVER_OBJECT.unpack(k.read(self.driver_object, L.DRIVER_OBJECT.size))
        self.unload_routine = fields["DriverUnload"]
        wdf = k.wdf
        if wdf.device is None or not wdf.device["open"]:
            raise ScenarioFailure("DriverEntry returned success without an open control device")
        if fields["DeviceObject"] != wdf.device["wdm"]:
            raise ScenarioFailure("DRIVER_OBJECT.DeviceObject is not the control device's")
        if wdf.timer is None or not wdf.timer["running"]:
            raise ScenarioFailure("DriverEntry returned success without starting the timeout timer")
        self.device = wdf.device["wdm"]
        return status

    def unload(self, handles_open=False):
        """The I/O manager calls DriverUnload: the stub's, which runs the
        framework's (EvtDriverUnload, then the framework's objects go) and
        then unbinds. ``handles_open`` skips the I/O manager's rule that
        every handle is closed first: single-threaded, it is how a scenario
        reaches the state a race leaves at DriverUnload (a request filed
        after the last agent's cleanup)."""
        if not self.unload_routine:
            raise ScenarioFailure("DriverEntry set no DriverUnload")
        if self.open_files and not handles_open:
            # The I/O manager defers DriverUnload until every handle is closed.
            raise ScenarioFailure(f"harness: unload with {len(self.open_files)} handle(s) still open")
        self.call(self.unload_routine, [self.driver_object], what="DriverUnload")
        wdf = self.kernel.wdf
        if not wdf.unload_ran or not wdf.unbound:
            raise ScenarioFailure(f"DriverUnload returned with EvtDriverUnload run: {wdf.unload_ran}, "
                                  f"unbound: {wdf.unbound}")

    def open_file(self):
        """A handle opened on the control device: the framework creates the
        file object (no EvtDeviceFileCreate: it succeeds the create itself)."""
        k = self.kernel
        if not k.wdf.device or not k.wdf.device["open"]:
            raise ScenarioFailure("a handle opened on a control device that is not open")
        file_object = k.alloc(L.FILE_OBJECT.size, "FILE_OBJECT")
        k.write(file_object, L.FILE_OBJECT.pack(Type=c.IO_TYPE_FILE, Size=L.FILE_OBJECT.size,
                                                DeviceObject=self.device))
        self.open_files.add(file_object)
        return file_object

    def cleanup_file(self, file_object):
        """The last user handle closes: EvtFileCleanup at PASSIVE_LEVEL. The
        driver must not leave a request of this file in its manual queue."""
        k = self.kernel
        routine = k.wdf.device["file_cleanup"]
        if not routine:
            raise ScenarioFailure("the control device has no EvtFileCleanup")
        self.call(routine, [file_object], what="EvtFileCleanup")
        left = [hex(h) for q in k.wdf.queues.values() for h in q["parked"]
                if k.wdf.requests[h]["file"] == file_object]
        if left:
            raise ScenarioFailure(f"EvtFileCleanup left request(s) {left} of the closing handle queued")

    def close_file(self, file_object):
        self.open_files.discard(file_object)
        self.kernel.free(file_object)

    def ioctl(self, file_object, code, input_bytes=b"", output_length=0):
        """An IOCTL (METHOD_BUFFERED) through the sequential queue: the
        framework presents it to EvtIoDeviceControl at PASSIVE_LEVEL. The
        returned record fills in when the request completes, which may be
        later (a parked get-request)."""
        k = self.kernel
        if file_object not in self.open_files:
            raise ScenarioFailure("harness: IOCTL on a handle that is not open")
        queue, record = k.wdf.present(file_object, code, bytes(input_bytes), output_length)
        routine = k.wdf.queues[queue]["io_device_control"]
        self.call(routine, [queue, record["handle"], output_length, len(input_bytes), code],
                  what=f"EvtIoDeviceControl {code:#010x}")
        if record["state"] == "driver":
            raise ScenarioFailure(f"EvtIoDeviceControl {code:#010x} returned owning its request: a sequential "
                                  "queue delivers nothing more until it is completed or forwarded")
        return record

    def fire_timer(self):
        """The timeout timer's period elapses: EvtTimerFunc at DISPATCH_LEVEL."""
        timer = self.kernel.wdf.timer
        if timer is None or not timer["running"]:
            return False
        self.call(timer["function"], [timer["handle"]], irql=c.DISPATCH_LEVEL, what="EvtTimerFunc")
        return True

    # ---- the filter engine --------------------------------------------------

    def registered(self):
        """{callout key: Callout} of the registered callouts."""
        return {co.key: co for co in self.wfp.callouts.values()}

    def make_filter(self, policy, callout_key=c.CALLOUT_CONNECT_V4, fwpm_flags=0, raw_context=0,
                    context_type=c.FWPM_GENERAL_CONTEXT, weight=10, action_type=None):
        """A filter naming one of our callouts. Its action is what wfpctl
        uses unless ``action_type`` says otherwise: a terminating callout at
        the authorization layers, an inspection callout at flow-established
        (where a filter must not return a verdict)."""
        filter_id = self.next_filter_id
        self.next_filter_id += 1
        provider_context = None
        if policy is not None:
            provider_context = ProviderContext(f"6a1d0000-0000-4000-8000-{filter_id:012x}", self.next_luid,
                                               bytes(policy), context_type)
            self.next_luid += 1
            fwpm_flags |= c.FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT
        layer_key, flow_layer = c.CALLOUTS[callout_key]
        if action_type is None:
            action_type = c.FWP_ACTION_CALLOUT_INSPECTION if flow_layer else c.FWP_ACTION_CALLOUT_TERMINATING
        key = guid_bytes(f"f11e0000-0000-4000-8000-{filter_id:012x}")
        return Filter(filter_id, key, layer_key, callout_key, provider_context, fwpm_flags, raw_context,
                      c.SUBLAYER_KEY, weight, action_type)

    def add_preexisting(self, f):
        """A filter that names our callout before the driver loads (a
        persistent filter from an earlier load): no ADD notify will come."""
        self.wfp.filters[f.id] = f
        f.live = True
        if f.provider_context is not None:
            self.wfp.provider_contexts[f.provider_context.key] = f.provider_context

    def materialize(self, f, context_value):
        """The engine's run-time FWPS_FILTER2 for ``f``, as notifyFn and
        classifyFn see it, with ``context`` as given."""
        k = self.kernel
        callout = self.registered().get(f.callout_key)
        if callout is None:
            raise ScenarioFailure(f"callout {f.callout_key} is not registered")
        managed = self.wfp.mgmt_callouts.get(f.callout_key, {})
        provider_context_address = 0
        size = L.FWPS_FILTER2.size
        if f.provider_context is not None:
            size += L.FWPM_PROVIDER_CONTEXT2.size + L.FWP_BYTE_BLOB.size + len(f.provider_context.data)
        address = k.alloc(size, "FWPS_FILTER2")
        f.memory.append(address)
        # The engine fills providerContext only for callouts added with
        # FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT (WFP-SEMANTICS, section 6).
        if f.provider_context is not None and managed.get("flags", 0) & c.FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT:
            provider_context_address = address + L.FWPS_FILTER2.size
            self.wfp.write_provider_context(provider_context_address, f.provider_context)
        fwps_flags = c.FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT if f.fwpm_flags & c.FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT else 0
        k.write(address, L.FWPS_FILTER2.pack(
            filterId=f.id, flags=fwps_flags, subLayerWeight=0x8000, numFilterConditions=0, filterCondition=0,
            context=context_value, providerContext=provider_context_address,
            **{"weight.type": c.FWP_UINT64, "weight.value": f.weight,
               "action.type": f.action_type, "action.calloutId": callout.id}))
        f.fwps = address
        return callout

    def release_filter_memory(self, f):
        for address in f.memory:
            self.kernel.free(address)
        f.memory = []
        f.fwps = 0

    def notify(self, notify_type, f, filter_key=True, irql=c.PASSIVE_LEVEL):
        callout = self.registered()[f.callout_key]
        key_address = 0
        if filter_key:
            key_address = self.kernel.alloc(16, "filterKey")
            self.kernel.write(key_address, f.key)
        status = self.call(callout.notify_fn, [notify_type, key_address, f.fwps], irql=irql,
                           what="notifyFn") & 0xFFFFFFFF
        if key_address:
            self.kernel.free(key_address)
        return status

    def add_filter(self, f, irql=c.PASSIVE_LEVEL):
        """FwpmFilterAdd0 as the engine runs it: the ADD notify (context
        starts as the provider context's LUID, or rawContext), then the
        filter is live unless notify vetoed it. Returns the notify status."""
        initial = f.provider_context.luid if f.provider_context is not None else f.raw_context
        self.materialize(f, initial)
        status = self.notify(c.FWPS_CALLOUT_NOTIFY_ADD_FILTER, f, irql=irql)
        if c.nt_success(status):
            self.wfp.filters[f.id] = f
            f.live = True
            if f.provider_context is not None:
                self.wfp.provider_contexts[f.provider_context.key] = f.provider_context
        else:
            self.release_filter_memory(f)
        return status

    def filter_context(self, f):
        return L.FWPS_FILTER2.unpack(self.kernel.read(f.fwps, L.FWPS_FILTER2.size))["context"]

    def delete_filter(self, f, irql=c.PASSIVE_LEVEL, classify_running=False):
        """FwpmFilterDeleteById0: the DELETE notify (filterKey NULL), then
        the filter is gone whatever notify returned. With
        ``classify_running`` (a classify of ``f`` paused in flight) the
        engine's FWPS_FILTER2 stays until that classify has returned: the
        scenario frees it then (``release_filter_memory``), as classifyFn's
        filter is valid for the whole call."""
        if not f.fwps:
            self.materialize(f, f.raw_context)
        status = self.notify(c.FWPS_CALLOUT_NOTIFY_DELETE_FILTER, f, filter_key=False, irql=irql)
        self.wfp.filters.pop(f.id, None)
        f.live = False
        if not classify_running:
            self.release_filter_memory(f)
        return status

    def classify(self, f, connection, rights=c.FWPS_RIGHT_ACTION_WRITE, reauthorization=False,
                 completion_handle=True, processor=0, irql=c.DISPATCH_LEVEL, flow_handle=0, packet=None, reason=None):
        """classifyFn at the connection's layer (ALE_AUTH_CONNECT_V4,
        ALE_FLOW_ESTABLISHED_V4 with a ``flow_handle``, or
        ALE_AUTH_RECV_ACCEPT_V4 with the connection's first packet, or
        ``packet``, as layerData) for ``f`` (which must be live and
        materialized). Returns what classify wrote, whether it pended, and
        the packet. A ``reason`` (FWP_CONDITION_REAUTHORIZE_REASON_*) is put
        in the layer's REAUTHORIZE_REASON field, which extends the value
        array past the Vista field set."""
        k = self.kernel
        conn = connection if isinstance(connection, dict) else connection.as_dict()
        callout = self.registered().get(f.callout_key)
        if callout is None:
            raise ScenarioFailure("classify: the filter's callout is not registered")
        if not f.fwps:
            raise ScenarioFailure("classify: the engine never showed this filter to the callout")
        count, flags_field = c.LAYER_SHAPES[conn["layer_id"]]
        reason_field = c.REAUTHORIZE_REASON_FIELDS.get(conn["layer_id"]) if reason is not None else None
        if reason_field is not None:
            count = max(count, reason_field + 1)
        memory = k.alloc(L.FWPS_INCOMING_VALUES0.size + 16 * count + L.FWPS_INCOMING_METADATA_VALUES0.size
                         + L.FWPS_CLASSIFY_OUT0.size, "classify")
        values = memory
        array = values + L.FWPS_INCOMING_VALUES0.size
        metadata = array + 16 * count
        out = metadata + L.FWPS_INCOMING_METADATA_VALUES0.size
        entries = [L.FWP_VALUE0.pack(type=c.FWP_EMPTY)] * count
        entries[c.FIELD_IP_LOCAL_ADDRESS] = L.FWP_VALUE0.pack(type=c.FWP_UINT32, uint32=int(conn["local"]))
        entries[c.FIELD_IP_LOCAL_PORT] = L.FWP_VALUE0.pack(type=c.FWP_UINT16, uint16=conn["local_port"])
        entries[c.FIELD_IP_PROTOCOL] = L.FWP_VALUE0.pack(type=c.FWP_UINT8, uint8=conn["protocol"])
        entries[c.FIELD_IP_REMOTE_ADDRESS] = L.FWP_VALUE0.pack(type=c.FWP_UINT32, uint32=int(conn["remote"]))
        entries[c.FIELD_IP_REMOTE_PORT] = L.FWP_VALUE0.pack(type=c.FWP_UINT16, uint16=conn["remote_port"])
        flags = c.FWP_CONDITION_FLAG_IS_REAUTHORIZE if reauthorization else 0
        entries[flags_field] = L.FWP_VALUE0.pack(type=c.FWP_UINT32, uint32=flags)
        if reason_field is not None:
            entries[reason_field] = L.FWP_VALUE0.pack(type=c.FWP_UINT32, uint32=reason)
        if conn["layer_id"] in c.PACKET_LAYERS:
            entries[c.FIELD_RECV_ACCEPT_INTERFACE_INDEX] = L.FWP_VALUE0.pack(type=c.FWP_UINT32,
                                                                            uint32=conn["interface_index"])
            entries[c.FIELD_RECV_ACCEPT_SUB_INTERFACE_INDEX] = L.FWP_VALUE0.pack(type=c.FWP_UINT32,
                                                                                uint32=conn["sub_interface_index"])
            if packet is None:
                packet = k.packets.incoming(conn, conn["payload"])
        elif conn["layer_id"] in c.DATAGRAM_LAYERS and conn["protocol"] == 17 and not reauthorization \
                and packet is None:
            # A UDP connect's initial classification carries its first datagram.
            packet = k.packets.outgoing(conn, conn["payload"])
        k.write(array, b"".join(entries))
        k.write(values, L.FWPS_INCOMING_VALUES0.pack(layerId=conn["layer_id"], valueCount=count,
                                                     incomingValue=array))
        handle = 0xFFFF_D000_0000_0000 + 0x10 * next(self.connection_handles) if completion_handle else 0
        endpoint = self.wfp.endpoint_of(conn) if conn["layer_id"] in c.DATAGRAM_LAYERS else 0
        control = 0
        if endpoint and packet is not None and conn.get("control_data"):
            # Lent for the call only: freed when classify returns, so a
            # callout that sends it later must have copied it.
            control = k.alloc(len(conn["control_data"]), "classify control data")
            k.write(control, conn["control_data"])
            conn["classify_control_data"] = control
        k.write(metadata, self._metadata(conn, handle, flow_handle, packet, endpoint, control))
        k.write(out, L.FWPS_CLASSIFY_OUT0.pack(actionType=0, rights=rights, flags=0))
        before = k.read(values, out - values) + k.read(f.fwps, L.FWPS_FILTER2.size)
        progress = {"completion_handle": handle, "has_completion_handle": bool(handle),
                    "reauthorization": reauthorization, "pended": None, "filter": f, "connection": conn,
                    "packet": packet}
        k.processor = processor
        k.classify_in_progress = progress
        if packet is not None:
            k.packets.enter_classify(packet)
        try:
            self.call(callout.classify_fn, [values, metadata, packet.nbl if packet else 0, 0, f.fwps, 0, out],
                      irql=irql, what="classifyFn")
        finally:
            k.classify_in_progress = None
        after = k.read(values, out - values) + k.read(f.fwps, L.FWPS_FILTER2.size)
        if control:
            k.write(control, b"\xcd" * len(conn["control_data"]))
            k.free(control)
        if after != before:
            raise ScenarioFailure("classifyFn wrote to its const inputs (incoming values, metadata or filter)")
        self._packet_back(packet)
        result = L.FWPS_CLASSIFY_OUT0.unpack(k.read(out, L.FWPS_CLASSIFY_OUT0.size))
        k.free(memory)
        result["pended"] = progress["pended"]
        result["packet"] = packet
        if progress["pended"] is not None:
            ok = (result["actionType"] == c.FWP_ACTION_BLOCK and result["flags"] & c.FWPS_CLASSIFY_OUT_FLAG_ABSORB
                  and not result["rights"] & c.FWPS_RIGHT_ACTION_WRITE)
            if not ok:
                raise ScenarioFailure(f"a pended classify must answer BLOCK + ABSORB with the write right "
                                      f"cleared, got {describe(result)}")
        return result

    @staticmethod
    def _metadata(conn, completion_handle, flow_handle, packet, endpoint=0, control=0):
        """FWPS_INCOMING_METADATA_VALUES0 as the engine fills it at the
        connection's layer: with a packet also the header sizes (at
        ALE_AUTH_RECV_ACCEPT what lies before layerData's data offset), the
        compartment and the packet's direction; at ALE_AUTH_CONNECT the
        sending socket (what send injection names) and the remote scope."""
        present = c.FWPS_METADATA_FIELD_PROCESS_ID
        present |= c.FWPS_METADATA_FIELD_COMPLETION_HANDLE if completion_handle else 0
        present |= c.FWPS_METADATA_FIELD_FLOW_HANDLE if flow_handle else 0
        fields = {"processId": conn["process_id"], "completionHandle": completion_handle, "flowHandle": flow_handle}
        if endpoint:
            present |= c.FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE | c.FWPS_METADATA_FIELD_REMOTE_SCOPE_ID
            fields.update(transportEndpointHandle=endpoint, remoteScopeId=0)
        if control:
            present |= c.FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA
            fields.update(controlData=control, controlDataLength=len(conn["control_data"]))
        if packet is not None:
            present |= (c.FWPS_METADATA_FIELD_IP_HEADER_SIZE | c.FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE
                        | c.FWPS_METADATA_FIELD_COMPARTMENT_ID | c.FWPS_METADATA_FIELD_PACKET_DIRECTION)
            direction = c.FWP_DIRECTION_OUTBOUND if packet.outbound else c.FWP_DIRECTION_INBOUND
            fields.update(ipHeaderSize=packet.ip_header, transportHeaderSize=packet.transport_header,
                          compartmentId=conn["compartment_id"], packetDirection=direction)
        return L.FWPS_INCOMING_METADATA_VALUES0.pack(currentMetadataValues=present, **fields)

    def _packet_back(self, packet):
        """After classify: layerData is where the engine passed it; an
        engine packet is then the engine's again (kept only while clones
        share its data)."""
        if packet is None:
            return
        try:
            self.kernel.packets.leave_classify(packet)
        except HarnessStop:
            raise ScenarioFailure(self.kernel.failures[0])
        if packet.state == "engine":
            self.kernel.packets.release(packet)

    # ---- end-of-run checks --------------------------------------------------

    def check_clean(self):
        """After unload: nothing of the driver's is left anywhere."""
        k, w = self.kernel, self.wfp
        problems = []
        usage = k.pool_in_use()
        if usage:
            problems.append("pool leak: " + ", ".join(f"{t} {n} block(s) {b} bytes" for t, (n, b) in
                                                       sorted(usage.items())))
        if w.callouts:
            problems.append(f"{len(w.callouts)} callout(s) still registered")
        if w.sessions:
            problems.append(f"{len(w.sessions)} engine session(s) still open")
        if w.enums:
            problems.append(f"{len(w.enums)} enumeration handle(s) still open")
        if w.engine_memory:
            problems.append("engine memory not freed: " + ", ".join(sorted(set(w.engine_memory.values()))))
        if w.outstanding_pends():
            problems.append(f"{len(w.outstanding_pends())} pended operation(s) never completed")
        if w.flow_contexts:
            problems.append(f"{len(w.flow_contexts)} flow context(s) still associated")
        if w.injection_handles:
            problems.append(f"{len(w.injection_handles)} injection handle(s) not destroyed")
        if k.packets.live_clones():
            problems.append(f"{len(k.packets.live_clones())} NET_BUFFER_LIST clone(s) never freed")
        if w.injections_in_flight():
            problems.append(f"{len(w.injections_in_flight())} injection(s) never completed")
        if k.devices:
            problems.append("device object not deleted")
        if not k.wdf.unbound:
            problems.append("the driver is still bound to KMDF")
        if k.etw_registrations:
            problems.append(f"{len(k.etw_registrations)} ETW provider registration(s) still open")
        if k.held:
            problems.append(f"spin locks held: {k.held}")
        if problems:
            raise ScenarioFailure("after unload: " + "; ".join(problems))


def describe(result):
    action = c.ACTION_NAMES.get(result["actionType"], f"{result['actionType']:#x}")
    parts = [action, f"rights={result['rights']:#x}"]
    if result["flags"]:
        parts.append(f"flags={result['flags']:#x}")
    if result.get("pended") is not None:
        parts.append("pended")
    return " ".join(parts)
