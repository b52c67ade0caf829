"""The packets of ALE_AUTH_RECV_ACCEPT, and ndis.sys as the image sees
them: the NET_BUFFER_LIST the engine passes as ``layerData``, the clones
the callout makes of it, and ``NdisRetreatNetBufferDataStart`` /
``NdisAdvanceNetBufferDataStart``.

Each packet is one NET_BUFFER_LIST with one NET_BUFFER over one MDL (WFP
indicates one list, its headers in the first NET_BUFFER: WDD
packet-indication-format.md), built from :mod:`layouts` on pages of its own,
so that a freed packet is unmapped and any later access faults. The frame
(Ethernet, IPv4, TCP or UDP, payload) is real bytes the MDL describes; a
clone shares it, as ``FwpsAllocateCloneNetBufferList0`` does. The harness
keeps each packet's data offset and length itself and writes them into
NET_BUFFER_DATA: a driver that changes them behind NDIS's back fails the
run at the next NDIS or WFP call, or when classify returns.

Who may touch a packet (DDI and WDD pages of the functions involved): the
engine's packet only during the classify it was passed to, a clone while
the callout owns it (from the clone until it is injected, and again from
the injection's completion until it is freed); never once freed.
"""

import ipaddress
import struct

from . import constants as c
from . import layouts as L

MAC_HEADER = 14  # Ethernet II: what precedes the IP header in the frame
NB_AT = 0x200  # the NET_BUFFER and the MDL on the NET_BUFFER_LIST's page
MDL_AT = 0x300


def _checksum(data):
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame_for(conn, payload, outbound=False):
    """An IPv4 frame of ``conn``: inbound (the remote end sends to us) or
    ``outbound`` (we send to the remote end); bytes and the IP and
    transport header sizes. TCP gets a bare SYN."""
    remote, local = ipaddress.IPv4Address(conn["remote"]), ipaddress.IPv4Address(conn["local"])
    source, destination = (local, remote) if outbound else (remote, local)
    ports = (conn["local_port"], conn["remote_port"]) if outbound else (conn["remote_port"], conn["local_port"])
    if conn["protocol"] == 6:
        transport = struct.pack("!HHIIBBHHH", *ports, 0x1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    else:
        transport = struct.pack("!HHHH", *ports, 8 + len(payload), 0)
    total = 20 + len(transport) + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0x4000, 128, conn["protocol"], 0,
                               source.packed, destination.packed))
    struct.pack_into("!H", ip, 10, _checksum(bytes(ip)))
    mac = bytes.fromhex("02000000000a" "02000000000b") + struct.pack("!H", 0x0800)
    return mac + bytes(ip) + transport + payload, len(ip), len(transport)


class Packet:
    """One NET_BUFFER_LIST as the harness built it, and where it is in its
    life: ``engine`` (layerData of a classify), ``released`` (classify
    returned; kept while clones share its data), ``driver`` (a clone the
    callout owns), ``stack`` (an injected clone), ``freed``."""

    def __init__(self, block, frame, frame_length, connection, headers, parent=None):
        self.block = block
        self.nbl = block
        self.nb = block + NB_AT
        self.mdl = block + MDL_AT
        self.frame = frame
        self.frame_length = frame_length
        self.connection = connection
        self.ip_header, self.transport_header = headers
        self.parent = parent
        self.children = 0
        self.state = "driver" if parent is not None else "engine"
        self.data_offset = MAC_HEADER + self.ip_header + self.transport_header
        self.injected_by = 0
        self.injection_context = 0
        self.completed_with = None  # the completion context FwpsCompleteOperation0 took it with
        self.classify_offset = None  # where classify passed it, while one runs
        self.outbound = False  # a datagram we send (ALE_AUTH_CONNECT), not one arriving

    @property
    def is_clone(self):
        return self.parent is not None

    @property
    def data_length(self):
        return self.frame_length - self.data_offset

    def describe(self):
        what = "clone" if self.is_clone else "engine packet"
        return f"{what} {self.nbl:#x} ({self.state}, data offset {self.data_offset})"


