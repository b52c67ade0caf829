"""fwpkclnt.sys as the image sees it: callout registration, pending, flow
contexts and the kernel-mode management API, with the filter engine's
state (filters, provider contexts, transactions, enumerations, engine
memory) kept here so that the harness can play the engine's side of
notifyFn and classifyFn.

Semantics follow the project's WFP-SEMANTICS notes (Microsoft's docs);
structures follow :mod:`layouts`.
"""

import ipaddress
import itertools
import struct

from . import constants as c
from . import layouts as L
from .layouts import guid_bytes, guid_str
from .packets import MAC_HEADER, MDL_AT, Packet

# Completion contexts handed out by FwpsPendOperation0 and handles of the
# management API: opaque values that are no mapped address, so a driver
# that dereferences one fails the run.
_HANDLE_BASE = 0xFFFF_E000_0000_0000


class Callout:
    def __init__(self, key, runtime_id, flags, classify_fn, notify_fn, flow_delete_fn, device):
        self.key = key
        self.id = runtime_id
        self.flags = flags
        self.classify_fn = classify_fn
        self.notify_fn = notify_fn
        self.flow_delete_fn = flow_delete_fn
        self.device = device


class ProviderContext:
    def __init__(self, key, luid, data, context_type=c.FWPM_GENERAL_CONTEXT):
        self.key = key
        self.luid = luid
        self.data = data
        self.type = context_type


class Filter:
    """A filter in the engine. ``fwps`` is its run-time FWPS_FILTER2 in
    emulated memory once the engine has shown it to the callout."""

    def __init__(self, filter_id, key, layer_key, callout_key, provider_context, fwpm_flags, raw_context,
                 sublayer_key, weight, action_type):
        self.id = filter_id
        self.key = key
        self.layer_key = layer_key
        self.callout_key = callout_key
        self.provider_context = provider_context
        self.fwpm_flags = fwpm_flags
        self.raw_context = raw_context
        self.sublayer_key = sublayer_key
        self.weight = weight
        self.action_type = action_type
        self.fwps = 0
        self.memory = []
        self.live = False


