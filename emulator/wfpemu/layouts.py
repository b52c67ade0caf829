"""x64 (MSVC ABI) layouts of every structure the harness builds or reads.

The harness never takes a layout from the driver's Rust code: these are the
documented layouts, written down independently, so that a wrong offset on
either side shows up as a failed scenario.

Sources:

* WFP (``FWPS_*``, ``FWP_*``, ``FWPM_*``): the project's layout table
  (``fwps-layout/LAYOUTS.md`` in the shared notes), produced by clang with
  ``-target x86_64-pc-windows-msvc`` from Microsoft's documented
  definitions (fwpsk.h / fwpstypes.h) and from mingw-w64's fwptypes.h /
  fwpmtypes.h.  ``FWPM_PROVIDER0`` and ``FWPM_SUBLAYER0``, which the table
  does not list, come from mingw-w64's fwpmtypes.h laid out the same way.
* I/O manager (``DRIVER_OBJECT``,
  ``DEVICE_OBJECT``, ``FILE_OBJECT``, ``UNICODE_STRING``,
  ``PROCESSOR_NUMBER``): Microsoft's wdm.h definitions as shown on the DDI
  reference pages, with offsets checked by clang
  (``-target x86_64-pc-windows-msvc``) against mingw-w64's ddk/wdm.h.
"""

import struct
import uuid


class Layout:
    """A fixed-size structure: named fields at byte offsets.

    ``fields`` maps a name to ``(offset, struct format)``; formats are
    little-endian ``struct`` codes, or ``"16s"``-style byte strings (GUIDs).
    """

    def __init__(self, name, size, fields):
        self.name = name
        self.size = size
        self.fields = dict(fields)
        for field, (offset, fmt) in self.fields.items():
            end = offset + struct.calcsize("<" + fmt)
            if end > size:
                raise ValueError(f"{name}.{field} ends at {end}, past the size {size}")

    def offset(self, field):
        return self.fields[field][0]

    def pack(self, base=None, **values):
        """The structure's bytes: ``base`` (or zeroes) with ``values`` written in."""
        data = bytearray(base if base is not None else bytes(self.size))
        if len(data) != self.size:
            raise ValueError(f"{self.name}: base is {len(data)} bytes, not {self.size}")
        for field, value in values.items():
            offset, fmt = self.fields[field]
            struct.pack_into("<" + fmt, data, offset, value)
        return bytes(data)

    def unpack(self, data):
        """Every field of the structure, by name."""
        if len(data) < self.size:
            raise ValueError(f"{self.name}: {len(data)} bytes, need {self.size}")
        out = {}
        for field, (offset, fmt) in self.fields.items():
            out[field] = struct.unpack_from("<" + fmt, data, offset)[0]
        return out


def guid_bytes(value):
    """A GUID as it sits in memory (Data1-3 little-endian, Data4 as is),
    from its registry-format string or ``from_u128``-style integer."""
    if isinstance(value, int):
        return uuid.UUID(int=value).bytes_le
    return uuid.UUID(value).bytes_le


def guid_str(data):
    return str(uuid.UUID(bytes_le=bytes(data)))


# ---- WFP: LAYOUTS.md -------------------------------------------------------

# FWP_VALUE0 / FWP_CONDITION_VALUE0 / FWPS_INCOMING_VALUE0: 16/8.
FWP_VALUE0 = Layout("FWP_VALUE0", 16, {"type": (0, "I"), "uint8": (8, "B"), "uint16": (8, "H"),
                                       "uint32": (8, "I"), "uint64_or_ptr": (8, "Q")})

# FWP_BYTE_BLOB: 16/8.
FWP_BYTE_BLOB = Layout("FWP_BYTE_BLOB", 16, {"size": (0, "I"), "data": (8, "Q")})

# FWPS_CALLOUT0/1/2/3: 48/8.
FWPS_CALLOUT2 = Layout("FWPS_CALLOUT2", 48, {
    "calloutKey": (0, "16s"),
    "flags": (16, "I"),
    "classifyFn": (24, "Q"),
    "notifyFn": (32, "Q"),
    "flowDeleteFn": (40, "Q"),
})

# FWPS_ACTION0: 8/4.
FWPS_ACTION0 = Layout("FWPS_ACTION0", 8, {"type": (0, "I"), "calloutId": (4, "I")})

# FWPS_FILTER0/1/2/3: 64/8.
FWPS_FILTER2 = Layout("FWPS_FILTER2", 64, {
    "filterId": (0, "Q"),
    "weight.type": (8, "I"),
    "weight.value": (16, "Q"),
    "subLayerWeight": (24, "H"),
    "flags": (26, "H"),
    "numFilterConditions": (28, "I"),
    "filterCondition": (32, "Q"),
    "action.type": (40, "I"),
    "action.calloutId": (44, "I"),
    "context": (48, "Q"),
    "providerContext": (56, "Q"),
})

