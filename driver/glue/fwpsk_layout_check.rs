//! Compile-time cross-check of the hand-written kernel WFP structures in the
//! `fwps-types` crate against bindgen's reading of the WDK's own `fwpsk.h`.
//!
//! Built only for a Windows target with feature `fwpsk-bindgen-check` (which
//! implies `kmdf`): `build.rs` then generates `$OUT_DIR/fwpsk.rs` from the
//! WDK headers (`ntifs.h`, `ntddk.h`, `ntstrsafe.h`, `NDIS630`, `ndis.h`,
//! `fwpsk.h`, `fwpmk.h`) with wdk-build's bindgen configuration. Every check
//! below is a `const` assertion: a mismatch fails the build and names the
//! structure and field. Nothing here exists at run time.
//!
//! `fwps-types` asserts its layouts against a table an MS-ABI compiler
//! produced from Microsoft's documented definitions; this closes the loop
//! against the headers of the WDK the driver is actually built with. Sizes,
//! alignments, field offsets and field sizes are compared; field types are
//! not (bindgen's are the C typedefs, ours the Rust equivalents).
#![allow(unsafe_code)] // the generated bindings contain `unsafe` blocks

use core::mem::{align_of, offset_of, size_of};

/// The bindgen output: kernel WFP types and whatever they reference.
#[allow(
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unused_unsafe,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used
)]
mod wdk {
    include!(concat!(env!("OUT_DIR"), "/fwpsk.rs"));
}

