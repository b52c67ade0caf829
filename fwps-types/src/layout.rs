//! Compile-time x64 layout assertions. Every number here comes from the
//! project's reference table of sizes and offsets, produced by an MS-ABI
//! compiler from Microsoft's definitions. A mismatch fails the build.

#[cfg(target_pointer_width = "64")]
mod x64 {
    use crate::*;
    use core::mem::{align_of, offset_of, size_of};

    macro_rules! assert_layout {
        ($ty:ty, size $size:expr, align $align:expr, { $($field:ident @ $off:expr),* $(,)? }) => {
            const _: () = assert!(size_of::<$ty>() == $size, concat!("size of ", stringify!($ty)));
            const _: () = assert!(align_of::<$ty>() == $align, concat!("align of ", stringify!($ty)));
            $(const _: () = assert!(
                offset_of!($ty, $field) == $off,
                concat!("offset of ", stringify!($ty), ".", stringify!($field))
            );)*
        };
    }

    macro_rules! assert_callout {
        ($($ty:ty),*) => {$(
            assert_layout!($ty, size 48, align 8, {
                calloutKey @ 0, flags @ 16, classifyFn @ 24, notifyFn @ 32, flowDeleteFn @ 40,
            });
        )*};
    }
    assert_callout!(FWPS_CALLOUT0, FWPS_CALLOUT1, FWPS_CALLOUT2, FWPS_CALLOUT3);

    macro_rules! assert_filter {
        ($($ty:ty),*) => {$(
            assert_layout!($ty, size 64, align 8, {
                filterId @ 0, weight @ 8, subLayerWeight @ 24, flags @ 26,
                numFilterConditions @ 28, filterCondition @ 32, action @ 40,
                context @ 48, providerContext @ 56,
            });
        )*};
    }
    assert_filter!(FWPS_FILTER0, FWPS_FILTER1, FWPS_FILTER2, FWPS_FILTER3);

    assert_layout!(FWPS_FILTER_CONDITION0, size 24, align 8, {
        fieldId @ 0, reserved @ 2, matchType @ 4, conditionValue @ 8,
    });
    assert_layout!(FWPS_ACTION0, size 8, align 4, { r#type @ 0, calloutId @ 4 });
    assert_layout!(FWPS_INCOMING_VALUE0, size 16, align 8, { value @ 0 });
    assert_layout!(FWPS_INCOMING_VALUES0, size 16, align 8, {
        layerId @ 0, valueCount @ 4, incomingValue @ 8,
    });
    assert_layout!(FWPS_DISCARD_METADATA0, size 16, align 8, {
        discardModule @ 0, discardReason @ 4, filterId @ 8,
    });
    assert_layout!(FWPS_INBOUND_FRAGMENT_METADATA0, size 12, align 4, {
        fragmentIdentification @ 0, fragmentOffset @ 4, fragmentLength @ 8,
    });
    assert_layout!(FWPS_CLASSIFY_OUT0, size 40, align 8, {
        actionType @ 0, outContext @ 8, filterId @ 16, rights @ 24, flags @ 28, reserved @ 32,
    });
    assert_layout!(FWPS_INCOMING_METADATA_VALUES0, size 280, align 8, {
        currentMetadataValues @ 0, flags @ 4, reserved @ 8, discardMetadata @ 16,
        flowHandle @ 32, ipHeaderSize @ 40, transportHeaderSize @ 44, processPath @ 48,
        token @ 56, processId @ 64, sourceInterfaceIndex @ 72, destinationInterfaceIndex @ 76,
        compartmentId @ 80, fragmentMetadata @ 84, pathMtu @ 96, completionHandle @ 104,
        transportEndpointHandle @ 112, remoteScopeId @ 120, controlData @ 128,
        controlDataLength @ 136, packetDirection @ 140, headerIncludeHeader @ 144,
        headerIncludeHeaderLength @ 152, destinationPrefix @ 156, frameLength @ 188,
        parentEndpointHandle @ 192, icmpIdAndSequence @ 200, localRedirectTargetPID @ 204,
        originalDestination @ 208, redirectRecords @ 216, currentL2MetadataValues @ 224,
        l2Flags @ 228, ethernetMacHeaderSize @ 232, wiFiOperationMode @ 236,
        vSwitchSourcePortId @ 240, vSwitchSourceNicIndex @ 244, vSwitchDestinationPortId @ 248,
        vSwitchPacketContext @ 256, subProcessTag @ 264, reserved1 @ 272,
    });

    // The windows-sys management types that cross into the kernel structures.
    use crate::fwp::*;
    assert_layout!(FWP_VALUE0, size 16, align 8, { r#type @ 0, Anonymous @ 8 });
    assert_layout!(FWP_CONDITION_VALUE0, size 16, align 8, { r#type @ 0, Anonymous @ 8 });
    assert_layout!(FWP_BYTE_BLOB, size 16, align 8, { size @ 0, data @ 8 });
    assert_layout!(FWPM_PROVIDER_CONTEXT2, size 88, align 8, {
        providerContextKey @ 0, displayData @ 16, flags @ 32, providerKey @ 40,
        providerData @ 48, r#type @ 64, Anonymous @ 72, providerContextId @ 80,
    });
    assert_layout!(FWPM_FILTER0, size 200, align 8, {
        filterKey @ 0, displayData @ 16, flags @ 32, providerKey @ 40, providerData @ 48,
        layerKey @ 64, subLayerKey @ 80, weight @ 96, numFilterConditions @ 112,
        filterCondition @ 120, action @ 128, Anonymous @ 152, reserved @ 168,
        filterId @ 176, effectiveWeight @ 184,
    });
    assert_layout!(FWPM_CALLOUT0, size 88, align 8, {
        calloutKey @ 0, displayData @ 16, flags @ 32, providerKey @ 40, providerData @ 48,
        applicableLayer @ 64, calloutId @ 80,
    });
    assert_layout!(FWPM_FILTER_ENUM_TEMPLATE0, size 72, align 8, {
        providerKey @ 0, layerKey @ 8, enumType @ 24, flags @ 28,
        providerContextTemplate @ 32, numFilterConditions @ 40, filterCondition @ 48,
        actionMask @ 56, calloutKey @ 64,
    });
    assert_layout!(FWPM_SESSION0, size 72, align 8, {
        sessionKey @ 0, displayData @ 16, flags @ 32, txnWaitTimeoutInMSec @ 36,
        processId @ 40, sid @ 48, username @ 56, kernelMode @ 64,
    });
}
