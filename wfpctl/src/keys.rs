//! The GUIDs wfpctl names: the driver's provider, sublayer and six
//! callouts, the WFP layers those callouts sit at, and the condition fields
//! wfpctl filters on.
//!
//! They are kept here as plain numbers so that everything above the
//! Windows module stays portable. The driver's own values are the
//! reference: the host tests compare these with `driver/callbacks/registration.rs`, and
//! the Windows module asserts at compile time that the layer and condition
//! keys equal windows-sys's `FWPM_LAYER_*` and `FWPM_CONDITION_*`.
#![forbid(unsafe_code)]

use core::fmt;

/// A GUID as one 128-bit number, most significant part first: the number
/// `0x5c0f1e7a_2b3d_4e8f_9a61_7d2c4b8e0001` is the GUID
/// `{5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}` (windows-sys's
/// `GUID::from_u128` takes the same number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub u128);

impl Guid {
    /// The GUID as one number.
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    /// The four fields of the Windows `GUID` structure
    /// (`Data1`, `Data2`, `Data3`, `Data4`).
    pub const fn fields(self) -> (u32, u16, u16, [u8; 8]) {
        let value = self.0;
        ((value >> 96) as u32, (value >> 80) as u16, (value >> 64) as u16, (value as u64).to_be_bytes())
    }

    /// Builds a GUID from the four fields of the Windows structure.
    pub const fn from_fields(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        Guid(
            ((data1 as u128) << 96)
                | ((data2 as u128) << 80)
                | ((data3 as u128) << 64)
                | u64::from_be_bytes(data4) as u128,
        )
    }
}

impl fmt::Display for Guid {
    /// The registry form without braces: `5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            value >> 96,
            (value >> 80) & 0xffff,
            (value >> 64) & 0xffff,
            (value >> 48) & 0xffff,
            value & 0xffff_ffff_ffff
        )
    }
}

/// The driver's provider: owns the sublayer, the callouts, and every filter
/// and provider context wfpctl adds.
pub const PROVIDER_KEY: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0001);

/// The driver's sublayer, where wfpctl puts its filters.
pub const SUBLAYER_KEY: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0002);

/// The driver's callout keys, one per layer (`driver/callbacks/registration.rs`).
pub mod callout {
    use super::Guid;

    /// ALE auth connect, IPv4.
    pub const CONNECT_V4: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0010);
    /// ALE auth connect, IPv6.
    pub const CONNECT_V6: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0011);
    /// ALE auth recv-accept, IPv4.
    pub const RECV_ACCEPT_V4: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0012);
    /// ALE auth recv-accept, IPv6.
    pub const RECV_ACCEPT_V6: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0013);
    /// ALE flow established, IPv4.
    pub const FLOW_ESTABLISHED_V4: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0014);
    /// ALE flow established, IPv6.
    pub const FLOW_ESTABLISHED_V6: Guid = Guid(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0015);
}

/// The WFP management layers (`FWPM_LAYER_*`, fwpmu.h).
pub mod layer {
    use super::Guid;

    /// `FWPM_LAYER_ALE_AUTH_CONNECT_V4`.
    pub const ALE_AUTH_CONNECT_V4: Guid = Guid(0xc38d_57d1_05a7_4c33_904f_7fbc_eee6_0e82);
    /// `FWPM_LAYER_ALE_AUTH_CONNECT_V6`.
    pub const ALE_AUTH_CONNECT_V6: Guid = Guid(0x4a72_393b_319f_44bc_84c3_ba54_dcb3_b6b4);
    /// `FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4`.
    pub const ALE_AUTH_RECV_ACCEPT_V4: Guid = Guid(0xe1cd_9fe7_f4b5_4273_96c0_592e_487b_8650);
    /// `FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6`.
    pub const ALE_AUTH_RECV_ACCEPT_V6: Guid = Guid(0xa3b4_2c97_9f04_4672_b87e_cee9_c483_257f);
    /// `FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4`.
    pub const ALE_FLOW_ESTABLISHED_V4: Guid = Guid(0xaf80_470a_5596_4c13_9992_539e_6fe5_7967);
    /// `FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6`.
    pub const ALE_FLOW_ESTABLISHED_V6: Guid = Guid(0x7021_d2b3_dfa4_406e_afeb_6afa_f7e7_0efd);
}

/// The condition fields wfpctl filters on (`FWPM_CONDITION_*`, fwpmu.h).
pub mod condition {
    use super::Guid;

    /// `FWPM_CONDITION_IP_LOCAL_ADDRESS`.
    pub const IP_LOCAL_ADDRESS: Guid = Guid(0xd9ee_00de_c1ef_4617_bfe3_ffd8_f5a0_8957);
    /// `FWPM_CONDITION_IP_LOCAL_PORT`.
    pub const IP_LOCAL_PORT: Guid = Guid(0x0c1b_a1af_5765_453f_af22_a8f7_91ac_775b);
    /// `FWPM_CONDITION_IP_PROTOCOL`.
    pub const IP_PROTOCOL: Guid = Guid(0x3971_ef2b_623e_4f9a_8cb1_6e79_b806_b9a7);
    /// `FWPM_CONDITION_IP_REMOTE_ADDRESS`.
    pub const IP_REMOTE_ADDRESS: Guid = Guid(0xb235_ae9a_1d64_49b8_a44c_5ff3_d909_5045);
    /// `FWPM_CONDITION_IP_REMOTE_PORT`.
    pub const IP_REMOTE_PORT: Guid = Guid(0xc35a_604d_d22b_4e1a_91b4_68f6_74ee_674b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_registry_form() {
        assert_eq!(PROVIDER_KEY.to_string(), "5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001");
        assert_eq!(layer::ALE_AUTH_CONNECT_V4.to_string(), "c38d57d1-05a7-4c33-904f-7fbceee60e82");
        assert_eq!(Guid(0).to_string(), "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn fields_round_trip() {
        let (data1, data2, data3, data4) = layer::ALE_AUTH_CONNECT_V4.fields();
        assert_eq!((data1, data2, data3), (0xc38d_57d1, 0x05a7, 0x4c33));
        assert_eq!(data4, [0x90, 0x4f, 0x7f, 0xbc, 0xee, 0xe6, 0x0e, 0x82]);
        assert_eq!(Guid::from_fields(data1, data2, data3, data4), layer::ALE_AUTH_CONNECT_V4);
        for key in [PROVIDER_KEY, SUBLAYER_KEY, callout::FLOW_ESTABLISHED_V6, condition::IP_LOCAL_PORT] {
            let (a, b, c, d) = key.fields();
            assert_eq!(Guid::from_fields(a, b, c, d), key);
        }
    }
}