class Packets:
    """Every NET_BUFFER_LIST the harness made, by NET_BUFFER_LIST and by
    NET_BUFFER address, and the NDIS functions over them."""

    def __init__(self, kernel):
        self.k = kernel
        self.by_nbl = {}
        self.by_nb = {}
        self.freed = set()  # NET_BUFFER_LIST addresses freed (use after free is reported as such)
        self.made = []  # every packet, in order

    def apis(self):
        return {"NdisRetreatNetBufferDataStart": (self.NdisRetreatNetBufferDataStart, 4),
                "NdisAdvanceNetBufferDataStart": (self.NdisAdvanceNetBufferDataStart, 4)}

    # ---- building and freeing ------------------------------------------------

    def incoming(self, conn, payload=b""):
        """The first packet of an inbound connection as the engine passes
        it at ALE_AUTH_RECV_ACCEPT: data offset at the beginning of the data."""
        data, ip_header, transport_header = frame_for(conn, payload)
        frame = self.k.alloc(len(data), "packet.frame")
        self.k.write(frame, data)
        packet = Packet(self.k.alloc(MDL_AT + L.MDL.size + 16, "packet.NET_BUFFER_LIST"), frame, len(data), conn,
                        (ip_header, transport_header))
        return self._track(packet)

    def outgoing(self, conn, payload):
        """The first datagram of an outbound UDP connection as the engine
        passes it at ALE_AUTH_CONNECT: data offset at the transport header
        (WDD data-offset-positions.md, outbound transport layers; the
        simulated kernel's rule D1)."""
        data, ip_header, transport_header = frame_for(conn, payload, outbound=True)
        frame = self.k.alloc(len(data), "packet.frame")
        self.k.write(frame, data)
        packet = Packet(self.k.alloc(MDL_AT + L.MDL.size + 16, "packet.NET_BUFFER_LIST"), frame, len(data), conn,
                        (ip_header, transport_header))
        packet.data_offset = MAC_HEADER + ip_header
        packet.outbound = True
        return self._track(packet)

    def clone(self, original):
        """FwpsAllocateCloneNetBufferList0's clone: new structures over the
        original's data, at the original's current offset; the parent's
        ChildRefCount goes up by one."""
        packet = Packet(self.k.alloc(MDL_AT + L.MDL.size + 16, "packet.clone"), original.frame,
                        original.frame_length, original.connection, (original.ip_header, original.transport_header),
                        parent=original)
        packet.data_offset = original.data_offset
        original.children += 1
        return self._track(packet)

    def _track(self, packet):
        self.by_nbl[packet.nbl] = packet
        self.by_nb[packet.nb] = packet
        self.made.append(packet)
        self.write(packet)
        return packet

    def free_clone(self, packet):
        """A clone goes; its parent goes too once the engine is done with it
        and no other clone shares its data."""
        self._unmap(packet)
        parent = packet.parent
        parent.children -= 1
        if parent.state == "released" and parent.children == 0:
            self._unmap(parent)
            self.k.free(parent.frame)

    def release(self, packet):
        """Classify returned: the engine is done with its packet, which lives
        on only while clones share its data (ChildRefCount)."""
        packet.state = "released"
        if packet.children == 0:
            self._unmap(packet)
            self.k.free(packet.frame)

    def _unmap(self, packet):
        packet.state = "freed"
        del self.by_nbl[packet.nbl]
        del self.by_nb[packet.nb]
        self.freed.add(packet.nbl)
        self.k.free(packet.block)

    def live_clones(self):
        return [p for p in self.by_nbl.values() if p.is_clone]

    # ---- memory: what the structures say ------------------------------------

    def _images(self, packet):
        pages = (packet.frame % 0x1000 + packet.frame_length + 0xFFF) // 0x1000
        nbl = L.NET_BUFFER_LIST.pack(FirstNetBuffer=packet.nb,
                                     ParentNetBufferList=packet.parent.nbl if packet.is_clone else 0)
        nb = L.NET_BUFFER.pack(CurrentMdl=packet.mdl, CurrentMdlOffset=packet.data_offset,
                               stDataLength=packet.data_length, MdlChain=packet.mdl, DataOffset=packet.data_offset)
        mdl = L.MDL.pack(Size=L.MDL.size + 8 * pages,
                         MdlFlags=c.MDL_MAPPED_TO_SYSTEM_VA | c.MDL_SOURCE_IS_NONPAGED_POOL,
                         MappedSystemVa=packet.frame, StartVa=packet.frame & ~0xFFF, ByteCount=packet.frame_length,
                         ByteOffset=packet.frame & 0xFFF)
        return ((packet.nbl, nbl, "NET_BUFFER_LIST"), (packet.nb, nb, "NET_BUFFER"), (packet.mdl, mdl, "MDL"))

    def write(self, packet):
        for address, data, _ in self._images(packet):
            self.k.write(address, data)

    def verify(self, packet, when):
        """The structures still say what NDIS last wrote: a callout changes
        them only through NDIS (the offset) or not at all."""
        for address, data, name in self._images(packet):
            if self.k.read(address, len(data), name) != data:
                self.k.fail(f"{when}: the {name} of {packet.describe()} was modified outside the NDIS functions")

    # ---- lookups with the ownership rules -----------------------------------

    def at(self, nbl, api):
        """The live packet at NET_BUFFER_LIST ``nbl``; anything else fails."""
        packet = self.by_nbl.get(nbl)
        if packet is None:
            if nbl in self.freed:
                self.k.fail(f"{api}: NET_BUFFER_LIST {nbl:#x} was already freed")
            self.k.fail(f"{api}: {nbl:#x} is no NET_BUFFER_LIST the engine passed or a clone made")
        self.verify(packet, api)
        return packet

    def usable(self, packet, api):
        """The callout may work on ``packet`` now: it is the packet of the
        classify in progress, or a clone the callout owns."""
        progress = self.k.classify_in_progress
        if progress is not None and progress.get("packet") is packet:
            return packet
        if packet.state == "driver":
            return packet
        self._refuse(packet, api)

    def owned_clone(self, nbl, api):
        """A live clone the callout owns (what free, complete and inject take)."""
        packet = self.at(nbl, api)
        if not packet.is_clone:
            self.k.fail(f"{api}: {packet.describe()} is not a clone from FwpsAllocateCloneNetBufferList0")
        if packet.state != "driver":
            self._refuse(packet, api)
        return packet

    def _refuse(self, packet, api):
        if packet.state == "stack":
            self.k.fail(f"{api}: {packet.describe()} belongs to the stack: it was injected and its completion "
                        "function has not run")
        self.k.fail(f"{api}: {packet.describe()} is the engine's, the callout's only during the classify it was "
                    "passed to")

    # ---- around a classify ---------------------------------------------------

    def enter_classify(self, packet):
        packet.classify_offset = packet.data_offset

    def leave_classify(self, packet):
        """Classify returned: the packet must be where the engine passed it
        (every retreat undone) and its structures untouched."""
        self.verify(packet, "classifyFn")
        where, packet.classify_offset = packet.classify_offset, None
        if packet.data_offset != where:
            self.k.fail(f"classifyFn returned with layerData's data offset at {packet.data_offset}, passed at "
                        f"{where}: a retreat was not undone ({packet.describe()})")

    # ---- ndis.sys -----------------------------------------------------------

    def _buffer(self, nb, api):
        packet = self.by_nb.get(nb)
        if packet is None:
            self.k.fail(f"{api}: {nb:#x} is no NET_BUFFER of a live NET_BUFFER_LIST")
        self.verify(packet, api)
        return self.usable(packet, api)

    def NdisRetreatNetBufferDataStart(self, nb, delta, back_fill, allocate_mdl):
        api = "NdisRetreatNetBufferDataStart"
        self.k.require_irql(c.DISPATCH_LEVEL, api)
        packet = self._buffer(nb, api)
        delta &= 0xFFFFFFFF
        # There is room before the data in the frame's own MDL down to its
        # first byte; further back NDIS would allocate a back-fill MDL, which
        # the harness does not model (no callout needs the MAC header here).
        self.k.check(delta <= packet.data_offset, f"{api}: {delta} bytes back from data offset "
                     f"{packet.data_offset}: before the start of the frame (no back-fill MDL is modelled)")
        packet.data_offset -= delta
        self.write(packet)
        return c.NDIS_STATUS_SUCCESS

    def NdisAdvanceNetBufferDataStart(self, nb, delta, free_mdl, free_mdl_handler):
        api = "NdisAdvanceNetBufferDataStart"
        self.k.require_irql(c.DISPATCH_LEVEL, api)
        packet = self._buffer(nb, api)
        delta &= 0xFFFFFFFF
        self.k.check(delta <= packet.data_length, f"{api}: {delta} bytes forward with {packet.data_length} bytes of "
                     "data left")
        # On the receive path the MDL chain is not changed: FreeMdl FALSE
        # (DDI nf-ndis-ndisadvancenetbufferdatastart, remarks).
        self.k.check(not free_mdl & 0xFF or packet.is_clone, f"{api}: FreeMdl TRUE on the engine's receive packet")
        packet.data_offset += delta
        self.write(packet)