# FWPS_INCOMING_VALUES0: 16/8.
FWPS_INCOMING_VALUES0 = Layout("FWPS_INCOMING_VALUES0", 16, {
    "layerId": (0, "H"),
    "valueCount": (4, "I"),
    "incomingValue": (8, "Q"),
})

# FWPS_INCOMING_METADATA_VALUES0: 280/8 (only the fields the harness sets).
FWPS_INCOMING_METADATA_VALUES0 = Layout("FWPS_INCOMING_METADATA_VALUES0", 280, {
    "currentMetadataValues": (0, "I"),
    "flags": (4, "I"),
    "flowHandle": (32, "Q"),
    "ipHeaderSize": (40, "I"),
    "transportHeaderSize": (44, "I"),
    "processPath": (48, "Q"),
    "token": (56, "Q"),
    "processId": (64, "Q"),
    "compartmentId": (80, "I"),
    "completionHandle": (104, "Q"),
    "transportEndpointHandle": (112, "Q"),
    "remoteScopeId": (120, "I"),
    "controlData": (128, "Q"),
    "controlDataLength": (136, "I"),
    "packetDirection": (140, "I"),
})

# FWPS_TRANSPORT_SEND_PARAMS1: 48/8 (DDI ns-fwpsk-fwps_transport_send_params1:
# UCHAR* remoteAddress, SCOPE_ID remoteScopeId (a ULONG union), WSACMSGHDR*
# controlData, ULONG controlDataLength, UCHAR* headerIncludeHeader, ULONG
# headerIncludeHeaderLength; x64 natural alignment).
FWPS_TRANSPORT_SEND_PARAMS1 = Layout("FWPS_TRANSPORT_SEND_PARAMS1", 48, {
    "remoteAddress": (0, "Q"),
    "remoteScopeId": (8, "I"),
    "controlData": (16, "Q"),
    "controlDataLength": (24, "I"),
    "headerIncludeHeader": (32, "Q"),
    "headerIncludeHeaderLength": (40, "I"),
})

# FWPS_CLASSIFY_OUT0: 40/8.
FWPS_CLASSIFY_OUT0 = Layout("FWPS_CLASSIFY_OUT0", 40, {
    "actionType": (0, "I"),
    "outContext": (8, "Q"),
    "filterId": (16, "Q"),
    "rights": (24, "I"),
    "flags": (28, "I"),
    "reserved": (32, "I"),
})

# FWPM_PROVIDER_CONTEXT0: 88/8.  FWPM_PROVIDER_CONTEXT2 has the same
# members (only the union's member types differ), so the same layout.
FWPM_PROVIDER_CONTEXT2 = Layout("FWPM_PROVIDER_CONTEXT2", 88, {
    "providerContextKey": (0, "16s"),
    "displayData.name": (16, "Q"),
    "displayData.description": (24, "Q"),
    "flags": (32, "I"),
    "providerKey": (40, "Q"),
    "providerData.size": (48, "I"),
    "providerData.data": (56, "Q"),
    "type": (64, "i"),
    "dataBuffer": (72, "Q"),
    "providerContextId": (80, "Q"),
})

# FWPM_FILTER0: 200/8.  action is FWPM_ACTION0 (type, then the
# filterType/calloutKey GUID union at +4); the union at 152 holds rawContext
# or providerContextKey.
FWPM_FILTER0 = Layout("FWPM_FILTER0", 200, {
    "filterKey": (0, "16s"),
    "displayData.name": (16, "Q"),
    "displayData.description": (24, "Q"),
    "flags": (32, "I"),
    "providerKey": (40, "Q"),
    "providerData.size": (48, "I"),
    "providerData.data": (56, "Q"),
    "layerKey": (64, "16s"),
    "subLayerKey": (80, "16s"),
    "weight.type": (96, "I"),
    "weight.value": (104, "Q"),
    "numFilterConditions": (112, "I"),
    "filterCondition": (120, "Q"),
    "action.type": (128, "I"),
    "action.calloutKey": (132, "16s"),
    "rawContext": (152, "Q"),
    "providerContextKey": (152, "16s"),
    "reserved": (168, "Q"),
    "filterId": (176, "Q"),
    "effectiveWeight.type": (184, "I"),
    "effectiveWeight.value": (192, "Q"),
})

# FWPM_CALLOUT0: 88/8.
FWPM_CALLOUT0 = Layout("FWPM_CALLOUT0", 88, {
    "calloutKey": (0, "16s"),
    "displayData.name": (16, "Q"),
    "displayData.description": (24, "Q"),
    "flags": (32, "I"),
    "providerKey": (40, "Q"),
    "providerData.size": (48, "I"),
    "providerData.data": (56, "Q"),
    "applicableLayer": (64, "16s"),
    "calloutId": (80, "I"),
})