class WfpEngine:
    def __init__(self, kernel):
        self.k = kernel
        self.handles = itertools.count(1)
        self.callouts = {}  # runtime id -> Callout
        self.unregistered = []
        self.next_callout_id = 0x120
        self.sessions = {}  # handle -> {"txn": None | list of undo steps}
        self.providers = {}
        self.sublayers = {}
        self.mgmt_callouts = {}  # key -> {"flags", "layer", "provider", "id"}
        self.mgmt_callout_ids = {}  # key -> id, stable across delete/re-add
        self.provider_contexts = {}  # key -> ProviderContext
        self.filters = {}  # id -> Filter (live)
        self.enums = {}  # handle -> {"session", "entries", "position"}
        self.engine_memory = {}  # address -> what
        self.engine_memory_freed = set()
        self.pended = {}  # completion context -> record
        self.completions = []
        self.flow_contexts = {}  # (flow id, layer id, callout id) -> context
        self.busy_unregisters = 0  # the next N unregistrations answer STATUS_DEVICE_BUSY
        self.busy_answered = 0
        self.deferred = []  # work the engine does once the current call returns
        self.drop_reauthorizations = False  # the connections went away first
        self.injection_handles = {}  # handle -> {"family", "flags"}
        self.injections = []  # FwpsInjectTransport{Receive,Send}Async* calls, in order
        self.endpoints = {}  # transportEndpointHandle -> the connection whose metadata named it
        self.next_endpoint = 0xFFFF_E000_0000_0000
        self.stats = {"transactions_committed": 0, "transactions_aborted": 0, "enum_batches": 0}

    def apis(self):
        names = [
            ("FwpsCalloutRegister2", 3), ("FwpsCalloutUnregisterById0", 1), ("FwpsPendOperation0", 2),
            ("FwpsCompleteOperation0", 2), ("FwpsFlowAssociateContext0", 4), ("FwpsFlowRemoveContext0", 3),
            ("FwpmEngineOpen0", 5), ("FwpmEngineClose0", 1), ("FwpmTransactionBegin0", 2),
            ("FwpmTransactionCommit0", 1), ("FwpmTransactionAbort0", 1), ("FwpmProviderAdd0", 3),
            ("FwpmProviderDeleteByKey0", 2), ("FwpmSubLayerAdd0", 3), ("FwpmSubLayerDeleteByKey0", 2),
            ("FwpmCalloutAdd0", 4), ("FwpmCalloutDeleteByKey0", 2), ("FwpmCalloutGetByKey0", 3),
            ("FwpmProviderGetByKey0", 3), ("FwpmSubLayerGetByKey0", 3), ("FwpmFilterCreateEnumHandle0", 3),
            ("FwpmFilterEnum0", 5), ("FwpmFilterDestroyEnumHandle0", 2), ("FwpmProviderContextGetByKey2", 3),
            ("FwpmFreeMemory0", 1), ("FwpsInjectionHandleCreate0", 3), ("FwpsInjectionHandleDestroy0", 1),
            ("FwpsQueryPacketInjectionState0", 3), ("FwpsAllocateCloneNetBufferList0", 5),
            ("FwpsFreeCloneNetBufferList0", 2), ("FwpsInjectTransportReceiveAsync0", 11),
        ]
        apis = {name: (getattr(self, name), argc) for name, argc in names}
        apis.update(self.packet_copy_apis())
        return apis

    # ---- deep copies of packets ---------------------------------------------
    # What the driver uses to keep a pended packet as its own copy (the
    # FwpsAllocateCloneNetBufferList0 remarks: no clone while waiting for a
    # person; "a deep copy ... using FwpsAllocateNetBufferAndNetBufferList0"):
    # a NET_BUFFER_LIST pool, NdisGetDataBuffer, an MDL over its own
    # non-paged pool, the list over the MDL, and the send injection of a
    # first datagram. Self-contained: a copy is tracked by :mod:`packets` as
    # a child of the classification's packet (so completion and receive
    # injection take it as they take a clone), over the driver's bytes.

    def packet_copy_apis(self):
        names = [("NdisAllocateNetBufferListPool", 2), ("NdisFreeNetBufferListPool", 1), ("NdisGetDataBuffer", 5),
                 ("IoAllocateMdl", 5), ("MmBuildMdlForNonPagedPool", 1), ("IoFreeMdl", 1),
                 ("FwpsAllocateNetBufferAndNetBufferList0", 7), ("FwpsFreeNetBufferList0", 1),
                 ("FwpsInjectTransportSendAsync1", 10), ("FwpmFilterDeleteById0", 2)]
        if not hasattr(self, "nbl_pools"):
            self.nbl_pools = {}  # handle -> tag
            self.mdls = {}  # MDL address -> {"va", "length", "built"}
            self.copies = {}  # NET_BUFFER_LIST address -> pool handle
        return {name: (getattr(self, name), argc) for name, argc in names}

    def NdisAllocateNetBufferListPool(self, ndis_handle, parameters):
        api = "NdisAllocateNetBufferListPool"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        kind, revision, size, _protocol, allocate_nb, _context, tag, data_size = struct.unpack(
            "<BBHBBHII", k.read(parameters, 16, f"{api} Parameters"))
        k.check((kind, revision) == (0x80, 1) and size >= 16, f"{api}: header type {kind:#x} revision {revision} "
                f"size {size} (NDIS_OBJECT_TYPE_DEFAULT, revision 1, 16 bytes)")
        k.check(allocate_nb == 1 and data_size == 0, f"{api}: FwpsAllocateNetBufferAndNetBufferList0 needs "
                "fAllocateNetBuffer TRUE and DataSize 0")
        k.check(tag != 0, f"{api}: PoolTag 0")
        handle = self._handle()
        self.nbl_pools[handle] = tag
        return handle

    def NdisFreeNetBufferListPool(self, pool):
        api = "NdisFreeNetBufferListPool"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        k.check(pool in self.nbl_pools, f"{api}: {pool:#x} is not a live pool")
        k.check(pool not in self.copies.values(), f"{api}: lists from the pool are still allocated")
        del self.nbl_pools[pool]

    def NdisGetDataBuffer(self, nb, bytes_needed, storage, align_multiple, align_offset):
        api = "NdisGetDataBuffer"
        k = self.k
        packet = k.packets._buffer(nb, api)
        k.check(align_multiple & 0xFFFFFFFF == 1, f"{api}: AlignMultiple {align_multiple & 0xFFFFFFFF}")
        if bytes_needed & 0xFFFFFFFF > packet.data_length:
            return 0
        # One MDL over the whole frame: the data is contiguous.
        return packet.frame + packet.data_offset

    def IoAllocateMdl(self, va, length, secondary, charge_quota, irp):
        api = "IoAllocateMdl"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        length &= 0xFFFFFFFF
        block = k.pool_block_at(va)
        k.check(block is not None and va + length <= block.address + block.size,
                f"{api}: {length} bytes at {va:#x} are not inside one live pool block")
        k.check(not secondary & 0xFF and irp == 0, f"{api}: SecondaryBuffer/Irp (a callout passes FALSE, NULL)")
        mdl = k.alloc(L.MDL.size + 8 * 17, "MDL")
        self.mdls[mdl] = {"va": va, "length": length, "built": False}
        return mdl

    def MmBuildMdlForNonPagedPool(self, mdl):
        api = "MmBuildMdlForNonPagedPool"
        self.k.require_irql(c.DISPATCH_LEVEL, api)
        self.k.check(mdl in self.mdls, f"{api}: {mdl:#x} is not an MDL from IoAllocateMdl")
        self.mdls[mdl]["built"] = True

    def IoFreeMdl(self, mdl):
        api = "IoFreeMdl"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        k.check(mdl in self.mdls, f"{api}: {mdl:#x} is not a live MDL")
        k.check(all(p.mdl_chain != mdl for p in k.packets.by_nbl.values() if hasattr(p, "mdl_chain")),
                f"{api}: a NET_BUFFER_LIST still uses MDL {mdl:#x}")
        del self.mdls[mdl]
        k.free(mdl)

    def FwpsAllocateNetBufferAndNetBufferList0(self, pool, context_size, back_fill, mdl, data_offset, data_length,
                                               out):
        api = "FwpsAllocateNetBufferAndNetBufferList0"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        k.check(pool in self.nbl_pools, f"{api}: {pool:#x} is not a pool from NdisAllocateNetBufferListPool")
        record = self.mdls.get(mdl)
        k.check(record is not None and record["built"], f"{api}: {mdl:#x} is not a built MDL")
        data_offset &= 0xFFFFFFFF
        k.check(data_offset + data_length <= record["length"], f"{api}: {data_length} bytes from {data_offset} "
                f"overrun the MDL's {record['length']}")
        progress = k.classify_in_progress
        original = progress.get("packet") if progress else None
        # The harness models copies of classify's packet only.
        k.check(original is not None, f"{api} outside a classify with a packet: the harness models copies of "
                "layerData only")
        # An inbound packet is copied from its IP header (the receive path
        # takes it so), a first datagram from its transport header (the
        # send path adds the IP header).
        before = MAC_HEADER + (original.ip_header if original.outbound else 0)
        start = original.frame + before
        where = "transport" if original.outbound else "IP"
        k.check(data_length == original.frame_length - before and
                k.read(record["va"] + data_offset, data_length, f"{api} data") == k.read(start, data_length),
                f"{api}: the list's bytes are not the packet from its {where} header")
        packet = Packet(k.alloc(MDL_AT + L.MDL.size + 16, "packet.copy"), record["va"] + data_offset - before,
                        data_length + before, original.connection,
                        (original.ip_header, original.transport_header), parent=original)
        packet.data_offset = before
        packet.outbound = original.outbound
        packet.mdl_chain = mdl
        original.children += 1
        k.packets._track(packet)
        self.copies[packet.nbl] = pool
        k.write_u64(out, packet.nbl, f"{api} netBufferList")
        return c.STATUS_SUCCESS

    def FwpsFreeNetBufferList0(self, net_buffer_list):
        api = "FwpsFreeNetBufferList0"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        k.check(net_buffer_list in self.copies, f"{api}: {net_buffer_list:#x} is not a list from "
                "FwpsAllocateNetBufferAndNetBufferList0")
        packet = k.packets.owned_clone(net_buffer_list, api)
        self._check_not_kept_from_injection(packet, api)
        del self.copies[net_buffer_list]
        k.packets.free_clone(packet)

    def FwpmFilterDeleteById0(self, engine, filter_id):
        # The driver never deletes filters (wfpctl uninstall does, from
        # user mode): a call is a failure.
        self.k.fail(f"FwpmFilterDeleteById0({filter_id}): the driver deletes no filters")

    def endpoint_of(self, conn):
        """The transportEndpointHandle of ``conn``'s socket (its local
        address, port and protocol), as the metadata at ALE_AUTH_CONNECT
        names it."""
        socket = (conn["local"], conn["local_port"], conn["protocol"])
        for handle, known in self.endpoints.items():
            if (known["local"], known["local_port"], known["protocol"]) == socket:
                return handle
        handle = self.next_endpoint
        self.next_endpoint += 0x10
        self.endpoints[handle] = conn
        return handle

    def FwpsInjectTransportSendAsync1(self, handle, context, endpoint, flags, send_args, family, compartment,
                                      net_buffer_list, completion_fn, completion_context):
        """Sends a first datagram the callout kept (the simulated kernel's
        rules D3/D4; DDI nf-fwpsk-fwpsinjecttransportsendasync1): out of
        band, a live transport injection handle of the family, flags zero,
        an endpoint a classification's metadata named (the datagram's own
        socket), ``sendArgs`` with the remote address (the list has no IP
        header) and nothing else, the list the callout's copy of the
        datagram starting at its transport header with the socket's source
        port, a completion function; the stack then owns the copy until the
        completion runs."""
        api = "FwpsInjectTransportSendAsync1"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        k.require_out_of_band(api)
        family &= 0xFFFF
        self._check_handle_injects(handle, family, api)
        k.check(flags & 0xFFFFFFFF == 0, f"{api}: flags {flags & 0xFFFFFFFF:#x} (reserved, zero)")
        socket = self.endpoints.get(endpoint)
        k.check(socket is not None, f"{api}: endpoint {endpoint:#x} is no socket a classification's metadata named")
        packet = k.packets.owned_clone(net_buffer_list, api)
        k.check(packet.outbound, f"{api}: {packet.describe()} is not a copy of a first datagram")
        conn = packet.connection
        k.check((socket["local"], socket["local_port"], socket["protocol"]) ==
                (conn["local"], conn["local_port"], conn["protocol"]),
                f"{api}: endpoint {endpoint:#x} is another socket than the datagram's")
        k.check(send_args != 0, f"{api}: no sendArgs: the list has no IP header, so the remote address must be given")
        args = L.FWPS_TRANSPORT_SEND_PARAMS1.unpack(k.read(send_args, L.FWPS_TRANSPORT_SEND_PARAMS1.size,
                                                          f"{api} sendArgs"))
        k.check(args["remoteAddress"] != 0, f"{api}: sendArgs without a remote address")
        remote = ipaddress.IPv4Address(k.read(args["remoteAddress"], 4, f"{api} sendArgs remoteAddress"))
        k.check(remote == conn["remote"], f"{api}: remote address {remote}, the connection's is {conn['remote']}")
        k.check(args["remoteScopeId"] == 0, f"{api}: remote scope {args['remoteScopeId']}, the metadata gave 0")
        k.check(not (args["headerIncludeHeader"] or args["headerIncludeHeaderLength"]),
                f"{api}: a header-include header the classification never gave: {args}")
        control = conn.get("control_data") or b""
        if control:
            # FWPS_TRANSPORT_SEND_PARAMS1: the callout deep-copies the
            # control data in classifyFn and keeps it valid until the
            # injection completes.
            k.check(args["controlDataLength"] == len(control) and args["controlData"] != 0,
                    f"{api}: controlData {args['controlData']:#x}/{args['controlDataLength']}, the classification "
                    f"gave {len(control)} bytes of control data")
            k.check(args["controlData"] != conn.get("classify_control_data"),
                    f"{api}: controlData is classify's own buffer (lent for the call only), not a copy")
            k.check(k.read(args["controlData"], len(control), f"{api} controlData") == control,
                    f"{api}: the control data sent differs from the classification's")
        else:
            k.check(not (args["controlData"] or args["controlDataLength"]),
                    f"{api}: control data the classification never gave: {args}")
        k.check(family == c.AF_INET, f"{api}: address family {family} for an IPv4 socket")
        k.check(compartment & 0xFFFFFFFF == conn["compartment_id"],
                f"{api}: compartment {compartment & 0xFFFFFFFF}, the classification reported {conn['compartment_id']}")
        data = k.read(packet.frame + packet.data_offset, packet.data_length, f"{api} packet data")
        k.check(len(data) >= 8, f"{api}: {len(data)} bytes do not hold a UDP header")
        source, destination, length = struct.unpack("!HHH", data[:6])
        k.check(source == conn["local_port"], f"{api}: the datagram's source port {source} is not its socket's "
                f"{conn['local_port']}")
        k.check(destination == conn["remote_port"] and length == len(data),
                f"{api}: the list does not start with the datagram's UDP header (port {destination}, length "
                f"{length} of {len(data)} bytes)")
        k.check(completion_fn != 0, f"{api} without a completion function (it frees the copy)")
        packet.state = "stack"
        packet.injected_by = handle
        packet.injection_context = context
        injection = {"kind": "send", "packet": packet, "handle": handle, "endpoint": endpoint, "remote": remote,
                     "data": data, "completion_fn": completion_fn, "completion_context": completion_context,
                     "completed": False}
        self.injections.append(injection)
        # The stack takes the datagram once this call has returned.
        self.deferred.append(("send", injection))
        return c.STATUS_SUCCESS

    def _handle(self):
        return _HANDLE_BASE + 0x10 * next(self.handles)

    def callouts_of_device(self, device):
        return [co for co in self.callouts.values() if co.device == device]

    def callout_by_key(self, key):
        for callout in self.callouts.values():
            if callout.key == key:
                return callout
        return None

    # ---- callout registration ----------------------------------------------

    def FwpsCalloutRegister2(self, device, callout, callout_id):
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "FwpsCalloutRegister2")
        k.check(device in k.devices, f"FwpsCalloutRegister2: device {device:#x} is not the control device's")
        fields = L.FWPS_CALLOUT2.unpack(k.read(callout, L.FWPS_CALLOUT2.size, "FWPS_CALLOUT2"))
        key = guid_str(fields["calloutKey"])
        known = (0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200)
        k.check(fields["flags"] & ~known == 0, f"FwpsCalloutRegister2({key}): unknown flags {fields['flags']:#x}")
        k.check(fields["classifyFn"] != 0 and fields["notifyFn"] != 0,
                f"FwpsCalloutRegister2({key}): classifyFn/notifyFn missing")
        if self.callout_by_key(key) is not None:
            return c.STATUS_FWP_ALREADY_EXISTS
        runtime_id = self.mgmt_callout_ids.get(key)
        if runtime_id is None:
            runtime_id = self.next_callout_id
            self.next_callout_id += 1
            self.mgmt_callout_ids[key] = runtime_id
        self.callouts[runtime_id] = Callout(key, runtime_id, fields["flags"], fields["classifyFn"],
                                            fields["notifyFn"], fields["flowDeleteFn"], device)
        if callout_id:
            k.write(callout_id, struct.pack("<I", runtime_id), "FwpsCalloutRegister2 calloutId")
        return c.STATUS_SUCCESS

    def FwpsCalloutUnregisterById0(self, callout_id):
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "FwpsCalloutUnregisterById0")
        callout_id &= 0xFFFFFFFF
        if callout_id not in self.callouts:
            return c.STATUS_FWP_CALLOUT_NOT_FOUND
        if any(key[2] == callout_id for key in self.flow_contexts):
            return c.STATUS_DEVICE_BUSY
        if self.busy_unregisters > 0:
            # As while another flow still carried a context of the callout.
            self.busy_unregisters -= 1
            self.busy_answered += 1
            return c.STATUS_DEVICE_BUSY
        self.unregistered.append(self.callouts.pop(callout_id))
        return c.STATUS_SUCCESS

    # ---- pending ------------------------------------------------------------

    def FwpsPendOperation0(self, handle, out):
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, "FwpsPendOperation0")
        progress = k.classify_in_progress
        if progress is None:
            k.fail("FwpsPendOperation0 outside a classification")
        if not progress["has_completion_handle"] or handle != progress["completion_handle"]:
            k.fail(f"FwpsPendOperation0: {handle:#x} is not this classification's completion handle")
        k.check(out != 0, "FwpsPendOperation0: NULL completionContext")
        if progress["reauthorization"]:
            return c.STATUS_FWP_CANNOT_PEND
        if progress["pended"] is not None:
            k.fail("FwpsPendOperation0 twice for one classification")
        context = self._handle()
        progress["pended"] = context
        self.pended[context] = {"progress": progress, "completed": False}
        k.write_u64(out, context, "FwpsPendOperation0 completionContext")
        return c.STATUS_SUCCESS

    def FwpsCompleteOperation0(self, context, net_buffer_list):
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, "FwpsCompleteOperation0")
        # The engine may classify again (reauthorization) before this
        # returns: a driver lock held here would deadlock on Windows.
        k.require_no_lock("FwpsCompleteOperation0")
        k.require_out_of_band("FwpsCompleteOperation0")
        record = self.pended.get(context)
        if record is None:
            k.fail(f"FwpsCompleteOperation0({context:#x}): not a pended operation")
        if record["completed"]:
            k.fail(f"FwpsCompleteOperation0({context:#x}): completed twice")
        progress = record["progress"]
        if net_buffer_list:
            self._completed_with(context, progress, net_buffer_list)
        record["completed"] = True
        completion = {"context": context, "filter": progress["filter"], "connection": progress["connection"],
                      "with_packet": net_buffer_list != 0, "net_buffer_list": net_buffer_list,
                      "reauthorization": None, "during": k.current_call}
        self.completions.append(completion)
        if progress["connection"]["layer_id"] in (c.FWPS_LAYER_ALE_AUTH_CONNECT_V4, c.FWPS_LAYER_ALE_AUTH_CONNECT_V6):
            if self.drop_reauthorizations:
                completion["reauthorization"] = "not classified: the connection is gone"
            else:
                self.deferred.append(("reauthorize", completion))

    def _completed_with(self, context, progress, net_buffer_list):
        """The NET_BUFFER_LIST a completion takes at ALE_AUTH_RECV_ACCEPT is
        the clone to inject (DDI FwpsInjectTransportReceiveAsync0, remarks):
        a live clone of the pended classification's packet, owned by the
        callout."""
        api = "FwpsCompleteOperation0"
        layer = progress["connection"]["layer_id"]
        # Only at ALE_AUTH_RECV_ACCEPT does the documentation say what the
        # list is for; Microsoft's inspect sample completes a connect with
        # NULL and sends its datagram after (the simulated kernel's rule Z7).
        self.k.check(layer in c.PACKET_LAYERS, f"{api}: a NET_BUFFER_LIST at layer {layer}: only a list to be "
                     "injected at ALE_AUTH_RECV_ACCEPT goes with a completion (a connect completes with NULL)")
        packet = self.k.packets.owned_clone(net_buffer_list, api)
        self.k.check(packet.parent is progress.get("packet"), f"{api}({context:#x}): {packet.describe()} is not a "
                     "clone of the pended classification's packet")
        packet.completed_with = context

    def outstanding_pends(self):
        return [ctx for ctx, record in self.pended.items() if not record["completed"]]

    # ---- flow contexts ------------------------------------------------------

    def FwpsFlowAssociateContext0(self, flow_id, layer_id, callout_id, context):
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, "FwpsFlowAssociateContext0")
        callout = self.callouts.get(callout_id & 0xFFFFFFFF)
        k.check(callout is not None, f"FwpsFlowAssociateContext0: callout {callout_id} not registered")
        k.check(callout.flow_delete_fn != 0, "FwpsFlowAssociateContext0 for a callout without flowDeleteFn")
        k.check(context != 0, "FwpsFlowAssociateContext0 with a zero context")
        key = (flow_id, layer_id & 0xFFFF, callout_id & 0xFFFFFFFF)
        if key in self.flow_contexts:
            return 0x40000000  # STATUS_OBJECT_NAME_EXISTS
        self.flow_contexts[key] = context
        return c.STATUS_SUCCESS

    def FwpsFlowRemoveContext0(self, flow_id, layer_id, callout_id):
        self.k.require_irql(c.DISPATCH_LEVEL, "FwpsFlowRemoveContext0")
        key = (flow_id, layer_id & 0xFFFF, callout_id & 0xFFFFFFFF)
        context = self.flow_contexts.pop(key, None)
        if context is None:
            return c.STATUS_UNSUCCESSFUL
        # flowDeleteFn runs once the current call has returned.
        self.deferred.append(("flow_delete", (key, context)))
        return c.STATUS_PENDING

    # ---- injection ----------------------------------------------------------
    # The handle's life, and the packet functions of ALE_AUTH_RECV_ACCEPT
    # (DDI pages of each function). The packets themselves, and ndis.sys's
    # NdisRetreat/AdvanceNetBufferDataStart, are :mod:`packets`'.

    def FwpsInjectionHandleCreate0(self, family, flags, out):
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "FwpsInjectionHandleCreate0")
        family &= 0xFFFF
        k.check(family in (c.AF_UNSPEC, c.AF_INET, c.AF_INET6), f"FwpsInjectionHandleCreate0: address family {family}")
        known = sum(c.INJECTION_TYPE_NAMES)
        k.check(flags & 0xFFFFFFFF and not flags & ~known, f"FwpsInjectionHandleCreate0: flags {flags:#x}")
        handle = self._handle()
        self.injection_handles[handle] = {"family": family, "flags": flags & 0xFFFFFFFF}
        k.write_u64(out, handle, "FwpsInjectionHandleCreate0 injectionHandle")
        return c.STATUS_SUCCESS

    def FwpsInjectionHandleDestroy0(self, handle):
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "FwpsInjectionHandleDestroy0")
        if handle not in self.injection_handles:
            k.fail(f"FwpsInjectionHandleDestroy0: {handle:#x} is not a live injection handle")
        # Windows waits here for the handle's injections to complete; the
        # harness runs completions only after the driver's call returns.
        k.check(not self.injections_in_flight(handle), "FwpsInjectionHandleDestroy0 with injections in flight: "
                "Windows would wait for their completion functions, which the harness cannot run inside a hook")
        del self.injection_handles[handle]
        return c.STATUS_SUCCESS

    def injections_in_flight(self, handle=None):
        return [i for i in self.injections if not i["completed"] and handle in (None, i["handle"])]

    def FwpsQueryPacketInjectionState0(self, handle, net_buffer_list, context_out):
        api = "FwpsQueryPacketInjectionState0"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        k.check(handle in self.injection_handles, f"{api} with a dead handle {handle:#x}")
        packet = k.packets.at(net_buffer_list, api)
        if not packet.injected_by:
            return c.FWPS_PACKET_NOT_INJECTED
        if packet.injected_by != handle:
            return c.FWPS_PACKET_INJECTED_BY_OTHER
        if context_out:
            k.write_u64(context_out, packet.injection_context, f"{api} injectionContext")
        return c.FWPS_PACKET_INJECTED_BY_SELF

    def FwpsAllocateCloneNetBufferList0(self, original, list_pool, buffer_pool, flags, out):
        api = "FwpsAllocateCloneNetBufferList0"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        packet = k.packets.usable(k.packets.at(original, api), api)
        # NULL pools mean NDIS's default pool; the harness models no other.
        k.check(list_pool == 0 and buffer_pool == 0, f"{api}: NDIS pool handles {list_pool:#x}/{buffer_pool:#x} "
                "(the harness models only the default pool, NULL)")
        k.check(flags & 0xFFFFFFFF == 0, f"{api}: allocateCloneFlags {flags & 0xFFFFFFFF:#x}: no flags are defined "
                "(callout drivers set zero)")
        k.check(out != 0, f"{api}: NULL netBufferList out-pointer")
        clone = k.packets.clone(packet)
        k.write_u64(out, clone.nbl, f"{api} netBufferList")
        return c.STATUS_SUCCESS

    def FwpsFreeCloneNetBufferList0(self, net_buffer_list, flags):
        api = "FwpsFreeCloneNetBufferList0"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        # The second parameter is ULONG freeCloneFlags: "there are currently
        # no flags defined ... set this parameter to zero" (DDI).
        k.check(flags & 0xFFFFFFFF == 0, f"{api}({net_buffer_list:#x}, freeCloneFlags {flags & 0xFFFFFFFF:#x}): "
                "no flags are defined, callout drivers set zero")
        packet = k.packets.owned_clone(net_buffer_list, api)
        # A parent goes back only once its clones are freed (ChildRefCount).
        k.check(packet.children == 0, f"{api}: {packet.describe()} still has {packet.children} clone(s) of its own")
        self._check_not_kept_from_injection(packet, api)
        k.packets.free_clone(packet)

    def _check_not_kept_from_injection(self, packet, api):
        """A list passed to FwpsCompleteOperation0 is the one to be injected
        (DDI FwpsInjectTransportReceiveAsync0); freeing it uninjected means
        the completion named a packet the callout then dropped (Microsoft's
        inspect completes a denied connection with NULL)."""
        self.k.check(packet.completed_with is None or packet.injected_by is not None,
                     f"{api}: {packet.describe()} was passed to FwpsCompleteOperation0 as the packet to inject, "
                     "and is freed without being injected")

    def FwpsInjectTransportReceiveAsync0(self, handle, injection_context, reserved, flags, family, compartment,
                                         interface_index, sub_interface_index, net_buffer_list, completion_fn,
                                         completion_context):
        api = "FwpsInjectTransportReceiveAsync0"
        k = self.k
        k.require_irql(c.DISPATCH_LEVEL, api)
        # TCP is injected only out of band (queued, e.g. to a DPC), and at
        # ALE_AUTH_RECV_ACCEPT only after FwpsCompleteOperation0 (DDI remarks).
        k.check(k.classify_in_progress is None, f"{api} from inside classifyFn (TCP is injected only out of band)")
        k.require_out_of_band(api)
        self._check_handle_injects(handle, family & 0xFFFF, api)
        k.check(reserved == 0 and flags & 0xFFFFFFFF == 0, f"{api}: reserved {reserved:#x} / flags {flags:#x} "
                "must be zero")
        packet = k.packets.owned_clone(net_buffer_list, api)
        k.check(packet.completed_with is not None, f"{api}: {packet.describe()} was not first passed to "
                "FwpsCompleteOperation0, as injection at ALE_AUTH_RECV_ACCEPT requires")
        self._check_injected_packet(packet, family & 0xFFFF, compartment & 0xFFFFFFFF, interface_index & 0xFFFFFFFF,
                                    sub_interface_index & 0xFFFFFFFF, api)
        k.check(completion_fn != 0, f"{api} without a completion function (it frees the clone)")
        packet.state = "stack"
        packet.injected_by = handle
        packet.injection_context = injection_context
        injection = {"packet": packet, "handle": handle, "completion_fn": completion_fn,
                     "completion_context": completion_context, "completed": False, "reclassification": None,
                     "filter": self.pended[packet.completed_with]["progress"]["filter"]}
        self.injections.append(injection)
        # The stack takes the packet once this call has returned.
        self.deferred.append(("inject", injection))
        return c.STATUS_SUCCESS

    def _check_handle_injects(self, handle, family, api):
        """A live handle created for transport injection of this family
        (FwpsInjectionHandleCreate0: flags 0 also allow it)."""
        k = self.k
        record = self.injection_handles.get(handle)
        if record is None:
            k.fail(f"{api}: {handle:#x} is not a live injection handle")
        flags = record["flags"]
        if flags and not flags & c.FWPS_INJECTION_TYPE_TRANSPORT:
            names = "|".join(name for bit, name in c.INJECTION_TYPE_NAMES.items() if flags & bit)
            k.fail(f"{api}: injection handle {handle:#x} was created with flags {flags:#x} (FWPS_INJECTION_TYPE_"
                   f"{names}), not FWPS_INJECTION_TYPE_TRANSPORT ({c.FWPS_INJECTION_TYPE_TRANSPORT:#x})")
        k.check(record["family"] in (c.AF_UNSPEC, family), f"{api}: handle of address family {record['family']}, "
                f"injecting family {family}")

    def _check_injected_packet(self, packet, family, compartment, interface_index, sub_interface_index, api):
        """The clone starts with its IP header, and goes back where the
        original arrived: the family, compartment and (sub)interface the
        classification reported (DDI parameters)."""
        k = self.k
        conn = packet.connection
        k.check(packet.data_offset == MAC_HEADER, f"{api}: the NET_BUFFER_LIST must begin with the IP header; "
                f"{packet.describe()} starts {packet.data_offset - MAC_HEADER:+d} bytes from it")
        version = k.read(packet.frame + packet.data_offset, 1, f"{api} packet data")[0] >> 4
        wanted_family = c.AF_INET if version == 4 else c.AF_INET6
        k.check(family == wanted_family, f"{api}: address family {family} for an IPv{version} packet")
        wanted = conn["compartment_id"] if conn.get("compartment_id") is not None else c.UNSPECIFIED_COMPARTMENT_ID
        k.check(compartment == wanted, f"{api}: compartment {compartment}, the classification reported {wanted}")
        k.check((interface_index, sub_interface_index) == (conn["interface_index"], conn["sub_interface_index"]),
                f"{api}: interface {interface_index}/{sub_interface_index}, the packet arrived on "
                f"{conn['interface_index']}/{conn['sub_interface_index']}")

    # ---- sessions and transactions ------------------------------------------

    def _session(self, handle, api):
        if handle not in self.sessions:
            self.k.fail(f"{api}: {handle:#x} is not an open engine handle")
        self.k.require_irql(c.PASSIVE_LEVEL, api)
        return self.sessions[handle]

    def FwpmEngineOpen0(self, server, authn, identity, session, out):
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "FwpmEngineOpen0")
        k.check(server == 0, "FwpmEngineOpen0: a server name from a kernel driver")
        k.check(authn & 0xFFFFFFFF in (c.RPC_C_AUTHN_WINNT, c.RPC_C_AUTHN_DEFAULT),
                f"FwpmEngineOpen0: authentication service {authn:#x}")
        if session:
            fields = L.FWPM_SESSION0.unpack(k.read(session, L.FWPM_SESSION0.size, "FWPM_SESSION0"))
            if fields["displayData.name"]:
                k.read_wide(fields["displayData.name"])
        handle = self._handle()
        self.sessions[handle] = {"txn": None}
        k.write_u64(out, handle, "FwpmEngineOpen0 engineHandle")
        return c.STATUS_SUCCESS

    def FwpmEngineClose0(self, handle):
        session = self._session(handle, "FwpmEngineClose0")
        self.k.check(session["txn"] is None, "FwpmEngineClose0 with a transaction still open")
        leftover = [h for h, e in self.enums.items() if e["session"] == handle]
        self.k.check(not leftover, "FwpmEngineClose0 with enumeration handles still open")
        del self.sessions[handle]
        return c.STATUS_SUCCESS

    def FwpmTransactionBegin0(self, handle, flags):
        session = self._session(handle, "FwpmTransactionBegin0")
        if session["txn"] is not None:
            return c.STATUS_FWP_TXN_IN_PROGRESS
        session["txn"] = []
        return c.STATUS_SUCCESS

    def FwpmTransactionCommit0(self, handle):
        session = self._session(handle, "FwpmTransactionCommit0")
        if session["txn"] is None:
            return c.STATUS_FWP_NO_TXN_IN_PROGRESS
        session["txn"] = None
        self.stats["transactions_committed"] += 1
        return c.STATUS_SUCCESS

    def FwpmTransactionAbort0(self, handle):
        session = self._session(handle, "FwpmTransactionAbort0")
        if session["txn"] is None:
            return c.STATUS_FWP_NO_TXN_IN_PROGRESS
        for table, key in reversed(session["txn"]):
            table.pop(key, None)
        session["txn"] = None
        self.stats["transactions_aborted"] += 1
        return c.STATUS_SUCCESS

    def _added(self, session, table, key, value):
        table[key] = value
        if session["txn"] is not None:
            session["txn"].append((table, key))

    def _key_at(self, address, what):
        self.k.check(address != 0, f"{what}: NULL key")
        return guid_str(self.k.read(address, 16, what))

    # ---- provider, sublayer, callout objects --------------------------------

    def FwpmProviderAdd0(self, handle, provider, sd):
        session = self._session(handle, "FwpmProviderAdd0")
        fields = L.FWPM_PROVIDER0.unpack(self.k.read(provider, L.FWPM_PROVIDER0.size, "FWPM_PROVIDER0"))
        key = guid_str(fields["providerKey"])
        if key in self.providers:
            return c.STATUS_FWP_ALREADY_EXISTS
        self._added(session, self.providers, key, {"flags": fields["flags"]})
        return c.STATUS_SUCCESS

    def FwpmSubLayerAdd0(self, handle, sublayer, sd):
        session = self._session(handle, "FwpmSubLayerAdd0")
        fields = L.FWPM_SUBLAYER0.unpack(self.k.read(sublayer, L.FWPM_SUBLAYER0.size, "FWPM_SUBLAYER0"))
        key = guid_str(fields["subLayerKey"])
        provider = self._key_at(fields["providerKey"], "FWPM_SUBLAYER0.providerKey") if fields["providerKey"] else None
        if provider is not None and provider not in self.providers:
            return 0xC0220005  # STATUS_FWP_PROVIDER_NOT_FOUND
        if key in self.sublayers:
            return c.STATUS_FWP_ALREADY_EXISTS
        self._added(session, self.sublayers, key,
                    {"provider": provider, "weight": fields["weight"], "flags": fields["flags"]})
        return c.STATUS_SUCCESS

    def FwpmCalloutAdd0(self, handle, callout, sd, out_id):
        session = self._session(handle, "FwpmCalloutAdd0")
        fields = L.FWPM_CALLOUT0.unpack(self.k.read(callout, L.FWPM_CALLOUT0.size, "FWPM_CALLOUT0"))
        key = guid_str(fields["calloutKey"])
        layer = guid_str(fields["applicableLayer"])
        provider = self._key_at(fields["providerKey"], "FWPM_CALLOUT0.providerKey") if fields["providerKey"] else None
        if layer not in c.LAYER_NAMES:
            return 0xC0220004  # STATUS_FWP_LAYER_NOT_FOUND
        if provider is not None and provider not in self.providers:
            return 0xC0220005  # STATUS_FWP_PROVIDER_NOT_FOUND
        if key in self.mgmt_callouts:
            return c.STATUS_FWP_ALREADY_EXISTS
        runtime_id = self.mgmt_callout_ids.setdefault(key, self.next_callout_id)
        if runtime_id == self.next_callout_id:
            self.next_callout_id += 1
        self._added(session, self.mgmt_callouts, key,
                    {"flags": fields["flags"], "layer": layer, "provider": provider, "id": runtime_id})
        if out_id:
            self.k.write(out_id, struct.pack("<I", runtime_id), "FwpmCalloutAdd0 id")
        return c.STATUS_SUCCESS

    def FwpmCalloutDeleteByKey0(self, handle, key):
        self._session(handle, "FwpmCalloutDeleteByKey0")
        key = self._key_at(key, "FwpmCalloutDeleteByKey0 key")
        if key not in self.mgmt_callouts:
            return c.STATUS_FWP_CALLOUT_NOT_FOUND
        if any(f.callout_key == key for f in self.filters.values()):
            return c.STATUS_FWP_IN_USE
        del self.mgmt_callouts[key]
        return c.STATUS_SUCCESS

    def FwpmSubLayerDeleteByKey0(self, handle, key):
        self._session(handle, "FwpmSubLayerDeleteByKey0")
        key = self._key_at(key, "FwpmSubLayerDeleteByKey0 key")
        if key not in self.sublayers:
            return 0xC0220007  # STATUS_FWP_SUBLAYER_NOT_FOUND
        if any(f.sublayer_key == key for f in self.filters.values()):
            return c.STATUS_FWP_IN_USE
        del self.sublayers[key]
        return c.STATUS_SUCCESS

    def FwpmProviderDeleteByKey0(self, handle, key):
        self._session(handle, "FwpmProviderDeleteByKey0")
        key = self._key_at(key, "FwpmProviderDeleteByKey0 key")
        if key not in self.providers:
            return 0xC0220005  # STATUS_FWP_PROVIDER_NOT_FOUND
        if any(s["provider"] == key for s in self.sublayers.values()) or any(
                m["provider"] == key for m in self.mgmt_callouts.values()):
            return c.STATUS_FWP_IN_USE
        del self.providers[key]
        return c.STATUS_SUCCESS

    # ---- engine memory ------------------------------------------------------

    def _engine_alloc(self, size, what):
        address = self.k.alloc(size, f"engine.{what}")
        self.engine_memory[address] = what
        self.engine_memory_freed.discard(address)
        return address

    def FwpmFreeMemory0(self, pointer):
        k = self.k
        k.check(pointer != 0, "FwpmFreeMemory0(NULL)")
        address = k.read_u64(pointer, "FwpmFreeMemory0 argument")
        if address == 0:
            return None
        if address not in self.engine_memory:
            if address in self.engine_memory_freed:
                k.fail(f"FwpmFreeMemory0: {address:#x} freed twice")
            k.fail(f"FwpmFreeMemory0: {address:#x} is not memory the engine returned")
        del self.engine_memory[address]
        self.engine_memory_freed.add(address)
        k.free(address)
        k.write_u64(pointer, 0, "FwpmFreeMemory0 argument")
        return None

    # ---- enumeration and provider contexts ----------------------------------

    def FwpmFilterCreateEnumHandle0(self, handle, template, out):
        k = self.k
        self._session(handle, "FwpmFilterCreateEnumHandle0")
        k.check(template != 0, "FwpmFilterCreateEnumHandle0 without a template (would enumerate every filter)")
        fields = L.FWPM_FILTER_ENUM_TEMPLATE0.unpack(k.read(template, L.FWPM_FILTER_ENUM_TEMPLATE0.size,
                                                             "FWPM_FILTER_ENUM_TEMPLATE0"))
        layer = guid_str(fields["layerKey"])
        k.check(layer in c.LAYER_NAMES, f"FwpmFilterCreateEnumHandle0: unknown layer {layer}")
        k.check(fields["enumType"] in (c.FWP_FILTER_ENUM_FULLY_CONTAINED, c.FWP_FILTER_ENUM_OVERLAPPING),
                f"FwpmFilterCreateEnumHandle0: enumType {fields['enumType']}")
        k.check(fields["numFilterConditions"] == 0 or fields["filterCondition"] != 0,
                "FwpmFilterCreateEnumHandle0: conditions without an array")
        callout_key = None
        if fields["actionMask"] & c.FWP_ACTION_FLAG_CALLOUT:
            # The documented rule: a callout action mask needs a callout key.
            k.check(fields["calloutKey"] != 0, "FwpmFilterCreateEnumHandle0: FWP_ACTION_FLAG_CALLOUT "
                    "without calloutKey")
            callout_key = self._key_at(fields["calloutKey"], "FWPM_FILTER_ENUM_TEMPLATE0.calloutKey")
        entries = [f for f in sorted(self.filters.values(), key=lambda f: f.id)
                   if f.layer_key == layer and (callout_key is None or f.callout_key == callout_key)]
        enum = self._handle()
        self.enums[enum] = {"session": handle, "entries": entries, "position": 0}
        k.write_u64(out, enum, "FwpmFilterCreateEnumHandle0 enumHandle")
        return c.STATUS_SUCCESS

    def FwpmFilterEnum0(self, handle, enum, requested, entries_out, returned_out):
        k = self.k
        self._session(handle, "FwpmFilterEnum0")
        state = self.enums.get(enum)
        if state is None or state["session"] != handle:
            return c.STATUS_FWP_INVALID_ENUMERATOR
        requested &= 0xFFFFFFFF
        k.check(requested > 0, "FwpmFilterEnum0 asking for 0 entries")
        batch = state["entries"][state["position"]:state["position"] + requested]
        state["position"] += len(batch)
        self.stats["enum_batches"] += 1
        array = 0
        if batch:
            size = 8 * len(batch) + L.FWPM_FILTER0.size * len(batch) + 64 * len(batch)
            array = self._engine_alloc(size, "FWPM_FILTER0[]")
            structs = array + 8 * len(batch)
            names = structs + L.FWPM_FILTER0.size * len(batch)
            for index, f in enumerate(batch):
                address = structs + index * L.FWPM_FILTER0.size
                name = names + 64 * index
                k.write(name, f"filter {f.id}".encode("utf-16-le") + b"\0\0")
                values = dict(
                    filterKey=f.key, flags=f.fwpm_flags, **{"displayData.name": name},
                    layerKey=guid_bytes(f.layer_key), subLayerKey=guid_bytes(f.sublayer_key),
                    **{"weight.type": c.FWP_UINT64, "weight.value": f.weight,
                       "action.type": c.FWP_ACTION_CALLOUT_TERMINATING,
                       "action.calloutKey": guid_bytes(f.callout_key),
                       "effectiveWeight.type": c.FWP_UINT64, "effectiveWeight.value": f.weight},
                    filterId=f.id)
                if f.provider_context is not None:
                    values["providerContextKey"] = guid_bytes(f.provider_context.key)
                else:
                    values["rawContext"] = f.raw_context
                k.write(address, L.FWPM_FILTER0.pack(**values))
                k.write_u64(array + 8 * index, address)
        k.write_u64(entries_out, array, "FwpmFilterEnum0 entries")
        k.write(returned_out, struct.pack("<I", len(batch)), "FwpmFilterEnum0 numEntriesReturned")
        return c.STATUS_SUCCESS

    def FwpmFilterDestroyEnumHandle0(self, handle, enum):
        self._session(handle, "FwpmFilterDestroyEnumHandle0")
        state = self.enums.pop(enum, None)
        if state is None or state["session"] != handle:
            return c.STATUS_FWP_INVALID_ENUMERATOR
        return c.STATUS_SUCCESS

    def FwpmCalloutGetByKey0(self, handle, key, out):
        """The management callout as engine memory (FWPM_CALLOUT0: key,
        flags, applicable layer, run-time id), freed with FwpmFreeMemory0."""
        k = self.k
        self._session(handle, "FwpmCalloutGetByKey0")
        key = self._key_at(key, "FwpmCalloutGetByKey0 key")
        callout = self.mgmt_callouts.get(key)
        if callout is None:
            return c.STATUS_FWP_CALLOUT_NOT_FOUND
        address = self._engine_alloc(L.FWPM_CALLOUT0.size, "FWPM_CALLOUT0")
        k.write(address, L.FWPM_CALLOUT0.pack(calloutKey=guid_bytes(key), flags=callout["flags"],
                                              applicableLayer=guid_bytes(callout["layer"]), calloutId=callout["id"]))
        k.write_u64(out, address, "FwpmCalloutGetByKey0 callout")
        return c.STATUS_SUCCESS

    def FwpmProviderGetByKey0(self, handle, key, out):
        """The provider as engine memory (FWPM_PROVIDER0: key and the flags
        it was added with), freed with FwpmFreeMemory0."""
        k = self.k
        self._session(handle, "FwpmProviderGetByKey0")
        key = self._key_at(key, "FwpmProviderGetByKey0 key")
        provider = self.providers.get(key)
        if provider is None:
            return 0xC0220005  # STATUS_FWP_PROVIDER_NOT_FOUND
        address = self._engine_alloc(L.FWPM_PROVIDER0.size, "FWPM_PROVIDER0")
        k.write(address, L.FWPM_PROVIDER0.pack(providerKey=guid_bytes(key), flags=provider["flags"]))
        k.write_u64(out, address, "FwpmProviderGetByKey0 provider")
        return c.STATUS_SUCCESS

    def FwpmSubLayerGetByKey0(self, handle, key, out):
        """The sublayer as engine memory (FWPM_SUBLAYER0: key, flags and
        weight as added; no provider key pointer), freed with FwpmFreeMemory0."""
        k = self.k
        self._session(handle, "FwpmSubLayerGetByKey0")
        key = self._key_at(key, "FwpmSubLayerGetByKey0 key")
        sublayer = self.sublayers.get(key)
        if sublayer is None:
            return 0xC0220007  # STATUS_FWP_SUBLAYER_NOT_FOUND
        address = self._engine_alloc(L.FWPM_SUBLAYER0.size, "FWPM_SUBLAYER0")
        k.write(address, L.FWPM_SUBLAYER0.pack(subLayerKey=guid_bytes(key), flags=sublayer.get("flags", 0),
                                               weight=sublayer["weight"]))
        k.write_u64(out, address, "FwpmSubLayerGetByKey0 sublayer")
        return c.STATUS_SUCCESS

    def FwpmProviderContextGetByKey2(self, handle, key, out):
        k = self.k
        self._session(handle, "FwpmProviderContextGetByKey2")
        key = self._key_at(key, "FwpmProviderContextGetByKey2 key")
        context = self.provider_contexts.get(key)
        if context is None:
            return c.STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND
        size = L.FWPM_PROVIDER_CONTEXT2.size + L.FWP_BYTE_BLOB.size + len(context.data)
        address = self._engine_alloc(size, "FWPM_PROVIDER_CONTEXT2")
        self.write_provider_context(address, context)
        k.write_u64(out, address, "FwpmProviderContextGetByKey2 providerContext")
        return c.STATUS_SUCCESS

    def write_provider_context(self, address, context):
        """FWPM_PROVIDER_CONTEXT2, then its FWP_BYTE_BLOB, then the data."""
        blob = address + L.FWPM_PROVIDER_CONTEXT2.size
        data = blob + L.FWP_BYTE_BLOB.size
        self.k.write(address, L.FWPM_PROVIDER_CONTEXT2.pack(
            providerContextKey=guid_bytes(context.key), providerKey=0, type=context.type,
            dataBuffer=blob, providerContextId=context.luid))
        self.k.write(blob, L.FWP_BYTE_BLOB.pack(size=len(context.data), data=data if context.data else 0))
        self.k.write(data, context.data)
        return L.FWPM_PROVIDER_CONTEXT2.size + L.FWP_BYTE_BLOB.size + len(context.data)
