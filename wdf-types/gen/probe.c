/* The KMDF structures and functions the driver's glue uses, for gen.sh:
 * clang lays each one out with the Microsoft x64 ABI from Microsoft's
 * published KMDF headers. Nothing here is compiled into the driver. */
#include <ntddk.h>
#include <wdf.h>

WDF_DRIVER_CONFIG probe_driver_config;
WDF_IO_QUEUE_CONFIG probe_io_queue_config;
WDF_OBJECT_ATTRIBUTES probe_object_attributes;
WDF_FILEOBJECT_CONFIG probe_fileobject_config;
WDF_TIMER_CONFIG probe_timer_config;
UNICODE_STRING probe_unicode_string;
DRIVER_OBJECT probe_driver_object;

/* Constants: each becomes a record of that many bytes plus one. */
#define PROBE_VALUE(name) struct probe_value_##name { char bytes[(name) + 1]; }; enum { probe_size_##name = sizeof(struct probe_value_##name) };
PROBE_VALUE(WdfDriverInitNonPnpDriver)
PROBE_VALUE(WdfExecutionLevelInheritFromParent)
PROBE_VALUE(WdfExecutionLevelPassive)
PROBE_VALUE(WdfSynchronizationScopeInheritFromParent)
PROBE_VALUE(WdfIoQueueDispatchSequential)
PROBE_VALUE(WdfIoQueueDispatchManual)
PROBE_VALUE(WdfFalse)
PROBE_VALUE(WdfUseDefault)
PROBE_VALUE(WdfFileObjectWdfCannotUseFsContexts)
PROBE_VALUE(FILE_DEVICE_NETWORK)
PROBE_VALUE(FILE_DEVICE_SECURE_OPEN)