# FWPM_FILTER_ENUM_TEMPLATE0: 72/8.
FWPM_FILTER_ENUM_TEMPLATE0 = Layout("FWPM_FILTER_ENUM_TEMPLATE0", 72, {
    "providerKey": (0, "Q"),
    "layerKey": (8, "16s"),
    "enumType": (24, "i"),
    "flags": (28, "I"),
    "providerContextTemplate": (32, "Q"),
    "numFilterConditions": (40, "I"),
    "filterCondition": (48, "Q"),
    "actionMask": (56, "I"),
    "calloutKey": (64, "Q"),
})

# FWPM_SESSION0: 72/8.
FWPM_SESSION0 = Layout("FWPM_SESSION0", 72, {
    "sessionKey": (0, "16s"),
    "displayData.name": (16, "Q"),
    "displayData.description": (24, "Q"),
    "flags": (32, "I"),
    "txnWaitTimeoutInMSec": (36, "I"),
    "processId": (40, "I"),
    "sid": (48, "Q"),
    "username": (56, "Q"),
    "kernelMode": (64, "i"),
})

# FWPM_PROVIDER0: 64/8 (mingw-w64 fwpmtypes.h).
FWPM_PROVIDER0 = Layout("FWPM_PROVIDER0", 64, {
    "providerKey": (0, "16s"),
    "displayData.name": (16, "Q"),
    "displayData.description": (24, "Q"),
    "flags": (32, "I"),
    "serviceName": (56, "Q"),
})

# FWPM_SUBLAYER0: 72/8 (mingw-w64 fwpmtypes.h).
FWPM_SUBLAYER0 = Layout("FWPM_SUBLAYER0", 72, {
    "subLayerKey": (0, "16s"),
    "displayData.name": (16, "Q"),
    "displayData.description": (24, "Q"),
    "flags": (32, "I"),
    "providerKey": (40, "Q"),
    "weight": (64, "H"),
})

# ---- NDIS: the packet classify carries at ALE_AUTH_RECV_ACCEPT --------------
#
# From Microsoft's definitions in ndis.h as the DDI reference pages show them
# (ns-ndis-_net_buffer_list, ns-ndis-_net_buffer, ns-ndis-_net_buffer_data;
# the 2018 syntax blocks), transcribed into C and laid out by clang
# (-target x86_64-pc-windows-msvc); MDL from mingw-w64's ddk/wdm.h the same
# way.  Only the members both the documented definition and the header's
# DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) variant place alike are named:
# past ParentNetBufferList the two disagree (ChildRefCount 124 or 132), so
# the harness keeps ChildRefCount and Status to itself and leaves those
# bytes zero (NDIS_STATUS_SUCCESS at either offset).

# NET_BUFFER_LIST: 16-byte aligned; a union of {Next, FirstNetBuffer} with an
# SLIST_HEADER first, then Context and ParentNetBufferList.
NET_BUFFER_LIST = Layout("NET_BUFFER_LIST", 32, {
    "Next": (0, "Q"),
    "FirstNetBuffer": (8, "Q"),
    "Context": (16, "Q"),
    "ParentNetBufferList": (24, "Q"),
})

# NET_BUFFER: its NET_BUFFER_DATA header (48 bytes with the SLIST_HEADER
# union); the whole structure is 176 bytes.
NET_BUFFER_SIZE = 176
NET_BUFFER = Layout("NET_BUFFER", 48, {
    "Next": (0, "Q"),
    "CurrentMdl": (8, "Q"),
    "CurrentMdlOffset": (16, "I"),
    "DataLength": (24, "I"),  # a ULONG / SIZE_T union: the harness writes all 8 bytes
    "stDataLength": (24, "Q"),
    "MdlChain": (32, "Q"),
    "DataOffset": (40, "I"),
})

# MDL: 48 bytes, followed by its PFN array (8 bytes a page).
MDL = Layout("MDL", 48, {
    "Next": (0, "Q"),
    "Size": (8, "h"),
    "MdlFlags": (10, "h"),
    "Process": (16, "Q"),
    "MappedSystemVa": (24, "Q"),
    "StartVa": (32, "Q"),
    "ByteCount": (40, "I"),
    "ByteOffset": (44, "I"),
})

# ---- I/O manager: wdm.h ----------------------------------------------------

UNICODE_STRING = Layout("UNICODE_STRING", 16, {
    "Length": (0, "H"),
    "MaximumLength": (2, "H"),
    "Buffer": (8, "Q"),
})

