"""KMDF as the driver's image sees it: WDFLDR's ``WdfVersionBind`` and
``WdfVersionUnbind``, and the framework's function table, whose entries
land in checking handlers here (one per WDF method the glue calls; any
other entry fails the run as an unsupported API).

What is checked, each rule from Microsoft's KMDF documentation: the bind
asks for KMDF 1.33 with the 1.33 table size; every method receives the
globals the bind gave; object handles are live and of the right kind;
a WDFDEVICE_INIT is used only until ``WdfDeviceCreate`` consumes it (or it
is freed once); the control device carries an SDDL, its name and
FILE_DEVICE_SECURE_OPEN, and finishes initializing only after the
callouts are registered; the default queue is sequential and delivers
IOCTLs to EvtIoDeviceControl at PASSIVE_LEVEL; a request is completed once,
only while the driver owns it, with ``Information`` within its output
buffer; forward, requeue and retrieve follow the manual queue's rules; the
timer is stopped before the framework deletes its parent after
EvtDriverUnload; unbind comes last."""

import struct

from . import constants as c
from . import layouts as L

MODULE = "wfpemu_wdf"  # a name the emulator has no handlers of its own for
KMDF_COMPONENT = "KmdfLibrary"
TABLE_ENTRIES = 458  # WdfFunctionTableNumEntries, KMDF 1.33
SDDL_SYS_ALL_ADM_ALL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)"
WDF_DRIVER_INIT_NON_PNP = 1
DISPATCH_SEQUENTIAL, DISPATCH_MANUAL = 1, 3
EXECUTION_LEVEL_PASSIVE = 2

# Function-table indices of the methods implemented here (wdf-types/LAYOUTS.md).
INDEX = {
    "WdfControlDeviceInitAllocate": 25, "WdfControlFinishInitializing": 27, "WdfDeviceWdmGetDeviceObject": 31,
    "WdfDeviceInitFree": 54, "WdfDeviceInitSetDeviceType": 66, "WdfDeviceInitAssignName": 67,
    "WdfDeviceInitSetCharacteristics": 70, "WdfDeviceInitSetFileObjectConfig": 71, "WdfDeviceCreate": 75,
    "WdfDeviceCreateSymbolicLink": 80, "WdfDriverCreate": 116, "WdfIoQueueCreate": 152,
    "WdfIoQueueRetrieveNextRequest": 158, "WdfIoQueueRetrieveRequestByFileObject": 159, "WdfObjectDelete": 208,
    "WdfRequestCompleteWithInformation": 265, "WdfRequestRetrieveInputBuffer": 269,
    "WdfRequestRetrieveOutputBuffer": 270, "WdfRequestGetFileObject": 277, "WdfRequestForwardToIoQueue": 281,
    "WdfRequestRequeue": 283, "WdfTimerCreate": 318, "WdfTimerStart": 319, "WdfTimerStop": 320,
}


