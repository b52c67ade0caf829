//! Compile-time layout assertions against `LAYOUTS.md` (x64 only: the
//! table is the Microsoft x64 ABI).

#[cfg(target_pointer_width = "64")]
mod x64 {
    use crate::types::*;
    use core::mem::{align_of, offset_of, size_of};

    const _: () = assert!(size_of::<WDF_DRIVER_CONFIG>() == 32 && align_of::<WDF_DRIVER_CONFIG>() == 8);
    const _: () = assert!(offset_of!(WDF_DRIVER_CONFIG, Size) == 0);
    const _: () = assert!(offset_of!(WDF_DRIVER_CONFIG, EvtDriverDeviceAdd) == 8);
    const _: () = assert!(offset_of!(WDF_DRIVER_CONFIG, EvtDriverUnload) == 16);
    const _: () = assert!(offset_of!(WDF_DRIVER_CONFIG, DriverInitFlags) == 24);
    const _: () = assert!(offset_of!(WDF_DRIVER_CONFIG, DriverPoolTag) == 28);

    const _: () = assert!(size_of::<WDF_IO_QUEUE_CONFIG>() == 96 && align_of::<WDF_IO_QUEUE_CONFIG>() == 8);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, Size) == 0);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, DispatchType) == 4);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, PowerManaged) == 8);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, AllowZeroLengthRequests) == 12);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, DefaultQueue) == 13);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoDefault) == 16);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoRead) == 24);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoWrite) == 32);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoDeviceControl) == 40);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoInternalDeviceControl) == 48);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoStop) == 56);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoResume) == 64);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoCanceledOnQueue) == 72);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, Settings) == 80);
    const _: () = assert!(offset_of!(WDF_IO_QUEUE_CONFIG, Driver) == 88);

    const _: () = assert!(size_of::<WDF_OBJECT_ATTRIBUTES>() == 56 && align_of::<WDF_OBJECT_ATTRIBUTES>() == 8);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, Size) == 0);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, EvtCleanupCallback) == 8);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, EvtDestroyCallback) == 16);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, ExecutionLevel) == 24);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, SynchronizationScope) == 28);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, ParentObject) == 32);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, ContextSizeOverride) == 40);
    const _: () = assert!(offset_of!(WDF_OBJECT_ATTRIBUTES, ContextTypeInfo) == 48);

    const _: () = assert!(size_of::<WDF_FILEOBJECT_CONFIG>() == 40 && align_of::<WDF_FILEOBJECT_CONFIG>() == 8);
    const _: () = assert!(offset_of!(WDF_FILEOBJECT_CONFIG, Size) == 0);
    const _: () = assert!(offset_of!(WDF_FILEOBJECT_CONFIG, EvtDeviceFileCreate) == 8);
    const _: () = assert!(offset_of!(WDF_FILEOBJECT_CONFIG, EvtFileClose) == 16);
    const _: () = assert!(offset_of!(WDF_FILEOBJECT_CONFIG, EvtFileCleanup) == 24);
    const _: () = assert!(offset_of!(WDF_FILEOBJECT_CONFIG, AutoForwardCleanupClose) == 32);
    const _: () = assert!(offset_of!(WDF_FILEOBJECT_CONFIG, FileObjectClass) == 36);

    const _: () = assert!(size_of::<WDF_TIMER_CONFIG>() == 40 && align_of::<WDF_TIMER_CONFIG>() == 8);
    const _: () = assert!(offset_of!(WDF_TIMER_CONFIG, Size) == 0);
    const _: () = assert!(offset_of!(WDF_TIMER_CONFIG, EvtTimerFunc) == 8);
    const _: () = assert!(offset_of!(WDF_TIMER_CONFIG, Period) == 16);
    const _: () = assert!(offset_of!(WDF_TIMER_CONFIG, AutomaticSerialization) == 20);
    const _: () = assert!(offset_of!(WDF_TIMER_CONFIG, TolerableDelay) == 24);
    const _: () = assert!(offset_of!(WDF_TIMER_CONFIG, UseHighResolutionTimer) == 32);

    const _: () = assert!(size_of::<UNICODE_STRING>() == 16 && align_of::<UNICODE_STRING>() == 8);
    const _: () = assert!(offset_of!(UNICODE_STRING, Length) == 0);
    const _: () = assert!(offset_of!(UNICODE_STRING, MaximumLength) == 2);
    const _: () = assert!(offset_of!(UNICODE_STRING, Buffer) == 8);
}

#[cfg(test)]
mod tests {
    //! The constants and function-table indices, checked against the table
    //! row by row (structures are checked at compile time above).
    use crate::*;

    const TABLE: &str = include_str!("../LAYOUTS.md");