# DRIVER_OBJECT: 0x150; MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1] at 0x70.
DRIVER_OBJECT = Layout("DRIVER_OBJECT", 0x150, {
    "Type": (0x00, "h"),
    "Size": (0x02, "h"),
    "DeviceObject": (0x08, "Q"),
    "Flags": (0x10, "I"),
    "DriverStart": (0x18, "Q"),
    "DriverSize": (0x20, "I"),
    "DriverExtension": (0x30, "Q"),
    "DriverName.Length": (0x38, "H"),
    "DriverName.MaximumLength": (0x3A, "H"),
    "DriverName.Buffer": (0x40, "Q"),
    "DriverInit": (0x58, "Q"),
    "DriverUnload": (0x68, "Q"),
})

# DEVICE_OBJECT: the leading fields the harness fills (Windows' object is
# 0x150 bytes; the driver only passes the pointer around).
DEVICE_OBJECT_SIZE = 0x150
DEVICE_OBJECT = Layout("DEVICE_OBJECT", DEVICE_OBJECT_SIZE, {
    "Type": (0x00, "h"),
    "Size": (0x02, "H"),
    "ReferenceCount": (0x04, "i"),
    "DriverObject": (0x08, "Q"),
    "NextDevice": (0x10, "Q"),
    "Flags": (0x30, "I"),
    "Characteristics": (0x34, "I"),
    "DeviceExtension": (0x40, "Q"),
    "DeviceType": (0x48, "I"),
})

# FILE_OBJECT: 0xD8; the harness only sets Type, Size and DeviceObject.
FILE_OBJECT = Layout("FILE_OBJECT", 0xD8, {
    "Type": (0x00, "h"),
    "Size": (0x02, "h"),
    "DeviceObject": (0x08, "Q"),
})


# PROCESSOR_NUMBER: 4.
PROCESSOR_NUMBER = Layout("PROCESSOR_NUMBER", 4, {"Group": (0, "H"), "Number": (2, "B"), "Reserved": (3, "B")})

# ---- KMDF 1.33 (wdf-types/LAYOUTS.md, generated from Microsoft's headers) ----

WDF_DRIVER_CONFIG = Layout("WDF_DRIVER_CONFIG", 32, {
    "Size": (0, "I"),
    "EvtDriverDeviceAdd": (8, "Q"),
    "EvtDriverUnload": (16, "Q"),
    "DriverInitFlags": (24, "I"),
    "DriverPoolTag": (28, "I"),
})

WDF_OBJECT_ATTRIBUTES = Layout("WDF_OBJECT_ATTRIBUTES", 56, {
    "Size": (0, "I"),
    "EvtCleanupCallback": (8, "Q"),
    "EvtDestroyCallback": (16, "Q"),
    "ExecutionLevel": (24, "i"),
    "SynchronizationScope": (28, "i"),
    "ParentObject": (32, "Q"),
    "ContextSizeOverride": (40, "Q"),
    "ContextTypeInfo": (48, "Q"),
})

WDF_IO_QUEUE_CONFIG = Layout("WDF_IO_QUEUE_CONFIG", 96, {
    "Size": (0, "I"),
    "DispatchType": (4, "i"),
    "PowerManaged": (8, "i"),
    "AllowZeroLengthRequests": (12, "B"),
    "DefaultQueue": (13, "B"),
    "EvtIoDefault": (16, "Q"),
    "EvtIoRead": (24, "Q"),
    "EvtIoWrite": (32, "Q"),
    "EvtIoDeviceControl": (40, "Q"),
    "EvtIoInternalDeviceControl": (48, "Q"),
    "Driver": (88, "Q"),
})

WDF_FILEOBJECT_CONFIG = Layout("WDF_FILEOBJECT_CONFIG", 40, {
    "Size": (0, "I"),
    "EvtDeviceFileCreate": (8, "Q"),
    "EvtFileClose": (16, "Q"),
    "EvtFileCleanup": (24, "Q"),
    "AutoForwardCleanupClose": (32, "i"),
    "FileObjectClass": (36, "i"),
})

WDF_TIMER_CONFIG = Layout("WDF_TIMER_CONFIG", 40, {
    "Size": (0, "I"),
    "EvtTimerFunc": (8, "Q"),
    "Period": (16, "I"),
    "AutomaticSerialization": (20, "B"),
    "TolerableDelay": (24, "I"),
    "UseHighResolutionTimer": (32, "B"),
})

# WDF_BIND_INFO: WDFLDR's private structure (fxldr.h).
WDF_BIND_INFO = Layout("WDF_BIND_INFO", 48, {
    "Size": (0, "I"),
    "Component": (8, "Q"),
    "Version.Major": (16, "I"),
    "Version.Minor": (20, "I"),
    "Version.Build": (24, "I"),
    "FuncCount": (28, "I"),
    "FuncTable": (32, "Q"),
    "Module": (40, "Q"),
})