class Wdf:
    """The framework's state for one loaded driver."""

    def __init__(self, kernel):
        self.k = kernel
        self.globals = 0
        self.table = 0
        self.bound = False
        self.unbound = False
        self.handles = iter(range(0xFDF0_0000_0000_1000, 0xFDF0_0000_1000_0000, 0x10))
        self.driver = None  # {"handle", "unload"}
        self.inits = {}  # handle -> {"state": "live"/"consumed"/"freed", ...}
        self.device = None  # {"handle", "wdm", "name", "link", "open", "file_cleanup", "deleted"}
        self.queues = {}  # handle -> {"kind", "io_device_control", "parked": [request handles]}
        self.requests = {}  # handle -> request record
        self.timer = None  # {"handle", "function", "period", "running"}
        self.unload_ran = False
        self.events = []
        self.unbound_entries = set()  # table indices a scenario leaves NULL

    def apis(self):
        methods = {name: (getattr(self, name), argc) for name, argc in (
            ("WdfVersionBind", 4), ("WdfVersionUnbind", 3), ("FxDriverUnload", 1),
            ("WdfControlDeviceInitAllocate", 3), ("WdfControlFinishInitializing", 2),
            ("WdfDeviceWdmGetDeviceObject", 2), ("WdfDeviceInitFree", 2), ("WdfDeviceInitSetDeviceType", 3),
            ("WdfDeviceInitAssignName", 3), ("WdfDeviceInitSetCharacteristics", 4),
            ("WdfDeviceInitSetFileObjectConfig", 4), ("WdfDeviceCreate", 4), ("WdfDeviceCreateSymbolicLink", 3),
            ("WdfDriverCreate", 6), ("WdfIoQueueCreate", 5), ("WdfIoQueueRetrieveNextRequest", 3),
            ("WdfIoQueueRetrieveRequestByFileObject", 4), ("WdfObjectDelete", 2),
            ("WdfRequestCompleteWithInformation", 4), ("WdfRequestRetrieveInputBuffer", 5),
            ("WdfRequestRetrieveOutputBuffer", 5), ("WdfRequestGetFileObject", 2),
            ("WdfRequestForwardToIoQueue", 3), ("WdfRequestRequeue", 2), ("WdfTimerCreate", 4),
            ("WdfTimerStart", 3), ("WdfTimerStop", 3))}
        for index in range(TABLE_ENTRIES):
            if index not in INDEX.values():
                methods[f"WdfFunction{index}"] = (self._unimplemented(index), 0)
        return methods

    def _unimplemented(self, index):
        def handler():
            self.k.fail(f"WDF function table entry {index}: a method this emulator does not provide")
        return handler

    # ---- helpers -------------------------------------------------------------

    def _handle(self):
        return next(self.handles)

    def _globals(self, value, api):
        self.k.check(self.bound and not self.unbound, f"{api} called while the driver is not bound to KMDF")
        self.k.check(value == self.globals, f"{api}: DriverGlobals {value:#x} is not the one the bind gave")

    def _unicode(self, address, api):
        string = L.UNICODE_STRING.unpack(self.k.read(address, 16, f"{api} UNICODE_STRING"))
        self.k.check(string["Length"] % 2 == 0 and string["Length"] <= string["MaximumLength"],
                     f"{api}: UNICODE_STRING lengths {string['Length']}/{string['MaximumLength']}")
        return self.k.read(string["Buffer"], string["Length"], f"{api} string").decode("utf-16-le")

    def _init(self, handle, api):
        init = self.inits.get(handle)
        self.k.check(init is not None, f"{api}: {handle:#x} is not a WDFDEVICE_INIT")
        self.k.check(init["state"] == "live", f"{api}: the WDFDEVICE_INIT was already {init['state']}")
        return init

    def _device(self, handle, api):
        self.k.check(self.device is not None and handle == self.device["handle"] and not self.device["deleted"],
                     f"{api}: {handle:#x} is not our live control device")
        return self.device

    def _owned(self, handle, api):
        request = self.requests.get(handle)
        self.k.check(request is not None, f"{api}: {handle:#x} is not a request")
        self.k.check(request["state"] == "driver",
                     f"{api}: request {handle:#x} is {request['state']}, not owned by the driver")
        return request

    def _manual_queue(self, handle, api):
        queue = self.queues.get(handle)
        self.k.check(queue is not None and queue["kind"] == "manual", f"{api}: {handle:#x} is not our manual queue")
        return queue

    # ---- WDFLDR -------------------------------------------------------------

    def WdfVersionBind(self, driver, registry_path, bind_info, globals_out):
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "WdfVersionBind")
        k.check(not self.bound, "WdfVersionBind: bound twice")
        k.check(driver == k.driver_object, "WdfVersionBind: not our DRIVER_OBJECT")
        info = L.WDF_BIND_INFO.unpack(k.read(bind_info, L.WDF_BIND_INFO.size, "WDF_BIND_INFO"))
        k.check(info["Size"] == L.WDF_BIND_INFO.size, f"WdfVersionBind: Size {info['Size']}")
        component = k.read_wide(info["Component"])
        k.check(component == KMDF_COMPONENT, f"WdfVersionBind: component {component!r}")
        version = (info["Version.Major"], info["Version.Minor"])
        k.check(version == (1, 33), f"WdfVersionBind: KMDF {version[0]}.{version[1]}, the image targets 1.33")
        k.check(info["FuncCount"] == TABLE_ENTRIES,
                f"WdfVersionBind: FuncCount {info['FuncCount']}, KMDF 1.33 has {TABLE_ENTRIES}")
        self.table = k.alloc(8 * TABLE_ENTRIES, "WDF function table")
        names = {index: name for name, index in INDEX.items()}
        entries = [0 if index in self.unbound_entries else self.k.emu.get_proc(MODULE, names.get(index, f"WdfFunction{index}"))
                   for index in range(TABLE_ENTRIES)]
        k.write(self.table, struct.pack(f"<{TABLE_ENTRIES}Q", *entries))
        # Since 1.15 FuncTable points at the driver's WdfFunctions pointer,
        # which the loader sets to the framework's table.
        k.write_u64(info["FuncTable"], self.table, "WDF_BIND_INFO.FuncTable")
        self.globals = k.alloc(0x100, "WDF_DRIVER_GLOBALS")
        k.write_u64(globals_out, self.globals, "WdfVersionBind globals out-pointer")
        # WDFLDR keeps the service's path from the bind to the unbind.
        self.registry_text = self._unicode(registry_path, "WdfVersionBind RegistryPath")
        self.bound = True
        self.events.append("bind")
        return c.STATUS_SUCCESS

    def WdfVersionUnbind(self, registry_path, bind_info, globals_value):
        k = self.k
        k.check(self.bound and not self.unbound, "WdfVersionUnbind without a bind")
        k.check(globals_value == self.globals, "WdfVersionUnbind: not the globals of the bind")
        text = self._unicode(registry_path, "WdfVersionUnbind RegistryPath")
        k.check(text == self.registry_text, f"WdfVersionUnbind: registry path {text!r}, the bind's was "
                                            f"{self.registry_text!r}")
        if self.driver is not None:
            if not self.unload_ran:
                # Only after a failed DriverEntry (the stub unbinds at once):
                # then the control device must never have opened to I/O.
                k.check(self.device is None or self.device["deleted"] or not self.device["open"],
                        "WdfVersionUnbind with the control device open and EvtDriverUnload never run")
            # The framework deletes the driver object and its children.
            self._delete_driver_objects()
        self.unbound = True
        self.events.append("unbind")
        return c.STATUS_SUCCESS

    def FxDriverUnload(self, driver):
        """The framework's DriverUnload (which WdfDriverCreate put in the
        driver object): EvtDriverUnload, then its objects go. The callback
        is entered as a tail call: control returns from it straight to
        whoever called this routine."""
        k = self.k
        k.require_irql(c.PASSIVE_LEVEL, "DriverUnload")
        k.check(driver == k.driver_object, "DriverUnload: not our DRIVER_OBJECT")
        k.check(not self.unload_ran, "the framework's unload routine ran twice")
        self.unload_ran = True
        self.events.append("EvtDriverUnload")
        evt = self.driver["unload"]
        if not evt:
            return None
        emu = k.emu
        rsp = emu.reg_read("rsp") - 8
        emu.reg_write("rsp", rsp)
        k.write_u64(rsp, evt, "tail call")
        emu.reg_write("rcx", self.driver["handle"])
        return None

    def _delete_driver_objects(self):
        """What the framework does after EvtDriverUnload returns: the driver
        object and its children go, the control device with its queues and
        timer among them."""
        k = self.k
        if self.timer is not None:
            k.check(not self.timer["running"], "the timeout timer still runs when the framework deletes it "
                                               "after EvtDriverUnload (WdfTimerStop was not called)")
        owned = [hex(h) for h, r in self.requests.items() if r["state"] == "driver"]
        k.check(not owned, f"request(s) {owned} neither completed nor queued at unload")
        for queue in self.queues.values():
            for handle in list(queue["parked"]):
                # The framework cancels what is still queued.
                self._finish(handle, c.STATUS_CANCELLED, 0)
            queue["parked"].clear()
        if self.device is not None and not self.device["deleted"]:
            self._delete_device()
        self.events.append("objects deleted")

    def _delete_device(self):
        k = self.k
        device = self.device
        k.check(not k.wfp.callouts_of_device(device["wdm"]),
                "the control device is deleted while callouts registered with it are still registered")
        device["deleted"] = True
        k.devices.pop(device["wdm"], None)
        k.write_u64(k.driver_object + L.DRIVER_OBJECT.offset("DeviceObject"), 0)
        k.free(device["wdm"])
        self.queues.clear()
        self.timer = None

    # ---- driver and control device ---------------------------------------------

    def WdfDriverCreate(self, globals_value, driver, registry_path, attributes, config, driver_out):
        k = self.k
        self._globals(globals_value, "WdfDriverCreate")
        k.require_irql(c.PASSIVE_LEVEL, "WdfDriverCreate")
        k.check(self.driver is None, "WdfDriverCreate called twice")
        k.check(driver == k.driver_object, "WdfDriverCreate: not our DRIVER_OBJECT")
        k.check(registry_path == k.registry_path, "WdfDriverCreate: not DriverEntry's registry path")
        fields = L.WDF_DRIVER_CONFIG.unpack(k.read(config, L.WDF_DRIVER_CONFIG.size, "WDF_DRIVER_CONFIG"))
        k.check(fields["Size"] == L.WDF_DRIVER_CONFIG.size, f"WDF_DRIVER_CONFIG.Size {fields['Size']}")
        k.check(fields["DriverInitFlags"] & WDF_DRIVER_INIT_NON_PNP, "a control-device driver must be non-PnP")
        k.check(fields["EvtDriverDeviceAdd"] == 0, "a non-PnP driver has no EvtDriverDeviceAdd")
        k.check(fields["EvtDriverUnload"] != 0, "a non-PnP driver must supply EvtDriverUnload to be unloadable")
        handle = self._handle()
        self.driver = {"handle": handle, "unload": fields["EvtDriverUnload"]}
        k.write_u64(k.driver_object + L.DRIVER_OBJECT.offset("DriverUnload"),
                    k.emu.get_proc(MODULE, "FxDriverUnload"))
        if driver_out:
            k.write_u64(driver_out, handle, "WdfDriverCreate out-handle")
        self.events.append("WdfDriverCreate")
        return c.STATUS_SUCCESS

    def WdfControlDeviceInitAllocate(self, globals_value, driver, sddl):
        k = self.k
        self._globals(globals_value, "WdfControlDeviceInitAllocate")
        k.require_irql(c.PASSIVE_LEVEL, "WdfControlDeviceInitAllocate")
        k.check(self.driver is not None and driver == self.driver["handle"],
                "WdfControlDeviceInitAllocate: not our WDFDRIVER")
        k.check(sddl != 0, "WdfControlDeviceInitAllocate without an SDDL string")
        text = self._unicode(sddl, "WdfControlDeviceInitAllocate SDDL")
        k.check(text == SDDL_SYS_ALL_ADM_ALL, f"control device SDDL {text!r}, expected SYSTEM and Administrators only")
        handle = self._handle()
        self.inits[handle] = {"state": "live", "name": None, "type": None, "characteristics": 0,
                              "file_cleanup": 0}
        return handle

    def WdfDeviceInitSetDeviceType(self, globals_value, init, device_type):
        self._globals(globals_value, "WdfDeviceInitSetDeviceType")
        self._init(init, "WdfDeviceInitSetDeviceType")["type"] = device_type & 0xFFFFFFFF

    def WdfDeviceInitSetCharacteristics(self, globals_value, init, characteristics, or_in):
        self._globals(globals_value, "WdfDeviceInitSetCharacteristics")
        record = self._init(init, "WdfDeviceInitSetCharacteristics")
        value = characteristics & 0xFFFFFFFF
        record["characteristics"] = (record["characteristics"] | value) if or_in & 0xFF else value

    def WdfDeviceInitAssignName(self, globals_value, init, name):
        self._globals(globals_value, "WdfDeviceInitAssignName")
        self._init(init, "WdfDeviceInitAssignName")["name"] = self._unicode(name, "WdfDeviceInitAssignName")
        return c.STATUS_SUCCESS

    def WdfDeviceInitSetFileObjectConfig(self, globals_value, init, config, attributes):
        k = self.k
        self._globals(globals_value, "WdfDeviceInitSetFileObjectConfig")
        record = self._init(init, "WdfDeviceInitSetFileObjectConfig")
        fields = L.WDF_FILEOBJECT_CONFIG.unpack(k.read(config, L.WDF_FILEOBJECT_CONFIG.size))
        k.check(fields["Size"] == L.WDF_FILEOBJECT_CONFIG.size, f"WDF_FILEOBJECT_CONFIG.Size {fields['Size']}")
        record["file_cleanup"] = fields["EvtFileCleanup"]

    def WdfDeviceInitFree(self, globals_value, init):
        self._globals(globals_value, "WdfDeviceInitFree")
        self._init(init, "WdfDeviceInitFree")["state"] = "freed"

    def WdfDeviceCreate(self, globals_value, init_in_out, attributes, device_out):
        k = self.k
        self._globals(globals_value, "WdfDeviceCreate")
        k.require_irql(c.PASSIVE_LEVEL, "WdfDeviceCreate")
        init_handle = k.read_u64(init_in_out, "WdfDeviceCreate DeviceInit")
        init = self._init(init_handle, "WdfDeviceCreate")
        k.check(self.device is None, "a second control device")
        k.check(init["name"] == c.DEVICE_NAME, f"control device name {init['name']!r}, expected {c.DEVICE_NAME!r}")
        k.check(init["type"] == c.FILE_DEVICE_NETWORK, f"control device type {init['type']}")
        k.check(init["characteristics"] & c.FILE_DEVICE_SECURE_OPEN,
                "the control device lacks FILE_DEVICE_SECURE_OPEN")
        wdm = k.alloc(L.DEVICE_OBJECT_SIZE, "device")
        k.write(wdm, L.DEVICE_OBJECT.pack(Type=c.IO_TYPE_DEVICE, Size=L.DEVICE_OBJECT_SIZE,
                                          DriverObject=k.driver_object, Flags=c.DO_DEVICE_INITIALIZING,
                                          Characteristics=init["characteristics"], DeviceType=init["type"]))
        k.write_u64(k.driver_object + L.DRIVER_OBJECT.offset("DeviceObject"), wdm)
        k.devices[wdm] = {"name": init["name"]}
        init["state"] = "consumed"
        k.write_u64(init_in_out, 0, "WdfDeviceCreate DeviceInit")
        handle = self._handle()
        self.device = {"handle": handle, "wdm": wdm, "name": init["name"], "link": None, "open": False,
                       "file_cleanup": init["file_cleanup"], "deleted": False}
        k.write_u64(device_out, handle, "WdfDeviceCreate out-handle")
        self.events.append("WdfDeviceCreate")
        return c.STATUS_SUCCESS

    def WdfDeviceCreateSymbolicLink(self, globals_value, device, name):
        self._globals(globals_value, "WdfDeviceCreateSymbolicLink")
        self._device(device, "WdfDeviceCreateSymbolicLink")["link"] = self._unicode(name, "symbolic link")
        return c.STATUS_SUCCESS

    def WdfDeviceWdmGetDeviceObject(self, globals_value, device):
        self._globals(globals_value, "WdfDeviceWdmGetDeviceObject")
        return self._device(device, "WdfDeviceWdmGetDeviceObject")["wdm"]

    def WdfControlFinishInitializing(self, globals_value, device):
        k = self.k
        self._globals(globals_value, "WdfControlFinishInitializing")
        record = self._device(device, "WdfControlFinishInitializing")
        k.check(not record["open"], "WdfControlFinishInitializing called twice")
        k.check(len(k.wfp.callouts) == len(c.CALLOUTS),
                f"the control device opens with {len(k.wfp.callouts)} of {len(c.CALLOUTS)} callouts registered")
        k.check(record["link"] is not None, "the control device opens without its symbolic link")
        k.check(any(q["kind"] == "default" for q in self.queues.values()), "the control device opens without a queue")
        record["open"] = True
        flags_at = record["wdm"] + L.DEVICE_OBJECT.offset("Flags")
        flags = struct.unpack("<I", k.read(flags_at, 4))[0]
        k.write(flags_at, struct.pack("<I", flags & ~c.DO_DEVICE_INITIALIZING))
        self.events.append("WdfControlFinishInitializing")

    def WdfObjectDelete(self, globals_value, handle):
        k = self.k
        self._globals(globals_value, "WdfObjectDelete")
        record = self._device(handle, "WdfObjectDelete")
        k.check(not record["open"], "WdfObjectDelete on a control device open to I/O")
        self._delete_device()
        self.events.append("WdfObjectDelete")

    # ---- queues and requests ---------------------------------------------------

    def WdfIoQueueCreate(self, globals_value, device, config, attributes, queue_out):
        k = self.k
        self._globals(globals_value, "WdfIoQueueCreate")
        self._device(device, "WdfIoQueueCreate")
        fields = L.WDF_IO_QUEUE_CONFIG.unpack(k.read(config, L.WDF_IO_QUEUE_CONFIG.size, "WDF_IO_QUEUE_CONFIG"))
        k.check(fields["Size"] == L.WDF_IO_QUEUE_CONFIG.size, f"WDF_IO_QUEUE_CONFIG.Size {fields['Size']}")
        handle = self._handle()
        if fields["DefaultQueue"]:
            k.check(fields["DispatchType"] == DISPATCH_SEQUENTIAL, "the IOCTL queue is not sequential")
            k.check(fields["EvtIoDeviceControl"] != 0, "the default queue has no EvtIoDeviceControl")
            k.check(attributes != 0, "the default queue has no attributes: EvtIoDeviceControl would run at "
                                     "up to DISPATCH_LEVEL")
            level = L.WDF_OBJECT_ATTRIBUTES.unpack(k.read(attributes, L.WDF_OBJECT_ATTRIBUTES.size))
            k.check(level["Size"] == L.WDF_OBJECT_ATTRIBUTES.size, f"WDF_OBJECT_ATTRIBUTES.Size {level['Size']}")
            k.check(level["ExecutionLevel"] == EXECUTION_LEVEL_PASSIVE,
                    "the IOCTL queue's callbacks are not at PASSIVE_LEVEL")
            self.queues[handle] = {"kind": "default", "io_device_control": fields["EvtIoDeviceControl"],
                                   "parked": []}
        else:
            k.check(fields["DispatchType"] == DISPATCH_MANUAL, f"queue dispatch type {fields['DispatchType']}")
            k.check(queue_out != 0, "a manual queue whose handle the driver does not keep")
            self.queues[handle] = {"kind": "manual", "io_device_control": 0, "parked": []}
        if queue_out:
            k.write_u64(queue_out, handle, "WdfIoQueueCreate out-handle")
        return c.STATUS_SUCCESS

    def present(self, file_object, code, input_bytes, output_length):
        """The sequential queue hands an IOCTL to the driver: a request with
        a METHOD_BUFFERED system buffer (stale bytes, then the input)."""
        k = self.k
        length = max(len(input_bytes), output_length)
        buffer = 0
        if length:
            buffer = k.alloc(length, "SystemBuffer")
            k.write(buffer, b"\xab" * length)
            k.write(buffer, input_bytes)
        handle = self._handle()
        record = {"handle": handle, "file": file_object, "code": code, "input_length": len(input_bytes),
                  "output_length": output_length, "buffer": buffer, "state": "driver", "completed": False,
                  "status": None, "information": 0, "output": b"", "retrieved": False}
        self.requests[handle] = record
        queue = next(h for h, q in self.queues.items() if q["kind"] == "default")
        return queue, record

    def WdfRequestRetrieveInputBuffer(self, globals_value, request, minimum, buffer_out, length_out):
        return self._retrieve(globals_value, request, minimum, buffer_out, length_out, "input")

    def WdfRequestRetrieveOutputBuffer(self, globals_value, request, minimum, buffer_out, length_out):
        return self._retrieve(globals_value, request, minimum, buffer_out, length_out, "output")

    def _retrieve(self, globals_value, handle, minimum, buffer_out, length_out, which):
        k = self.k
        api = f"WdfRequestRetrieve{which.capitalize()}Buffer"
        self._globals(globals_value, api)
        request = self._owned(handle, api)
        if request["code"] & 3 == 3:
            # METHOD_NEITHER: no system buffer to retrieve.
            return c.STATUS_INVALID_DEVICE_REQUEST
        length = request["input_length"] if which == "input" else request["output_length"]
        if length == 0 or length < minimum:
            return c.STATUS_BUFFER_TOO_SMALL
        k.write_u64(buffer_out, request["buffer"], f"{api} buffer out-pointer")
        if length_out:
            k.write_u64(length_out, length, f"{api} length out-pointer")
        return c.STATUS_SUCCESS

    def WdfRequestGetFileObject(self, globals_value, handle):
        self._globals(globals_value, "WdfRequestGetFileObject")
        return self._owned(handle, "WdfRequestGetFileObject")["file"]

    def WdfRequestCompleteWithInformation(self, globals_value, handle, status, information):
        k = self.k
        self._globals(globals_value, "WdfRequestCompleteWithInformation")
        k.require_irql(c.DISPATCH_LEVEL, "WdfRequestCompleteWithInformation")
        request = self._owned(handle, "WdfRequestCompleteWithInformation")
        status &= 0xFFFFFFFF
        k.check(status != c.STATUS_PENDING, "a request completed with STATUS_PENDING")
        k.check(information <= request["output_length"],
                f"request completed with Information {information} over its {request['output_length']}-byte "
                "output buffer")
        self._finish(handle, status, information)

    def _finish(self, handle, status, information):
        k = self.k
        request = self.requests[handle]
        request.update(state="completed", completed=True, status=status, information=information,
                       output=k.read(request["buffer"], information) if information else b"")
        # The buffer is the I/O manager's again: a later access faults the run.
        if request["buffer"]:
            k.free(request["buffer"])
            request["buffer"] = 0

    def WdfRequestForwardToIoQueue(self, globals_value, handle, queue):
        self._globals(globals_value, "WdfRequestForwardToIoQueue")
        request = self._owned(handle, "WdfRequestForwardToIoQueue")
        self._manual_queue(queue, "WdfRequestForwardToIoQueue")["parked"].append(handle)
        request.update(state="parked", queue=queue)
        return c.STATUS_SUCCESS

    def WdfIoQueueRetrieveNextRequest(self, globals_value, queue, request_out):
        k = self.k
        self._globals(globals_value, "WdfIoQueueRetrieveNextRequest")
        k.require_irql(c.DISPATCH_LEVEL, "WdfIoQueueRetrieveNextRequest")
        parked = self._manual_queue(queue, "WdfIoQueueRetrieveNextRequest")["parked"]
        if not parked:
            return c.STATUS_NO_MORE_ENTRIES
        handle = parked.pop(0)
        self.requests[handle].update(state="driver", retrieved=True)
        k.write_u64(request_out, handle, "WdfIoQueueRetrieveNextRequest out-handle")
        return c.STATUS_SUCCESS

    def WdfIoQueueRetrieveRequestByFileObject(self, globals_value, queue, file_object, request_out):
        k = self.k
        self._globals(globals_value, "WdfIoQueueRetrieveRequestByFileObject")
        parked = self._manual_queue(queue, "WdfIoQueueRetrieveRequestByFileObject")["parked"]
        for handle in parked:
            if self.requests[handle]["file"] == file_object:
                parked.remove(handle)
                self.requests[handle].update(state="driver", retrieved=True)
                k.write_u64(request_out, handle, "WdfIoQueueRetrieveRequestByFileObject out-handle")
                return c.STATUS_SUCCESS
        return c.STATUS_NO_MORE_ENTRIES

    def WdfRequestRequeue(self, globals_value, handle):
        k = self.k
        self._globals(globals_value, "WdfRequestRequeue")
        request = self._owned(handle, "WdfRequestRequeue")
        k.check(request["retrieved"], "WdfRequestRequeue on a request not retrieved from a manual queue")
        self.queues[request["queue"]]["parked"].insert(0, handle)
        request.update(state="parked")
        return c.STATUS_SUCCESS

    # ---- timer --------------------------------------------------------------------

    def WdfTimerCreate(self, globals_value, config, attributes, timer_out):
        k = self.k
        self._globals(globals_value, "WdfTimerCreate")
        fields = L.WDF_TIMER_CONFIG.unpack(k.read(config, L.WDF_TIMER_CONFIG.size, "WDF_TIMER_CONFIG"))
        k.check(fields["Size"] == L.WDF_TIMER_CONFIG.size, f"WDF_TIMER_CONFIG.Size {fields['Size']}")
        k.check(fields["EvtTimerFunc"] != 0, "a timer without EvtTimerFunc")
        k.check(attributes != 0, "a timer without attributes has no parent")
        parent = L.WDF_OBJECT_ATTRIBUTES.unpack(k.read(attributes, L.WDF_OBJECT_ATTRIBUTES.size))
        self._device(parent["ParentObject"], "WdfTimerCreate (ParentObject)")
        k.check(self.timer is None, "a second timer")
        handle = self._handle()
        self.timer = {"handle": handle, "function": fields["EvtTimerFunc"], "period": fields["Period"],
                      "running": False}
        k.write_u64(timer_out, handle, "WdfTimerCreate out-handle")
        return c.STATUS_SUCCESS

    def _timer(self, handle, api):
        self.k.check(self.timer is not None and self.timer["handle"] == handle, f"{api}: {handle:#x} is not our timer")
        return self.timer

    def WdfTimerStart(self, globals_value, handle, due):
        self._globals(globals_value, "WdfTimerStart")
        timer = self._timer(handle, "WdfTimerStart")
        was = timer["running"]
        timer["running"] = True
        return 1 if was else 0

    def WdfTimerStop(self, globals_value, handle, wait):
        self._globals(globals_value, "WdfTimerStop")
        if wait & 0xFF:
            self.k.require_irql(c.PASSIVE_LEVEL, "WdfTimerStop(Wait = TRUE)")
        timer = self._timer(handle, "WdfTimerStop")
        was = timer["running"]
        timer["running"] = False
        return 1 if was else 0