    /// The table row naming `name` (constants end with the name, function
    /// rows go on with the older framework's column).
    fn line(name: &str) -> &'static str {
        let cell = format!(" | {name} |");
        let found = TABLE.lines().find(|line| line.starts_with("| ") && line.contains(&cell));
        found.unwrap_or_else(|| panic!("{name} not in LAYOUTS.md"))
    }

    fn row(name: &str) -> u64 {
        let line = line(name);
        line.trim_start_matches("| ").split(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    }

    #[test]
    fn constants_match_the_headers() {
        let constants: [(&str, i64); 11] = [
            ("FILE_DEVICE_NETWORK", FILE_DEVICE_NETWORK.into()),
            ("FILE_DEVICE_SECURE_OPEN", FILE_DEVICE_SECURE_OPEN.into()),
            ("WdfDriverInitNonPnpDriver", _WDF_DRIVER_INIT_FLAGS::WdfDriverInitNonPnpDriver.into()),
            ("WdfExecutionLevelInheritFromParent", _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent.into()),
            ("WdfExecutionLevelPassive", _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive.into()),
            ("WdfFalse", _WDF_TRI_STATE::WdfFalse.into()),
            ("WdfUseDefault", _WDF_TRI_STATE::WdfUseDefault.into()),
            ("WdfFileObjectWdfCannotUseFsContexts", _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts.into()),
            ("WdfIoQueueDispatchManual", _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual.into()),
            ("WdfIoQueueDispatchSequential", _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential.into()),
            (
                "WdfSynchronizationScopeInheritFromParent",
                _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent.into(),
            ),
        ];
        for (name, value) in constants {
            assert_eq!(row(name) as i64, value, "{name}");
        }
    }

    #[test]
    fn function_indices_match_the_headers() {
        let indices = [
            ("WdfControlDeviceInitAllocate", WdfControlDeviceInitAllocate::INDEX),
            ("WdfControlFinishInitializing", WdfControlFinishInitializing::INDEX),
            ("WdfDeviceCreate", WdfDeviceCreate::INDEX),
            ("WdfDeviceCreateSymbolicLink", WdfDeviceCreateSymbolicLink::INDEX),
            ("WdfDeviceInitAssignName", WdfDeviceInitAssignName::INDEX),
            ("WdfDeviceInitFree", WdfDeviceInitFree::INDEX),
            ("WdfDeviceInitSetCharacteristics", WdfDeviceInitSetCharacteristics::INDEX),
            ("WdfDeviceInitSetDeviceType", WdfDeviceInitSetDeviceType::INDEX),
            ("WdfDeviceInitSetFileObjectConfig", WdfDeviceInitSetFileObjectConfig::INDEX),
            ("WdfDeviceWdmGetDeviceObject", WdfDeviceWdmGetDeviceObject::INDEX),
            ("WdfDriverCreate", WdfDriverCreate::INDEX),
            ("WdfIoQueueCreate", WdfIoQueueCreate::INDEX),
            ("WdfIoQueueRetrieveNextRequest", WdfIoQueueRetrieveNextRequest::INDEX),
            ("WdfIoQueueRetrieveRequestByFileObject", WdfIoQueueRetrieveRequestByFileObject::INDEX),
            ("WdfObjectDelete", WdfObjectDelete::INDEX),
            ("WdfRequestCompleteWithInformation", WdfRequestCompleteWithInformation::INDEX),
            ("WdfRequestForwardToIoQueue", WdfRequestForwardToIoQueue::INDEX),
            ("WdfRequestGetFileObject", WdfRequestGetFileObject::INDEX),
            ("WdfRequestRequeue", WdfRequestRequeue::INDEX),
            ("WdfRequestRetrieveInputBuffer", WdfRequestRetrieveInputBuffer::INDEX),
            ("WdfRequestRetrieveOutputBuffer", WdfRequestRetrieveOutputBuffer::INDEX),
            ("WdfTimerCreate", WdfTimerCreate::INDEX),
            ("WdfTimerStart", WdfTimerStart::INDEX),
            ("WdfTimerStop", WdfTimerStop::INDEX),
        ];
        for (name, index) in indices {
            assert_eq!(row(name), index as u64, "{name}");
            // The table is append-only, so a method at the same index in the
            // older headers exists in every framework from then on: what
            // lets the image load on Windows 10 1903's KMDF 1.29.
            assert!(line(name).ends_with("| same index |"), "{name} is not in the older KMDF's table");
        }
        assert!(TABLE.contains(&format!("WdfFunctionTableNumEntries = {WDF_FUNCTION_TABLE_ENTRIES} ")));
    }
}