/// The size of the field `project` selects. The function is never called:
/// its type names the field's type.
const fn field_size<T, F>(_project: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// One field: same offset and same size on both sides.
macro_rules! assert_same_field {
    ($ours:ty, $ours_field:ident, $wdk:ty, $wdk_field:ident) => {
        const _: () = assert!(
            offset_of!($ours, $ours_field) == offset_of!($wdk, $wdk_field),
            concat!("offset of ", stringify!($ours), ".", stringify!($ours_field))
        );
        const _: () = assert!(
            field_size(|s: &$ours| &s.$ours_field) == field_size(|s: &$wdk| &s.$wdk_field),
            concat!("size of ", stringify!($ours), ".", stringify!($ours_field))
        );
    };
}

/// A whole structure: same size and alignment, and every listed field the
/// same (fields bindgen names differently are listed under `renamed`).
macro_rules! assert_same_layout {
    (
        $ours:ty, $wdk:ty,
        [$($field:ident),* $(,)?]
        $(, renamed [$($ours_field:ident => $wdk_field:ident),* $(,)?])?
    ) => {
        const _: () = assert!(
            size_of::<$ours>() == size_of::<$wdk>(),
            concat!("size of ", stringify!($ours))
        );
        const _: () = assert!(
            align_of::<$ours>() == align_of::<$wdk>(),
            concat!("alignment of ", stringify!($ours))
        );
        $(assert_same_field!($ours, $field, $wdk, $field);)*
        $($(assert_same_field!($ours, $ours_field, $wdk, $wdk_field);)*)?
    };
}

// bindgen renames the C field `type` to `type_`; fwps-types spells it `r#type`.
assert_same_layout!(fwps_types::FWPS_ACTION0, wdk::FWPS_ACTION0, [calloutId], renamed [r#type => type_]);

assert_same_layout!(
    fwps_types::FWPS_FILTER_CONDITION0,
    wdk::FWPS_FILTER_CONDITION0,
    [fieldId, reserved, matchType, conditionValue]
);

assert_same_layout!(
    fwps_types::FWPS_FILTER2,
    wdk::FWPS_FILTER2,
    [filterId, weight, subLayerWeight, flags, numFilterConditions, filterCondition, action, context, providerContext]
);

assert_same_layout!(
    fwps_types::FWPS_CALLOUT2,
    wdk::FWPS_CALLOUT2,
    [calloutKey, flags, classifyFn, notifyFn, flowDeleteFn]
);

assert_same_layout!(
    fwps_types::FWPS_CLASSIFY_OUT0,
    wdk::FWPS_CLASSIFY_OUT0,
    [actionType, outContext, filterId, rights, flags, reserved]
);

assert_same_layout!(fwps_types::FWPS_INCOMING_VALUE0, wdk::FWPS_INCOMING_VALUE0, [value]);

assert_same_layout!(
    fwps_types::FWPS_INCOMING_VALUES0,
    wdk::FWPS_INCOMING_VALUES0,
    [layerId, valueCount, incomingValue]
);

assert_same_layout!(
    fwps_types::FWPS_DISCARD_METADATA0,
    wdk::FWPS_DISCARD_METADATA0,
    [discardModule, discardReason, filterId]
);

assert_same_layout!(
    fwps_types::FWPS_INBOUND_FRAGMENT_METADATA0,
    wdk::FWPS_INBOUND_FRAGMENT_METADATA0,
    [fragmentIdentification, fragmentOffset, fragmentLength]
);

// FWPS_INCOMING_METADATA_VALUES0 grows with NTDDI_VERSION. The engine
// allocates it and the driver reads only fields whose presence bit is set
// in `currentMetadataValues`, so what must hold is that every field the
// driver's definition has sits where the WDK's does, and that ours is not
// larger than the real one.

/// Bytes 0-143: the Vista layout, present in every version. The driver
/// reads nothing beyond these.
macro_rules! assert_metadata_fields {
    ($($field:ident),* $(,)?) => {
        $(assert_same_field!(
            fwps_types::FWPS_INCOMING_METADATA_VALUES0,
            $field,
            wdk::FWPS_INCOMING_METADATA_VALUES0,
            $field
        );)*
    };
}

assert_metadata_fields!(
    currentMetadataValues,
    flags,
    reserved,
    discardMetadata,
    flowHandle,
    ipHeaderSize,
    transportHeaderSize,
    processPath,
    token,
    processId,
    sourceInterfaceIndex,
    destinationInterfaceIndex,
    compartmentId,
    fragmentMetadata,
    pathMtu,
    completionHandle,
    transportEndpointHandle,
    remoteScopeId,
    controlData,
    controlDataLength,
    packetDirection,
);

// Windows 6.1 SP1 to Windows 8 additions, up to `vSwitchPacketContext`
// (the `vSwitch*` names need NDIS_SUPPORT_NDIS630, which build.rs sets).
// The fields after it are not compared: Microsoft's 2018 documentation
// shows a `UINT32 l2ConnectionProfileIndex` after `vSwitchPacketContext`
// that other sources lack, and `subProcessTag`/`reserved1` (spelled
// `Reserved1` there) move with it. The driver reads none of them.
assert_metadata_fields!(
    headerIncludeHeader,
    headerIncludeHeaderLength,
    destinationPrefix,
    frameLength,
    parentEndpointHandle,
    icmpIdAndSequence,
    localRedirectTargetPID,
    originalDestination,
    redirectRecords,
    currentL2MetadataValues,
    l2Flags,
    ethernetMacHeaderSize,
    wiFiOperationMode,
    vSwitchSourcePortId,
    vSwitchSourceNicIndex,
    vSwitchDestinationPortId,
    vSwitchPacketContext,
);

const _: () = assert!(
    size_of::<fwps_types::FWPS_INCOMING_METADATA_VALUES0>() <= size_of::<wdk::FWPS_INCOMING_METADATA_VALUES0>(),
    "fwps_types::FWPS_INCOMING_METADATA_VALUES0 is larger than the WDK's"
);
const _: () = assert!(
    align_of::<fwps_types::FWPS_INCOMING_METADATA_VALUES0>() == align_of::<wdk::FWPS_INCOMING_METADATA_VALUES0>(),
    "alignment of fwps_types::FWPS_INCOMING_METADATA_VALUES0"
);
