//! `wfpctl uninstall` on Windows: our filters, provider contexts,
//! callouts, sublayer and provider deleted in one transaction. What the
//! result means is decided by the portable [`crate::uninstall`].
#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{
    FWP_E_CALLOUT_NOT_FOUND, FWP_E_FILTER_NOT_FOUND, FWP_E_IN_USE, FWP_E_PROVIDER_CONTEXT_NOT_FOUND,
    FWP_E_PROVIDER_NOT_FOUND, FWP_E_SUBLAYER_NOT_FOUND,
};
use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::{
    FwpmCalloutDeleteByKey0, FwpmFilterDeleteById0, FwpmProviderContextDeleteByKey0, FwpmProviderDeleteByKey0,
    FwpmSubLayerDeleteByKey0,
};

use super::engine::{Engine, Transaction, check};
use super::wide::guid;
use crate::backend::BackendError;
use crate::filter_spec::CalloutTarget;
use crate::keys;
use crate::uninstall::{Fate, Removal};

/// An `FWP_E_*` HRESULT as the `DWORD` the management functions return.
const fn code(hresult: i32) -> u32 {
    u32::from_ne_bytes(hresult.to_ne_bytes())
}

/// What a `Fwpm*DeleteByKey0` status means for an object: deleted, absent
/// (`not_found`), kept (`FWP_E_IN_USE`: another object references it), or
/// a failure that ends the uninstall.
fn fate(operation: &str, status: u32, not_found: i32) -> Result<Fate, BackendError> {
    if status == code(not_found) {
        return Ok(Fate::Absent);
    }
    if status == code(FWP_E_IN_USE) {
        return Ok(Fate::Kept(BackendError::code(operation, status).to_string()));
    }
    check(operation, status).map(|()| Fate::Deleted)
}

impl Engine {
    /// Everything `wfpctl uninstall` deletes, in one transaction (which
    /// holds the engine: nothing is added meanwhile, so the enumerations
    /// are what gets deleted). Dropped on an error, the transaction aborts
    /// and nothing is deleted.
    pub fn delete_our_objects(&self) -> Result<Removal, BackendError> {
        let transaction = Transaction::begin(self)?;
        let mut registered = false;
        for target in CalloutTarget::ALL {
            registered |= self.callout(target)?.is_some_and(|callout| callout.registered);
        }

        // Filters first: each names a callout (and perhaps our sublayer,
        // provider and a provider context), which cannot go while it does.
        let mut filters = Vec::new();
        for filter in self.callout_filters()? {
            // SAFETY: the engine handle is open (Engine's invariant). The
            // driver's DELETE notify, if it is loaded, runs inside this
            // call or the commit.
            let status = unsafe { FwpmFilterDeleteById0(self.handle, filter.id) };
            if status != code(FWP_E_FILTER_NOT_FOUND) {
                check("FwpmFilterDeleteById0", status)?;
                filters.push((filter.id, filter.target));
            }
        }
        let mut provider_contexts = 0;
        for context in self.provider_contexts()? {
            let key = guid(context.key);
            // SAFETY: the engine handle is open; `key` is valid for the call.
            let status = unsafe { FwpmProviderContextDeleteByKey0(self.handle, &key) };
            // In use by a filter that names none of our callouts: kept
            // (the provider then is too, and says so).
            if status != code(FWP_E_PROVIDER_CONTEXT_NOT_FOUND) && status != code(FWP_E_IN_USE) {
                check("FwpmProviderContextDeleteByKey0", status)?;
                provider_contexts += 1;
            }
        }
        let mut callouts = Vec::new();
        for target in CalloutTarget::ALL {
            let key = guid(target.callout_key());
            // SAFETY: the engine handle is open; `key` is valid for the call.
            let status = unsafe { FwpmCalloutDeleteByKey0(self.handle, &key) };
            callouts.push((target, fate("FwpmCalloutDeleteByKey0", status, FWP_E_CALLOUT_NOT_FOUND)?));
        }
        // The sublayer before the provider it references.
        let key = guid(keys::SUBLAYER_KEY);
        // SAFETY: the engine handle is open; `key` is valid for the call.
        let status = unsafe { FwpmSubLayerDeleteByKey0(self.handle, &key) };
        let sublayer = fate("FwpmSubLayerDeleteByKey0", status, FWP_E_SUBLAYER_NOT_FOUND)?;
        let key = guid(keys::PROVIDER_KEY);
        // SAFETY: the engine handle is open; `key` is valid for the call.
        let status = unsafe { FwpmProviderDeleteByKey0(self.handle, &key) };
        let provider = fate("FwpmProviderDeleteByKey0", status, FWP_E_PROVIDER_NOT_FOUND)?;
        transaction.commit()?;
        Ok(Removal { filters, provider_contexts, callouts, sublayer, provider, registered })
    }
}
